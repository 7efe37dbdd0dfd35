"""`convert`: a Keras model to verified int8 TFLite for phones and MCUs."""

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid

import keras
import numpy as np

from keras_groupnl.converters._errors import ConversionError

TARGETS = ("phone", "mcu")
_IO_DTYPES = ("float32", "int8")
REPORT_FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class ConversionResult:
    """What `convert` produced.

    Attributes:
        tflite_path: path of the `.tflite` model.
        report_path: path of the JSON verification report.
        report: the report as a dict (the content of `report_path`).
        files: dict mapping each artefact (`"tflite"`, `"report"`, and for
            the `"mcu"` target `"c_source"`, `"c_header"`, `"ops_header"`)
            to its path.
    """

    tflite_path: str
    report_path: str
    report: dict
    files: dict

    def summary(self):
        """The report as a plain-text table."""
        return format_report(self.report)


# --------------------------------------------------------------------------
# Argument validation. Everything here runs before any file is written.


def _check_target(target):
    if not isinstance(target, str) or target not in TARGETS:
        raise ValueError(
            "Unknown `target`: expected 'phone' (int8 LiteRT model for "
            "phones) or 'mcu' (full-integer model for TensorFlow Lite "
            f"Micro). Received: target={target!r}"
        )
    return target


def _check_io_dtype(io_dtype, target):
    if io_dtype is None:
        return "int8" if target == "mcu" else "float32"
    if isinstance(io_dtype, str):
        value = {"float": "float32"}.get(io_dtype, io_dtype)
    else:
        try:
            value = np.dtype(io_dtype).name
        except TypeError:
            value = None
    if value not in _IO_DTYPES:
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


def _check_name(name):
    if not isinstance(name, str) or not re.fullmatch(
        r"[A-Za-z_][A-Za-z0-9_]{0,63}", name
    ):
        raise ValueError(
            "`name` must be a C identifier (letters, digits and '_', not "
            "starting with a digit, at most 64 characters): it names the "
            f"files and the C array. Received: name={name!r}"
        )
    return name


def _check_count(value, name, allow_none):
    if value is None and allow_none:
        return None
    if (
        not isinstance(value, (int, np.integer))
        or isinstance(value, bool)
        or value <= 0
    ):
        raise ValueError(
            f"`{name}` must be a positive integer"
            + (" or None" if allow_none else "")
            + f". Received: {name}={value!r}"
        )
    return int(value)


def _check_output_dir(output_dir):
    """Checks that `output_dir` is, or can be made, a writable directory.

    Nothing is created: a missing directory is created only when the
    conversion has succeeded.
    """
    if not isinstance(output_dir, (str, os.PathLike)) or not str(
        os.fspath(output_dir)
    ):
        raise ValueError(
            "`output_dir` must be a path to a directory. "
            f"Received: output_dir={output_dir!r}"
        )
    path = os.path.abspath(os.fspath(output_dir))
    probe_in = path
    while not os.path.exists(probe_in):
        parent = os.path.dirname(probe_in)
        if parent == probe_in:
            break
        probe_in = parent
    if not os.path.isdir(probe_in):
        what = (
            "is a file"
            if probe_in == path
            else f"lies under the file '{probe_in}'"
        )
        raise ValueError(
            f"`output_dir` cannot be written: it {what}. "
            f"Received: output_dir={os.fspath(output_dir)!r}"
        )
    try:
        probe = tempfile.mkdtemp(prefix=".keras_groupnl_probe_", dir=probe_in)
    except OSError as error:
        raise ValueError(
            f"`output_dir` cannot be written ({error.strerror or error}: "
            f"'{probe_in}'). Received: output_dir={os.fspath(output_dir)!r}"
        ) from None
    os.rmdir(probe)
    return path


def _load_model(model):
    if isinstance(model, keras.Model):
        return model, None
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise ValueError(
                f"Cannot read the model: no file at '{path}'. "
                f"Received: model={path!r}"
            )
        if not path.endswith(".keras"):
            raise ValueError(
                "Cannot read the model: expected a Keras v3 '.keras' file. "
                f"Received: model={path!r}"
            )
        try:
            # Registers the GroupNL layers for deserialisation.
            import keras_groupnl.layers  # noqa: F401

            loaded = keras.saving.load_model(path, compile=False)
        except Exception as error:
            raise ValueError(
                f"Cannot read the model at '{path}': "
                f"{type(error).__name__}: {error}"
            ) from None
        if not isinstance(loaded, keras.Model):
            raise ValueError(
                f"The file '{path}' does not hold a Keras model "
                f"(it holds a {type(loaded).__name__})."
            )
        return loaded, path
    raise ValueError(
        "`model` must be a keras.Model or the path of a '.keras' file. "
        f"Received: model of type {type(model).__name__}"
    )


