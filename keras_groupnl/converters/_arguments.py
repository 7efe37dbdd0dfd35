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
IO_DTYPES = ("float32", "int8")


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
):
    """The validated options as a plain dict (it crosses processes)."""
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
    if min_top1_agreement is not None:
        _validation.number_in(min_top1_agreement, "min_top1_agreement", 0, 1)
    if verbose not in (0, 1) or isinstance(verbose, float):
        raise ValueError(
            f"`verbose` must be 0 or 1. Received: verbose={verbose!r}"
        )
    return {
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
            "`io_dtype` must be 'float32' or 'int8' (the type of the model "
            f"input and output). Received: io_dtype={io_dtype!r}"
        )
    if target == "mcu" and value != "int8":
        raise ValueError(
            "The 'mcu' target is full-integer: its input and output are "
            f"int8. Received: io_dtype={io_dtype!r}"
        )
    return value


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
