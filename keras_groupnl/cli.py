"""The `keras-groupnl` command line.

    keras-groupnl convert MODEL.keras --target mcu --calibration DATA.npz \\
        --out DIR

converts a `.keras` model into a verified int8 TFLite model (see
`keras_groupnl.converters.convert`), shows progress, and prints the
verification report as a table. Exit status: 0 on success, 1 when the model
cannot be converted as the target requires, 2 for bad arguments or inputs,
130 when interrupted (Ctrl-C; 143 on SIGTERM), with nothing written.

Arguments are parsed and the input files checked before TensorFlow or Keras
is imported, so a usage error answers at once.
"""

import argparse
import os
import signal
import sys
import zipfile

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
    _add_convert_data(convert)
    _add_convert_options(convert)
    return parser


def _add_convert_data(convert):
    """`convert`'s model, target, data and output arguments."""
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


def _add_convert_options(convert):
    """`convert`'s options: how to convert, verify and report."""
    convert.add_argument(
        "--io-dtype",
        choices=("float32", "uint8", "int8"),
        default=None,
        help="input/output type (phone: float32 by default, uint8 for raw "
        "camera pixels; mcu: int8)",
    )
    _add_android_options(convert)
    convert.add_argument(
        "--integer-only",
        action="store_true",
        help="phone: a full-integer model (for int8-only accelerators) "
        "instead of float GroupNL tails that XNNPACK runs",
    )
    convert.add_argument(
        "--compare-with",
        default=None,
        metavar="PLAIN.keras",
        help="a plain model to convert and measure the same way, side by "
        "side (size, latency, arena)",
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
        "ops instead of folding it into the layer's converted form",
    )
    convert.add_argument(
        "--quiet", action="store_true", help="no progress display"
    )
    convert.add_argument(
        "--json",
        action="store_true",
        help="print the report as JSON instead of a table",
    )


def _add_android_options(convert):
    """`convert`'s options for the phone file's Android metadata."""
    convert.add_argument(
        "--labels",
        "--class-names",
        dest="class_names",
        default=None,
        metavar="LABELS.txt",
        help="phone: the class names, one per line, packed into the model "
        "for Android's clients (default: the class indices)",
    )
    convert.add_argument(
        "--normalization",
        nargs=2,
        default=None,
        metavar=("MEAN", "STD"),
        help="phone: the model input is (pixel - MEAN) / STD for pixels in "
        "[0, 255]; one number or comma-separated per channel (default: "
        "inferred from the calibration data)",
    )
    convert.add_argument(
        "--no-rgb-input",
        action="store_true",
        help="phone: keep a 1-channel model's input instead of adding an "
        "RGB -> gray input stage for Android's RGB images",
    )


def _normalization(values):
    """`--normalization MEAN STD` as numbers (comma-separated per channel)."""
    if values is None:
        return None
    parsed = []
    for value in values:
        try:
            numbers = [float(v) for v in value.split(",")]
        except ValueError:
            raise ValueError(
                "--normalization takes two numbers (or comma-separated "
                f"numbers per channel). Received: {' '.join(values)}"
            ) from None
        parsed.append(numbers[0] if len(numbers) == 1 else numbers)
    return tuple(parsed)


def _check_file(path, role, suffixes):
    if not os.path.isfile(path):
        raise ValueError(f"Cannot read the {role}: no file at '{path}'.")
    if not path.endswith(suffixes):
        raise ValueError(
            f"Cannot read the {role} '{path}': expected a "
            f"{' or '.join(suffixes)} file."
        )


