"""`convert`: a Keras model to verified int8 TFLite for phones and MCUs."""

import dataclasses

from keras_groupnl.converters import _arguments
from keras_groupnl.converters import _data
from keras_groupnl.converters import _files
from keras_groupnl.converters._report import ConversionReport

TARGETS = _arguments.TARGETS


@dataclasses.dataclass(frozen=True)
class ConversionResult:
    """What `convert` produced.

    Attributes:
        tflite_path: path of the `.tflite` model.
        report_path: path of the JSON report.
        report: the `ConversionReport` (the content of `report_path`).
        files: artefact role (`"tflite"`, `"report"`, and for the `"mcu"`
            target `"c_source"`, `"c_header"`, `"ops_header"`) -> path.
    """

    tflite_path: str
    report_path: str
    report: ConversionReport
    files: dict

    def summary(self):
        """The report as a plain-text table."""
        return self.report.summary()


def convert(
    model,
    target,
    representative_data,
    output_dir,
    labels=None,
    *,
    verification_data=None,
    io_dtype=None,
    integer_only=False,
    compare_with=None,
    name="model",
    calibration_samples=500,
    verification_samples=None,
    min_top1_agreement=None,
    fold_batchnorm=True,
    class_names=None,
    normalization=None,
    rgb_input=None,
    mcu_kernel="builtin",
    verbose=1,
):
    """Converts a Keras model to a verified int8 TFLite model.

    `"phone"` makes an int8 model for LiteRT with XNNPACK (int8 weights with
    per-channel scales, int8 activations, float32 or int8 input and output)
    in which every GroupNL layer is an int8 seed conv and a short float tail
    that XNNPACK delegates, so the whole model runs as one XNNPACK
    partition. With `integer_only=True` it is full-integer instead (every
    NLF an int8 lookup table), for accelerators that run only int8 ops
    (NNAPI / NPU delegates); on a CPU the float tail is faster.

    `"mcu"` makes a full-integer model for TensorFlow Lite Micro: int8 input
    and output, no float tensor, only operators TFLite Micro implements, one
    256-byte table per NLF, the BatchNormalization after a GroupNL layer as
    one int8 1x1 depthwise conv. It writes `<name>_data.cc` / `<name>_data.h`
    (16-byte-aligned C array), `<name>_ops.h` (the `MicroMutableOpResolver`
    registration), and measures the tensor arena in TFLite Micro. The file
    carries no tensor names, signatures or metadata (TFLite Micro reads
    none).

    The converted model runs in its runtime (LiteRT; TFLite Micro for
    `"mcu"`) on the verification samples and is compared with the Keras
    model. The report (`<name>_report.json`, `result.summary()` as a table)
    gives the file size (tables / weights / other bytes), the ops, the float
    ops and the layers they belong to, I/O quantization, top-1 agreement and
    output error against Keras, accuracy when labels are given, latency on
    this CPU, the XNNPACK partitions (phone) or the arena (mcu). With
    `compare_with`, a plain model is converted and run the same way and its
    figures (and the ratios, latency timed interleaved) are in the report.

    A `"phone"` model is ready for Android's image clients (MediaPipe Tasks
    `ImageClassifier`, LiteRT `CompiledModel`): it carries TFLite model
    metadata (RGB or grayscale image input, the normalisation that
    reproduces the model's preprocessing, min/max, the class names as a
    packed label file, name, description with the GroupNL settings, and a
    version: the first 12 hex digits of the SHA-256 of the model without
    metadata). A 1-channel image model gets an RGB -> gray input stage, a
    model normalised per channel (ImageNet mean / std) gets the
    normalisation in the graph (then it takes raw pixels), and
    `io_dtype="uint8"` gives camera pixels straight in. The report says
    what was added, and which clients accepted the file
    (`report.android`).

    Any backend works: on JAX or PyTorch the model is saved to a temporary
    `.keras` file and converted in a TensorFlow subprocess, which stops when
    this process stops.

    Nothing is written unless the conversion and its checks succeed; then
    every file is written atomically, and artefacts of the same `name` from
    an earlier conversion for the other target are removed. An interrupted
    conversion (Ctrl-C) stops and writes nothing.

    Args:
        model: a `keras.Model` (one input, one output) or the path of a
            `.keras` file.
        target: `"phone"` or `"mcu"`.
        representative_data: samples of the real inputs, batch axis first:
            an array (NumPy, TF, JAX or torch) or an iterable of batches or
            of `(x, y)` batches. Calibrates (`calibration_samples` of them,
            evenly spaced over an array) and, without `verification_data`,
            verifies. Of an iterable, only as many samples as needed are
            read (`max(calibration_samples, verification_samples)`, or
            10,000 when `verification_samples` is `None`), so endless
            generators and repeated datasets are fine.
        output_dir: directory for the artefacts; created if missing.
        labels: optional class indices (or one-hot rows), one per sample;
            adds accuracy to the report. Taken from `(x, y)` batches when
            not given. (The names of the classes are `class_names`.)
        verification_data: optional held-out samples to verify on instead
            (an array, an `(x, y)` tuple or an iterable of batches).
        io_dtype: `"float32"`, `"uint8"` (`"phone"` only: raw pixels in,
            as camera frames come) or `"int8"`, the type of the model input
            and output. Defaults to `"float32"` for `"phone"`; `"mcu"` is
            int8.
        integer_only: `"phone"` only: a full-integer model.
        compare_with: optional plain model (a `keras.Model` or `.keras`
            path), e.g. the same application with `conv_type="plain"`, to
            convert and measure side by side.
        name: C identifier naming the files and the C array.
        calibration_samples: at most this many samples calibrate.
        verification_samples: at most this many samples verify; `None`:
            all of an array (at most 10,000 of an iterable).
        min_top1_agreement: optional number in [0, 1]: fail, writing
            nothing, when the top-1 agreement with Keras is lower.
        fold_batchnorm: fold a BatchNormalization (and a following ReLU /
            ReLU6) that directly follows a GroupNL layer into its converted
            form. Defaults to `True`.
        class_names: `"phone"` only: the class names, a list or the path
            of a text file with one name per line (Android's labels.txt),
            packed into the model for its clients. Defaults to the class
            indices ("0", "1", ...).
        normalization: `"phone"` only: `(mean, std)` such that the model
            input is `(pixel - mean) / std` for pixels in [0, 255], each a
            number or one per channel. Defaults to what the representative
            data shows: raw pixels, `x / 255`, `x / 127.5 - 1` or the
            ImageNet mean / std of `applications.resnet.preprocess_input`;
            data that matches none is not taken for images.
        rgb_input: `"phone"` only: whether a 1-channel image model takes
            RGB (through an RGB -> gray input stage), as Android's image
            clients require. Defaults to `True` for such models; `False`
            keeps one channel.
        mcu_kernel: `"mcu"` only: how each GroupNL layer's tail (after its
            seed conv) runs. `"builtin"`: TFLite Micro's own ops, so the
            file runs in any TFLite Micro build (and in its Python
            interpreter). `"fused"`: one `KERAS_GROUPNL_TAIL` custom op per
            layer, whose C kernel (`keras_groupnl_tail.c` / `.h`,
            `keras_groupnl_tail_tflm.cc`) is written beside the model and
            registered in `<name>_ops.h`: far fewer instructions on a
            Cortex-M with CMSIS-NN, one 256-byte table per NLF.
            `"fused_channel_tables"`: the same with a 256-byte table per
            channel (BatchNorm included): fewer instructions, more flash.
            Verified with TFLite Micro for the builtin ops and the kernel's
            bit-exact NumPy reference for the fused ones. Defaults to
            `"builtin"`.
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
    >>> result.report.top1_agreement
    0.998
    """
    options = _arguments.options(
        target,
        io_dtype,
        name,
        calibration_samples,
        verification_samples,
        min_top1_agreement,
        fold_batchnorm,
        integer_only,
        verbose,
        android={
            "class_names": class_names,
            "normalization": normalization,
            "rgb_input": rgb_input,
        },
        mcu_kernel=mcu_kernel,
    )
    output_dir = _arguments.output_dir(output_dir)
    model, model_path = _arguments.load_model(model)
    twin, twin_path = (None, None)
    if compare_with is not None:
        twin, twin_path = _arguments.load_model(compare_with, "compare_with")
    data = _samples(
        model, representative_data, labels, verification_data, options
    )
    import keras

    if keras.backend.backend() == "tensorflow":
        from keras_groupnl.converters import _pipeline

        report, files = _pipeline.run(model, data, options, twin)
    else:
        from keras_groupnl.converters import _subprocess

        report, files = _subprocess.run(
            (model, model_path), data, options, (twin, twin_path)
        )
    paths = _files.write_outputs(
        files, output_dir, options["name"], report.files
    )
    return ConversionResult(
        tflite_path=paths["tflite"],
        report_path=paths["report"],
        report=report,
        files=paths,
    )