def _model_io(model):
    """Input and output shapes; `None` for a subclassed model."""
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        inputs = outputs = None
    if not inputs or not outputs:
        return None, None  # Subclassed: taken from the data.
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            "`convert` supports models with one input and one output. "
            f"Received: model '{model.name}' with {len(inputs)} inputs and "
            f"{len(outputs)} outputs"
        )
    return tuple(inputs[0].shape), tuple(outputs[0].shape)


def _subclassed_output_shape(model, x):
    """Calls a model without symbolic inputs on one sample."""
    if not model.built:
        raise ValueError(
            f"Model '{model.name}' is not built; call it on data before "
            "converting it."
        )
    try:
        output = model(x[:1], training=False)
    except Exception as error:
        raise ValueError(
            "`representative_data` does not fit the model: calling it on one "
            f"sample of shape {x.shape[1:]} failed: {error}"
        ) from None
    if isinstance(output, (list, tuple, dict)):
        raise ValueError(
            "`convert` supports models with one input and one output. "
            f"Received: model '{model.name}' returning a "
            f"{type(output).__name__}"
        )
    return (None,) + tuple(output.shape[1:])


def _to_array(value, what):
    if isinstance(value, (str, bytes, dict)):
        raise ValueError(
            f"{what} must be an array or an iterable of arrays. "
            f"Received: a {type(value).__name__}"
        )
    try:
        return np.asarray(value)
    except Exception as error:
        raise ValueError(
            f"{what} could not be read as an array: {error}"
        ) from None


def collect_data(representative_data, labels=None):
    """Reads `representative_data` (and labels) into NumPy arrays.

    `representative_data` is an array of samples with the batch axis first
    (NumPy, or anything `np.asarray` accepts: TF, JAX and torch tensors), or
    an iterable of such batches, or of `(x, y)` tuples as a `tf.data`
    dataset or a `keras.utils.PyDataset` yields them.
    """
    if representative_data is None:
        raise ValueError(
            "`representative_data` is required: the int8 targets calibrate "
            "every activation range on samples of the real inputs. "
            "Received: representative_data=None"
        )
    found_labels = []
    if (
        isinstance(representative_data, np.ndarray)
        or hasattr(representative_data, "__array__")
        or (
            hasattr(representative_data, "shape")
            and hasattr(representative_data, "dtype")
        )
    ):
        batches = [_to_array(representative_data, "`representative_data`")]
    elif isinstance(representative_data, (str, bytes, dict)):
        raise ValueError(
            "`representative_data` must be an array of samples or an "
            "iterable of batches (the CLI reads .npz files). "
            f"Received: a {type(representative_data).__name__}"
        )
    else:
        try:
            iterator = iter(representative_data)
        except TypeError:
            raise ValueError(
                "`representative_data` must be an array of samples or an "
                "iterable of batches. Received: an object of type "
                f"{type(representative_data).__name__}"
            ) from None
        batches = []
        for item in iterator:
            # `(x, y)` or `(x, y, sample_weight)` batches, as tf.data and
            # keras.utils.PyDataset yield them.
            if isinstance(item, tuple) or (
                isinstance(item, list)
                and 1 <= len(item) <= 3
                and all(hasattr(e, "shape") for e in item)
            ):
                if not item:
                    continue
                batches.append(_to_array(item[0], "A representative batch"))
                if len(item) > 1 and item[1] is not None:
                    found_labels.append(_to_array(item[1], "A label batch"))
            else:
                batches.append(_to_array(item, "A representative batch"))
    for batch in batches:
        if batch.dtype == object or batch.dtype.kind not in "biuf":
            raise ValueError(
                "`representative_data` must hold real numbers (float or "
                f"integer). Received: dtype={batch.dtype}"
            )
        if batch.dtype.kind == "b":
            raise ValueError(
                "`representative_data` must hold real numbers, not booleans. "
                f"Received: dtype={batch.dtype}"
            )
    batches = [b for b in batches if b.ndim == 0 or b.shape[0] != 0]
    if not batches:
        raise ValueError(
            "`representative_data` is empty: the int8 targets need samples "
            "of the real inputs to calibrate on."
        )
    ranks = {b.ndim for b in batches}
    shapes = {b.shape[1:] for b in batches}
    if len(ranks) != 1 or len(shapes) != 1:
        raise ValueError(
            "The batches of `representative_data` have different shapes: "
            f"{sorted(str(b.shape) for b in batches)[:4]}"
        )
    x = np.concatenate(batches, axis=0) if len(batches) > 1 else batches[0]
    if labels is None and found_labels:
        labels = (
            np.concatenate(found_labels, axis=0)
            if len(found_labels) > 1
            else found_labels[0]
        )
    return x, labels