def _load_arrays(path, x_key, y_key, role="calibration"):
    """Reads samples (and labels) from an .npz or .npy file."""
    import numpy as np

    _check_file(path, f"{role} data", (".npz", ".npy"))
    if path.endswith(".npz") and not zipfile.is_zipfile(path):
        raise ValueError(
            f"Cannot read the {role} data '{path}': it is not an .npz "
            "archive (a zip file of .npy arrays)."
        )
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        reason = str(error)
        if "allow_pickle" in reason:
            reason = "it holds Python objects, not numbers"
        raise ValueError(
            f"Cannot read the {role} data '{path}': {reason}"
        ) from None
    if isinstance(loaded, np.ndarray):
        if x_key or y_key:
            raise ValueError("--x-key and --y-key apply to .npz files only.")
        return loaded, None
    with loaded:
        x_key, y_key = _keys(path, list(loaded.files), x_key, y_key)
        try:
            x = loaded[x_key]
            y = loaded[y_key] if y_key is not None else None
        except ValueError:
            raise ValueError(
                f"Cannot read the {role} data '{path}': its arrays hold "
                "Python objects, not numbers."
            ) from None
    return x, y


def _keys(path, keys, x_key, y_key):
    """The arrays of an .npz that hold the samples and the labels."""
    if x_key is not None and x_key not in keys:
        raise ValueError(f"'{path}' has no array '{x_key}'. Arrays: {keys}")
    if x_key is None:
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
    return x_key, y_key


def _check_args(args):
    """Checks what needs no heavy import, before any is made."""
    phone_only = (args.class_names, args.normalization, args.no_rgb_input)
    if args.target != "phone" and any(phone_only):
        raise ValueError(
            "--labels, --normalization and --no-rgb-input apply to "
            "--target phone (TensorFlow Lite Micro reads no metadata)."
        )
    _check_file(args.model, "model", (".keras",))
    if args.compare_with is not None:
        _check_file(args.compare_with, "model to compare with", (".keras",))
    _check_file(args.calibration, "calibration data", (".npz", ".npy"))
    if args.verification is not None:
        _check_file(args.verification, "verification data", (".npz", ".npy"))
    for flag in ("calibration_samples", "verification_samples"):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            raise ValueError(
                f"--{flag.replace('_', '-')} must be a positive integer. "
                f"Received: {value}"
            )
    if args.integer_only and args.target != "phone":
        raise ValueError("--integer-only applies to --target phone.")


def _convert(args):
    _check_args(args)
    x, y = _load_arrays(args.calibration, args.x_key, args.y_key)
    verification = None
    if args.verification is not None:
        verification = _load_arrays(
            args.verification, args.x_key, args.y_key, "verification"
        )
        if verification[1] is None:
            verification = verification[0]
    from keras_groupnl.converters import convert

    return convert(
        args.model,
        args.target,
        x,
        args.out,
        labels=y,
        verification_data=verification,
        io_dtype=args.io_dtype,
        integer_only=args.integer_only,
        compare_with=args.compare_with,
        name=args.name,
        calibration_samples=args.calibration_samples,
        verification_samples=args.verification_samples,
        min_top1_agreement=args.min_top1_agreement,
        fold_batchnorm=not args.no_fold_batchnorm,
        class_names=args.class_names,
        normalization=_normalization(args.normalization),
        rgb_input=False if args.no_rgb_input else None,
        verbose=0 if args.quiet else 1,
    )


def _print(result, as_json):
    if as_json:
        print(result.report.to_json(), end="")
        return
    print(result.summary())
    print(f"Files written to {os.path.dirname(result.tflite_path)}:")
    for role, path in result.files.items():
        print(f"  {role:<10} {path}")


def _run_convert(args):
    """The `convert` command; its exit status."""
    from_signal = {}

    def on_sigterm(signum, frame):
        from_signal["status"] = 143
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        result = _convert(args)
    except KeyboardInterrupt:
        print(
            "keras-groupnl convert: interrupted; nothing was written.",
            file=sys.stderr,
        )
        return from_signal.get("status", 130)
    except ValueError as error:
        from keras_groupnl.converters._errors import ConversionError

        print(f"keras-groupnl convert: error: {error}", file=sys.stderr)
        return 1 if isinstance(error, ConversionError) else 2
    finally:
        signal.signal(signal.SIGTERM, previous)
    _print(result, args.json)
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
        return _run_convert(args)
    return 2  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