def _samples(model, representative_data, labels, verification_data, options):
    """`{"x", "x_check"[, "y_check"]}`: checked float32 samples, labels."""
    input_shape, output_shape = _arguments.model_io(model)
    verify = options["verification_samples"] or _data.ITERABLE_LIMIT
    limit = options["calibration_samples"]
    if verification_data is None:
        limit = max(limit, verify)
    x, labels = _data.collect(
        representative_data, "representative_data", limit, labels
    )
    if input_shape is None:  # A subclassed model: shapes from the data.
        input_shape = (None,) + tuple(x.shape[1:])
        x = _data.fit_to_model(x, input_shape, "representative_data")
        output_shape = _data.subclassed_output_shape(model, x)
    else:
        x = _data.fit_to_model(x, input_shape, "representative_data")
    _arguments.check_class_names(options["class_names"], output_shape)
    if options["target"] == "phone":
        _check_image_input(x, options)
    y = _data.class_labels(labels, len(x), output_shape)
    data = {"x": x, "x_check": x}
    if verification_data is not None:
        given = None
        if isinstance(verification_data, tuple) and len(verification_data) == 2:
            verification_data, given = verification_data
        x_check, y = _data.collect(
            verification_data, "verification_data", verify, given
        )
        data["x_check"] = _data.fit_to_model(
            x_check, input_shape, "verification_data"
        )
        y = _data.class_labels(y, len(x_check), output_shape)
    if y is not None:
        data["y_check"] = y
    return data


def _check_image_input(x, options):
    """Checks `normalization` and `rgb_input` against the samples now,
    before anything is converted."""
    from keras_groupnl.converters import _android_io
    from keras_groupnl.converters import _normalization

    normalization = _normalization.resolve(options["normalization"], x)
    _android_io.plan(
        normalization, x.shape[-1], options["io_dtype"], options["rgb_input"]
    )


def format_report(report):
    """A conversion report as a plain-text table (`report.summary()`)."""
    return report.summary()
