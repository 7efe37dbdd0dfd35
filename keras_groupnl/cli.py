"""The `keras-groupnl` command line.

    keras-groupnl convert MODEL.keras --target mcu --calibration DATA.npz \\
        --out DIR

converts a `.keras` model into a verified int8 TFLite model (see
`keras_groupnl.converters.convert`), shows progress, and prints the
verification report as a table. Exit status: 0 on success, 1 when the model
cannot be converted as the target requires, 2 for bad arguments or inputs.
"""

import argparse
import json
import os
import sys

_X_KEYS = ("x", "images", "inputs", "data", "x_test", "x_train")
_Y_KEYS = ("y", "labels", "y_test", "y_train")


def _parser():
    parser = argparse.ArgumentParser(
        prog="keras-groupnl",
        description="Tools for GroupNL models in Keras 3.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    convert = commands.add_parser(
        "convert",
        help="convert a .keras model to a verified int8 TFLite model",
        description=(
            "Convert a .keras model to an int8 TFLite model for phones "
            "(LiteRT) or a full-integer model for microcontrollers "
            "(TensorFlow Lite Micro), verify it against the Keras model on "
            "the calibration data, and print the report."
        ),
    )
    convert.add_argument("model", metavar="MODEL.keras", help="the model file")
    convert.add_argument(
        "--target",
        required=True,
        choices=("phone", "mcu"),
        help="'phone': int8 LiteRT model; 'mcu': full-integer TFLite Micro "
        "model with a C array",
    )
    convert.add_argument(
        "--calibration",
        required=True,
        metavar="DATA.npz",
        help="samples of the real inputs (.npz or .npy), batch axis first; "
        "an .npz may also hold labels",
    )
    convert.add_argument(
        "--verification",
        default=None,
        metavar="DATA.npz",
        help="held-out samples (and labels) to verify on; default: verify "
        "on the calibration data",
    )
    convert.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output directory (created if missing)",
    )
    convert.add_argument(
        "--x-key",
        default=None,
        help="array of the .npz holding the samples (default: 'x', 'images', "
        "'inputs' or 'data', or the only array)",
    )
    convert.add_argument(
        "--y-key",
        default=None,
        help="array of the .npz holding the labels (default: 'y' or "
        "'labels' when present); adds accuracy to the report",
    )
    convert.add_argument(
        "--io-dtype",
        choices=("float32", "int8"),
        default=None,
        help="input/output type (phone: float32 by default; mcu: int8)",
    )
    convert.add_argument(
        "--name",
        default="model",
        help="C identifier naming the files (default: model)",
    )
    convert.add_argument(
        "--calibration-samples",
        type=int,
        default=500,
        help="samples used to calibrate (default: 500)",
    )
    convert.add_argument(
        "--verification-samples",
        type=int,
        default=None,
        help="samples used to verify (default: all)",
    )
    convert.add_argument(
        "--min-top1-agreement",
        type=float,
        default=None,
        help="fail, writing nothing, below this top-1 agreement with Keras",
    )
    convert.add_argument(
        "--no-fold-batchnorm",
        action="store_true",
        help="keep a BatchNormalization after a GroupNL layer as separate "
        "ops (smaller tables, lower int8 accuracy)",
    )
    convert.add_argument(
        "--quiet", action="store_true", help="no progress display"
    )
    convert.add_argument(
        "--json",
        action="store_true",
        help="print the report as JSON instead of a table",
    )
    return parser


def _load_arrays(path, x_key, y_key, role="calibration"):
    """Reads samples (and labels) from an .npz or .npy file."""
    import numpy as np

    if not os.path.isfile(path):
        raise ValueError(f"Cannot read the {role} data: no file at '{path}'.")
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as error:
        raise ValueError(
            f"Cannot read the {role} data '{path}': {error}"
        ) from None
    if isinstance(loaded, np.ndarray):
        if x_key or y_key:
            raise ValueError("--x-key and --y-key apply to .npz files only.")
        return loaded, None
    with loaded:
        keys = list(loaded.files)
        if x_key is not None:
            if x_key not in keys:
                raise ValueError(
                    f"'{path}' has no array '{x_key}'. Arrays: {keys}"
                )
        else:
            candidates = [k for k in _X_KEYS if k in keys]
            if candidates:
                x_key = candidates[0]
            elif len(keys) == 1:
                x_key = keys[0]
            else:
                raise ValueError(
                    f"Cannot tell which array of '{path}' holds the samples "
                    f"({keys}); name it with --x-key."
                )
        if y_key is not None and y_key not in keys:
            raise ValueError(f"'{path}' has no array '{y_key}'. Arrays: {keys}")
        if y_key is None:
            y_key = next((k for k in _Y_KEYS if k in keys and k != x_key), None)
        x = loaded[x_key]
        y = loaded[y_key] if y_key is not None else None
    return x, y


def _convert(args):
    from keras_groupnl.converters import ConversionError
    from keras_groupnl.converters import convert
    from keras_groupnl.converters import format_report

    try:
        x, y = _load_arrays(args.calibration, args.x_key, args.y_key)
        verification = None
        if args.verification is not None:
            verification = _load_arrays(
                args.verification, args.x_key, args.y_key, "verification"
            )
            if verification[1] is None:
                verification = verification[0]
        result = convert(
            args.model,
            args.target,
            x,
            args.out,
            labels=y,
            verification_data=verification,
            io_dtype=args.io_dtype,
            name=args.name,
            calibration_samples=args.calibration_samples,
            verification_samples=args.verification_samples,
            min_top1_agreement=args.min_top1_agreement,
            fold_batchnorm=not args.no_fold_batchnorm,
            verbose=0 if args.quiet else 1,
        )
    except ConversionError as error:
        print(f"keras-groupnl convert: error: {error}", file=sys.stderr)
        return 1
    except ValueError as error:
        print(f"keras-groupnl convert: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.report, indent=2))
    else:
        print(format_report(result.report))
        print(f"Files written to {os.path.dirname(result.tflite_path)}:")
        for role, path in result.files.items():
            print(f"  {role:<10} {path}")
    return 0


def main(argv=None):
    """Runs the command line; returns the exit status."""
    parser = _parser()
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exit_:  # argparse exits on bad usage and --help.
        return int(exit_.code or 0)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "convert":
        return _convert(args)
    return 2  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
