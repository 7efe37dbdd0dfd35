"""The arguments of `convert`, checked before anything runs or is written.

Every check raises a `ValueError` that names the argument and the value
received; nothing here creates a file.
"""

import os
import re
import tempfile
import zipfile

from keras_groupnl import _validation

TARGETS = ("phone", "mcu")
IO_DTYPES = ("float32", "int8", "uint8")
# The "mcu" target's GroupNL tails (see `_mcu`).
MCU_KERNELS = ("builtin", "fused", "fused_channel_tables")


def options(
    target,
    io_dtype,
    name,
    calibration_samples,
    verification_samples,
    min_top1_agreement,
    fold_batchnorm,
    integer_only,
    verbose,
    android=None,
    mcu_kernel="builtin",
):
    """The validated options as a plain dict (it crosses processes).

    `android`: `{"class_names", "normalization", "rgb_input"}` as given to
    `convert` (phone options).
    """
    if not isinstance(target, str) or target not in TARGETS:
        raise ValueError(
            "Unknown `target`: expected 'phone' (int8 LiteRT model for "
            "phones) or 'mcu' (full-integer model for TensorFlow Lite "
            f"Micro). Received: target={target!r}"
        )
    integer_only = _validation.boolean(integer_only, "integer_only")
    if integer_only and target != "phone":
        raise ValueError(
            "`integer_only` applies to the 'phone' target (the 'mcu' target "
            f"is always full-integer). Received: integer_only=True, "
            f"target={target!r}"
        )
    if mcu_kernel not in MCU_KERNELS or not isinstance(mcu_kernel, str):
        raise ValueError(
            "`mcu_kernel` must be 'builtin' (TFLite Micro's own ops), "
            "'fused' (one custom op per GroupNL layer, its C kernel written "
            "beside the model) or 'fused_channel_tables' (the same with a "
            f"table per channel). Received: mcu_kernel={mcu_kernel!r}"
        )
    if mcu_kernel != "builtin" and target != "mcu":
        raise ValueError(
            "`mcu_kernel` applies to the 'mcu' target. Received: "
            f"mcu_kernel={mcu_kernel!r}, target={target!r}"
        )
    if min_top1_agreement is not None:
        _validation.number_in(min_top1_agreement, "min_top1_agreement", 0, 1)
    if verbose not in (0, 1) or isinstance(verbose, float):
        raise ValueError(
            f"`verbose` must be 0 or 1. Received: verbose={verbose!r}"
        )
    return {
        **_android_options(android or {}, target),
        "target": target,
        "io_dtype": _io_dtype(io_dtype, target),
        "name": _name(name),
        "calibration_samples": _validation.positive_int(
            calibration_samples, "calibration_samples"
        ),
        "verification_samples": _validation.positive_int(
            verification_samples, "verification_samples", allow_none=True
        ),
        "min_top1_agreement": (
            None if min_top1_agreement is None else float(min_top1_agreement)
        ),
        "fold_batchnorm": _validation.boolean(fold_batchnorm, "fold_batchnorm"),
        "integer_only": integer_only,
        "mcu_kernel": mcu_kernel,
        "verbose": int(verbose),
    }


def _io_dtype(io_dtype, target):
    if io_dtype is None:
        return "int8" if target == "mcu" else "float32"
    value = {"float": "float32"}.get(io_dtype, io_dtype)
    if not isinstance(value, str):
        try:
            import numpy as np

            value = np.dtype(io_dtype).name
        except TypeError:
            value = None
    if value not in IO_DTYPES:
        raise ValueError(
            "`io_dtype` must be 'float32', 'uint8' or 'int8' (the type of "
            f"the model input and output). Received: io_dtype={io_dtype!r}"
        )
    if target == "mcu" and value != "int8":
        raise ValueError(
            "The 'mcu' target is full-integer: its input and output are "
            f"int8. Received: io_dtype={io_dtype!r}"
        )
    return value


def _android_options(given, target):
    """`class_names`, `normalization` and `rgb_input`, checked."""
    from keras_groupnl.converters import _normalization

    names = given.get("class_names")
    rgb_input = given.get("rgb_input")
    if rgb_input is not None:
        rgb_input = _validation.boolean(rgb_input, "rgb_input")
    for key, value in given.items():
        if value is not None and target != "phone":
            raise ValueError(
                f"`{key}` applies to the 'phone' target (TensorFlow Lite "
                f"Micro reads no metadata). Received: {key}={value!r}, "
                f"target={target!r}"
            )
    return {
        "class_names": None if names is None else class_names(names),
        "normalization": _normalization.argument(given.get("normalization")),
        "rgb_input": rgb_input,
    }