def _check_data(x, input_shape, argument="representative_data"):
    expected_rank = len(input_shape)
    if x.ndim != expected_rank:
        raise ValueError(
            f"`{argument}` does not fit the model: the model takes "
            f"batches of shape {_shape_str(input_shape)}, so the data needs "
            f"{expected_rank} axes with the batch first. "
            f"Received: {argument}.shape={x.shape}"
        )
    for got, want in zip(x.shape[1:], input_shape[1:]):
        if want is not None and got != want:
            raise ValueError(
                f"`{argument}` does not fit the model: samples have "
                f"shape {tuple(x.shape[1:])}, the model takes "
                f"{tuple(input_shape[1:])}. "
                f"Received: {argument}.shape={x.shape}"
            )
    x = x.astype(np.float32, copy=False)
    if not np.all(np.isfinite(x)):
        raise ValueError(
            f"`{argument}` contains NaN or infinite values, which "
            "cannot calibrate an int8 model."
        )
    return x


def _check_labels(labels, num_samples, output_shape):
    if labels is None:
        return None
    y = _to_array(labels, "`labels`")
    classes = output_shape[-1] if len(output_shape) == 2 else None
    if y.ndim == 2 and classes is not None and y.shape[1] == classes:
        y = np.argmax(y, axis=1)  # one-hot
    elif y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.dtype.kind not in "iuf" or len(y) != num_samples:
        raise ValueError(
            "`labels` must hold one class index (or one-hot row) per sample "
            f"of `representative_data` ({num_samples} samples). "
            f"Received: labels with shape {y.shape} and dtype {y.dtype}"
        )
    if y.dtype.kind == "f":
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError("`labels` must be integer class indices.")
    y = y.astype(np.int64)
    if classes is None:
        raise ValueError(
            "`labels` are given, but the model output is not a "
            f"(batch, classes) tensor: {output_shape}"
        )
    if y.min() < 0 or y.max() >= classes:
        raise ValueError(
            f"`labels` must be class indices in [0, {classes}). "
            f"Received: values from {y.min()} to {y.max()}"
        )
    return y


def _shape_str(shape):
    dims = ("batch" if d is None else str(d) for d in shape)
    return "(" + ", ".join(dims) + ")"


# --------------------------------------------------------------------------
# Progress display.


class _Progress:
    def __init__(self, verbose):
        self.verbose = verbose

    def stage(self, message):
        if self.verbose:
            print(f"[keras-groupnl] {message}", flush=True)

    def bar(self, total, label):
        if not self.verbose or total <= 0:
            return None
        self.stage(label)
        # Redirected output gets a line every few seconds, not a flood.
        interactive = getattr(sys.stdout, "isatty", lambda: False)()
        bar = keras.utils.Progbar(
            target=total, verbose=1, interval=0.1 if interactive else 5.0
        )
        state = {"n": 0}

        def advance(step=1):
            state["n"] += step
            bar.update(state["n"])

        return advance


# --------------------------------------------------------------------------
# The public entry point.


def convert(
    model,
    target,
    representative_data,
    output_dir,
    labels=None,
    *,
    verification_data=None,
    io_dtype=None,
    name="model",
    calibration_samples=500,
    verification_samples=None,
    min_top1_agreement=None,
    fold_batchnorm=True,
    verbose=1,
):
    """Converts a Keras model to a verified int8 TFLite model.

    The `"phone"` target makes an int8 model (int8 weights with per-channel
    scales, int8 activations) with float32 or int8 input and output, for
    LiteRT with XNNPACK. The `"mcu"` target makes a full-integer model for
    TensorFlow Lite Micro: int8 input and output, no float tensor and no
    float op anywhere, only operators that TFLite Micro implements, plus
    `<name>_data.cc` / `<name>_data.h` (16-byte-aligned C array),
    `<name>_ops.h` (the `MicroMutableOpResolver` registration) and the
    tensor-arena size measured in TFLite Micro.

    GroupNL sinusoids are made integer exactly: every NLF becomes an int8
    lookup table (`CAST -> ADD -> GATHER`), computed from the quantization of
    its input and output, so it equals `sin(T * (x - phi))` to int8
    rounding. A BatchNormalization (and ReLU/ReLU6) right after a GroupNL
    layer is folded in: into the tables for the generated maps, into one 1x1
    depthwise op for the seed maps (see `fold_batchnorm`).

    The converted model is run on `representative_data` (LiteRT for both
    targets, TFLite Micro as well for `"mcu"`) and compared with the Keras
    model. The report (also written as `<name>_report.json` beside the
    model) gives the size, op histogram, float-op count, input/output
    quantization, top-1 agreement and output error against Keras, accuracy
    when `labels` are given, and latency on this CPU.

    Any backend works: when the process does not run the TensorFlow backend,
    the model is saved to a temporary `.keras` file and converted in a
    subprocess with `KERAS_BACKEND=tensorflow`.

    Nothing is written unless the conversion and its checks succeed; then
    every file is written atomically.

    Args:
        model: a `keras.Model` (one input, one output) or the path of a
            `.keras` file.
        target: `"phone"` or `"mcu"`.
        representative_data: samples of the real inputs, batch axis first:
            an array (NumPy, TF, JAX or torch) or an iterable of batches or
            of `(x, y)` batches. Used to calibrate (the first
            `calibration_samples`, evenly spaced) and to verify.
        output_dir: directory for the artefacts; created if missing.
        labels: optional class indices (or one-hot rows), one per sample;
            adds accuracy to the report. Taken from `(x, y)` batches when
            not given.
        verification_data: optional held-out samples to verify on instead
            of `representative_data` (which then only calibrates): an array,
            an `(x, y)` tuple or an iterable of batches, like
            `representative_data`. Its labels, when present, give the
            accuracy in the report.
        io_dtype: `"float32"` or `"int8"`: type of the model input and
            output. Defaults to `"float32"` for `"phone"`; `"mcu"` is always
            `"int8"`.
        name: C identifier naming the files and the C array. Defaults to
            `"model"` (`model.tflite`, `model_data.cc`, ...).
        calibration_samples: at most this many samples calibrate the
            activation ranges. Defaults to 500.
        verification_samples: at most this many samples verify the model;
            `None` uses them all.
        min_top1_agreement: optional float in [0, 1]; fail (writing
            nothing) when the top-1 agreement with Keras is lower.
        fold_batchnorm: fold a BatchNormalization (and a following ReLU or
            ReLU6) that directly follows a GroupNL layer into the layer's
            int8 ops. The tables then hold one 256-byte table per generated
            channel instead of one per (period, shift) pair, but each output
            is rounded once instead of three times; on a small Fashion-MNIST
            model this kept int8 accuracy within 0.3 point of float, against
            2.4 to 3.2 points lost without it. Defaults to `True`.
        verbose: 0 (silent) or 1 (stages and progress bars).

    Returns:
        A `ConversionResult`.

    Raises:
        ValueError: bad arguments, data that does not fit the model, an
            unreadable model or an unwritable `output_dir`.
        ConversionError (a `ValueError`): the model cannot be made into what
            the target promises; the message names the layer and operator.

    Example:

    >>> result = convert(model, "mcu", x_train[:500], "build/mcu")
    >>> result.report["top1_agreement"]
    0.998
    """
    target = _check_target(target)
    io_dtype = _check_io_dtype(io_dtype, target)
    name = _check_name(name)
    calibration_samples = _check_count(
        calibration_samples, "calibration_samples", allow_none=False
    )
    verification_samples = _check_count(
        verification_samples, "verification_samples", allow_none=True
    )
    if min_top1_agreement is not None and not (
        isinstance(min_top1_agreement, (int, float, np.floating))
        and 0.0 <= float(min_top1_agreement) <= 1.0
    ):
        raise ValueError(
            "`min_top1_agreement` must be None or a number in [0, 1]. "
            f"Received: min_top1_agreement={min_top1_agreement!r}"
        )
    if verbose not in (0, 1, True, False):
        raise ValueError(
            f"`verbose` must be 0 or 1. Received: verbose={verbose!r}"
        )
    output_dir = _check_output_dir(output_dir)
    model, model_path = _load_model(model)
    input_shape, output_shape = _model_io(model)
    x, labels = collect_data(representative_data, labels)
    if input_shape is None:
        input_shape = (None,) + tuple(x.shape[1:]) if x.ndim > 1 else (None,)
        x = _check_data(x, input_shape)
        output_shape = _subclassed_output_shape(model, x)
    else:
        x = _check_data(x, input_shape)
    y = _check_labels(labels, len(x), output_shape)
    if verification_data is not None:
        if isinstance(verification_data, tuple) and len(verification_data) == 2:
            x_check, y_check = collect_data(
                verification_data[0], verification_data[1]
            )
        else:
            x_check, y_check = collect_data(verification_data)
        x_check = _check_data(x_check, input_shape, "verification_data")
        y_check = _check_labels(y_check, len(x_check), output_shape)
    else:
        x_check, y_check = x, y
    options = {
        "target": target,
        "io_dtype": io_dtype,
        "name": name,
        "calibration_samples": calibration_samples,
        "verification_samples": verification_samples,
        "min_top1_agreement": (
            None if min_top1_agreement is None else float(min_top1_agreement)
        ),
        "verbose": int(bool(verbose)),
        "fold_batchnorm": bool(fold_batchnorm),
    }
    data = {"x": x, "x_check": x_check}
    if y_check is not None:
        data["y_check"] = y_check
    if keras.backend.backend() == "tensorflow":
        return _convert_validated(model, data, output_dir, options)
    return _convert_in_subprocess(model, model_path, data, output_dir, options)