def class_names(value):
    """A list of class names from a list or a text file (one per line)."""
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        try:
            with open(path, encoding="utf-8") as f:
                value = [line.rstrip("\r\n") for line in f]
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(
                f"Cannot read `class_names` from '{path}': {error}. "
                f"Received: class_names={path!r}"
            ) from None
        while value and not value[-1].strip():
            value.pop()
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(
            "`class_names` must be a non-empty list of names or the path of "
            f"a text file with one name per line. Received: "
            f"class_names={value!r}"
        )
    for name in value:
        if not isinstance(name, str) or not name.strip() or "\n" in name:
            raise ValueError(
                "Every class name must be a non-empty one-line string. "
                f"Received: class_names with {name!r}"
            )
    return [str(name) for name in value]


def check_class_names(names, output_shape):
    """Checks that there is one class name per model output."""
    if names is None:
        return
    classes = output_shape[-1] if len(output_shape) == 2 else None
    if classes != len(names):
        raise ValueError(
            f"`class_names` has {len(names)} names; the model output "
            f"{output_shape} needs one per class. Received: "
            f"class_names={names[:4]!r}{' ...' if len(names) > 4 else ''}"
        )


def _name(name):
    if not isinstance(name, str) or not re.fullmatch(
        r"[A-Za-z_][A-Za-z0-9_]{0,63}", name
    ):
        raise ValueError(
            "`name` must be a C identifier (letters, digits and '_', not "
            "starting with a digit, at most 64 characters): it names the "
            f"files and the C array. Received: name={name!r}"
        )
    return name


def output_dir(value):
    """The absolute path of a directory that is, or can be, written.

    Nothing is created: a missing directory is made only once the
    conversion has succeeded.
    """
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise ValueError(
            "`output_dir` must be a path to a directory. "
            f"Received: output_dir={value!r}"
        )
    path = os.path.abspath(os.fspath(value))
    existing = path
    while not os.path.exists(existing):
        parent = os.path.dirname(existing)
        if parent == existing:
            break
        existing = parent
    if not os.path.isdir(existing):
        what = (
            "is a file"
            if existing == path
            else f"lies under the file '{existing}'"
        )
        raise ValueError(
            f"`output_dir` cannot be written: it {what}. "
            f"Received: output_dir={os.fspath(value)!r}"
        )
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".keras_groupnl_probe_", dir=existing))
    except OSError as error:
        raise ValueError(
            f"`output_dir` cannot be written ({error.strerror or error}: "
            f"'{existing}'). Received: output_dir={os.fspath(value)!r}"
        ) from None
    return path


def model_path(value, argument="model"):
    """Checks that `value` names a readable `.keras` archive."""
    path = os.fspath(value)
    if not os.path.isfile(path):
        raise ValueError(
            f"Cannot read the model: no file at '{path}'. "
            f"Received: {argument}={path!r}"
        )
    if not path.endswith(".keras"):
        raise ValueError(
            "Cannot read the model: expected a Keras v3 '.keras' file. "
            f"Received: {argument}={path!r}"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError) as error:
        damaged = str(error)
    if damaged is not None:
        raise ValueError(
            f"Cannot read the model at '{path}': it is not a complete "
            f".keras archive (a zip file; {damaged}). Is it truncated? "
            f"Received: {argument}={path!r}"
        )
    return path


def load_model(value, argument="model"):
    """`(keras.Model, path or None)` from a model or a `.keras` path."""
    import keras

    from keras_groupnl import _keras_hub

    if _keras_hub.is_task(value) or _keras_hub.is_backbone(value):
        # The network alone, as a plain Functional model: a task
        # preprocesses in `predict`, and neither kind has its graph in
        # its config.
        return _keras_hub.functional_view(value), None
    if isinstance(value, keras.Model):
        return value, None
    if not isinstance(value, (str, os.PathLike)):
        raise ValueError(
            f"`{argument}` must be a keras.Model or the path of a '.keras' "
            f"file. Received: {argument} of type {type(value).__name__}"
        )
    path = model_path(value, argument)
    import keras_groupnl.layers  # noqa: F401  (registers the layers)

    try:
        loaded = keras.saving.load_model(path, compile=False)
    except Exception as error:
        raise ValueError(
            f"Cannot read the model at '{path}': "
            f"{type(error).__name__}: {str(error)[:500]}"
        ) from None
    if not isinstance(loaded, keras.Model):
        raise ValueError(
            f"The file '{path}' does not hold a Keras model "
            f"(it holds a {type(loaded).__name__})."
        )
    return loaded, path


def model_io(model):
    """Input and output shapes; `(None, None)` for a subclassed model."""
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        inputs = outputs = None
    if not inputs or not outputs:
        return None, None
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            "`convert` supports models with one input and one output. "
            f"Received: model '{model.name}' with {len(inputs)} inputs and "
            f"{len(outputs)} outputs"
        )
    return tuple(inputs[0].shape), tuple(outputs[0].shape)