def _convert_in_subprocess(model, model_path, data, output_dir, options):
    """Runs the conversion in a Python process on the TensorFlow backend."""
    workspace = tempfile.mkdtemp(prefix="keras_groupnl_convert_")
    try:
        if model_path is None:
            model_path = os.path.join(workspace, "model.keras")
            try:
                model.save(model_path)
            except Exception as error:
                raise ValueError(
                    f"The {keras.backend.backend()} backend cannot convert "
                    "in-process, and saving the model to a .keras file for the "
                    f"TensorFlow subprocess failed: {type(error).__name__}: "
                    f"{error}"
                ) from None
        data_path = os.path.join(workspace, "data.npz")
        np.savez(data_path, **data)
        spec_path = os.path.join(workspace, "spec.json")
        result_path = os.path.join(workspace, "result.json")
        with open(spec_path, "w") as f:
            json.dump(
                {
                    "model_path": os.path.abspath(model_path),
                    "data_path": data_path,
                    "output_dir": output_dir,
                    "result_path": result_path,
                    "options": options,
                },
                f,
            )
        env = dict(os.environ)
        env["KERAS_BACKEND"] = "tensorflow"
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        if options["verbose"]:
            print(
                "[keras-groupnl] the process runs the "
                f"{keras.backend.backend()} backend: converting in a "
                "TensorFlow subprocess",
                flush=True,
            )
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                "keras_groupnl.converters._worker",
                spec_path,
            ],
            env=env,
            stdout=None if options["verbose"] else subprocess.DEVNULL,
            stderr=None if options["verbose"] else subprocess.PIPE,
        )
        if not os.path.exists(result_path):
            detail = ""
            if completed.stderr:
                detail = completed.stderr.decode("utf-8", "replace")[-2000:]
            raise RuntimeError(
                "The TensorFlow conversion subprocess ended without a result "
                f"(exit status {completed.returncode}). {detail}"
            )
        with open(result_path) as f:
            result = json.load(f)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    if "error" in result:
        error = result["error"]
        if error["type"] == "ConversionError":
            raise ConversionError(
                error["message"], layer=error.get("layer"), op=error.get("op")
            )
        if error["type"] == "ValueError":
            raise ValueError(error["message"])
        raise RuntimeError(f"{error['type']}: {error['message']}")
    return ConversionResult(
        tflite_path=result["tflite_path"],
        report_path=result["report_path"],
        report=result["report"],
        files=result["files"],
    )


def _convert_validated(model, data, output_dir, options):
    """The conversion proper; TensorFlow backend, arguments validated.

    `data` holds `x` (calibration samples), `x_check` and, with labels,
    `y_check` (verification samples).
    """
    from keras_groupnl.converters import _pipeline

    return _pipeline.run(
        model,
        data["x"],
        data["x_check"],
        data.get("y_check"),
        output_dir,
        options,
    )


# --------------------------------------------------------------------------
# Writing files.


def write_atomically(files, output_dir):
    """Writes `{filename: bytes}` into `output_dir`, each file atomically.

    Creates `output_dir` if needed. On any failure, the files written so far
    and the directories created are removed again.
    """
    created = []
    path = output_dir
    missing = []
    while not os.path.exists(path):
        missing.append(path)
        path = os.path.dirname(path)
    written = []
    try:
        for directory in reversed(missing):
            os.mkdir(directory)
            created.append(directory)
        for filename, data in files:
            final = os.path.join(output_dir, filename)
            temporary = os.path.join(
                output_dir, f".{filename}.{uuid.uuid4().hex}.tmp"
            )
            try:
                with open(temporary, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(temporary, final)
            except BaseException:
                if os.path.exists(temporary):
                    os.remove(temporary)
                raise
            written.append(final)
    except BaseException as error:
        for final in written:
            try:
                os.remove(final)
            except OSError:
                pass
        for directory in reversed(created):
            try:
                os.rmdir(directory)
            except OSError:
                pass
        if isinstance(error, OSError):
            raise ValueError(
                f"`output_dir` cannot be written: {error}"
            ) from None
        raise
    return [os.path.join(output_dir, f) for f, _ in files]


# --------------------------------------------------------------------------
# The report as a table.


def format_report(report):
    """Formats a conversion report as a plain-text table."""
    rows = []

    def add(key, value):
        rows.append((key, value))

    add("target", report["target"])
    model = report["model"]
    add("model", f"{model['name']} ({model['params']:,} params)")
    add("tflite", report["files"]["tflite"])
    add("size", f"{report['size_bytes']:,} bytes")
    for role in ("input", "output"):
        d = report[role]
        if d["scale"] is not None:
            q = f", scale {d['scale']:.6g}, zero point {d['zero_point']}"
        elif d.get("quantized_as"):
            inner = d["quantized_as"]
            q = (
                f" (int8 inside: scale {inner['scale']:.6g}, zero point "
                f"{inner['zero_point']})"
            )
        else:
            q = ""
        add(role, f"{d['dtype']} {d['shape']}{q}")
    histogram = report["op_histogram"]
    add("ops", ", ".join(f"{k} x{v}" for k, v in histogram.items()))
    floats = str(report["float_ops"])
    if report["float_ops"] and not report["float_ops_outside_io"]:
        floats += " (float input/output conversion only)"
    add("float ops", floats)
    for lut in report["groupnl"]:
        add(
            f"  NLF table {lut['layer']}",
            f"{lut['tables']} tables, {lut['channels']} channels, "
            f"{lut['table_bytes']} bytes",
        )
    add(
        "samples",
        f"{report['num_samples']} verified, "
        f"{report['calibration_samples']} calibrated",
    )
    for runtime, v in report["verification"].items():
        line = (
            f"top-1 agreement {v['top1_agreement']:.4f}"
            if v["top1_agreement"] is not None
            else "top-1 agreement n/a"
        )
        line += f", max |error| {v['max_abs_error']:.4g}"
        line += f" (mean {v['mean_abs_error']:.3g})"
        if v.get("accuracy") is not None:
            line += f", accuracy {v['accuracy']:.4f}"
        add(f"vs keras: {runtime}", line)
    if report.get("keras_accuracy") is not None:
        add("keras accuracy", f"{report['keras_accuracy']:.4f}")
    for runtime, lat in report["latency"].items():
        text = (
            f"{lat['median_ms']:.3f} ms median, {lat['p90_ms']:.3f} ms p90 "
            f"({lat['runs']} runs)"
        )
        if lat.get("xnnpack_partitions") is not None:
            text += f", {lat['xnnpack_partitions']} XNNPACK partition(s)"
        add(f"latency {runtime}", text)
    if report.get("mcu"):
        mcu = report["mcu"]
        add("tensor arena", f"{mcu['arena_bytes']:,} bytes (measured in TFLM)")
        ops = mcu["resolver_ops"]
        add(
            "op resolver",
            f"MicroMutableOpResolver<{len(ops)}>: " + ", ".join(ops),
        )
    width = max(len(k) for k, _ in rows)
    line = "+" + "-" * (width + 2) + "+" + "-" * 62
    out = [line]
    for key, value in rows:
        out.append(f"| {key.ljust(width)} | {value}")
    out.append(line)
    return "\n".join(out)
