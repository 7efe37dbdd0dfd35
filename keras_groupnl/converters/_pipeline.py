"""The conversion itself: TensorFlow backend, arguments already checked.

`run` converts the model for its target, checks the target's promises,
verifies the model in its runtime against Keras, optionally converts and
measures a plain model the same way (`compare_with`), and returns the
report and the artefacts' bytes; `convert` writes them.
"""

import dataclasses
import importlib.metadata
import tempfile

import keras
import numpy as np

from keras_groupnl.analysis.machine import describe_machine
from keras_groupnl.converters import _android
from keras_groupnl.converters import _artifacts
from keras_groupnl.converters import _cortex_m
from keras_groupnl.converters import _flatbuffer as fb
from keras_groupnl.converters import _inspect
from keras_groupnl.converters import _mcu
from keras_groupnl.converters import _names
from keras_groupnl.converters import _phone
from keras_groupnl.converters import _promises
from keras_groupnl.converters import _report
from keras_groupnl.converters import _runtime
from keras_groupnl.converters import _verify
from keras_groupnl.converters._errors import ConversionError
from keras_groupnl.converters._job import TargetJob
from keras_groupnl.converters._progress import Progress

TARGET_MODULES = {"phone": _phone, "mcu": _mcu}
LATENCY_NOTES = {
    "litert": "LiteRT, XNNPACK, 1 thread, batch 1, this CPU",
    "tflm": "TFLite Micro reference kernels on this CPU: a proxy for an MCU",
}


@dataclasses.dataclass
class _Measured:
    """One converted model, checked and run (`prepared`: the phone's
    Android step, see `_android.Prepared`)."""

    model: object
    converted: object
    checked: object
    prepared: object = None


def run(model, data, options, compare_with=None):
    """Converts, verifies and reports; returns `(report, files)`.

    Args:
        model: the Keras model.
        data: `{"x", "x_check"[, "y_check"]}` float32 samples (and labels).
        options: the validated options of `convert`.
        compare_with: optional plain Keras model to measure side by side.

    Returns:
        The `ConversionReport` and `[(file name, bytes)]` of the artefacts.
    """
    progress = Progress(options["verbose"])
    calibration = _evenly_spaced(data["x"], options["calibration_samples"])
    n_verify = options["verification_samples"] or len(data["x_check"])
    x_verify = data["x_check"][:n_verify]
    y_verify = data.get("y_check")
    y_verify = None if y_verify is None else y_verify[:n_verify]
    progress.stage(
        f"converting '{model.name}' for target '{options['target']}' "
        f"({len(calibration)} calibration samples)"
    )
    with tempfile.TemporaryDirectory(prefix="keras_groupnl_") as workdir:
        ours = _measure(
            model, calibration, x_verify, y_verify, options, workdir, progress
        )
        if ours.prepared is not None:
            progress.stage("running it in Android's clients")
            _android.check_clients(ours.prepared, x_verify)
        twin = None
        if compare_with is not None:
            progress.stage(f"converting the plain model '{compare_with.name}'")
            twin = _measure(
                compare_with,
                calibration,
                x_verify,
                y_verify,
                options,
                workdir,
                Progress(0),
            )
    progress.stage("timing")
    report = _build_report(ours, twin, options, len(calibration), y_verify)
    _check_agreement(report, options["min_top1_agreement"])
    files = _artifacts.files(
        options["name"], ours.converted.model_bytes, report
    )
    return report, files


def _evenly_spaced(x, k):
    if len(x) <= k:
        return x
    return x[np.unique(np.linspace(0, len(x) - 1, k).round().astype(np.int64))]


def _measure(model, calibration, x, y, options, workdir, progress):
    """Converts one model for the target and runs it against Keras."""
    job = TargetJob(
        sample_shape=tuple(x.shape[1:]),
        calibration=calibration,
        workdir=tempfile.mkdtemp(dir=workdir),
        layer_names=_names.layer_names(model),
        int8_io=options["io_dtype"] != "float32",
        integer_only=options["integer_only"],
        fold=options["fold_batchnorm"],
        mcu_kernel=options.get("mcu_kernel", "builtin"),
        on_sample=progress.bar(len(calibration), "calibrating int8 ranges"),
    )
    converted = TARGET_MODULES[options["target"]].convert(model, job)
    prepared, x_run = None, x
    if options["target"] == "phone":
        prepared = _android.prepare(converted, model, calibration, options)
        converted, x_run = prepared.converted, prepared.plan.to_client(x)
    _promises.check(converted, options["target"], options["integer_only"])
    progress.stage(f"verifying on {len(x)} samples")
    reference = np.asarray(model.predict(x, batch_size=64, verbose=0))
    checked = _verify.check_runtime(
        converted, reference.astype(np.float32), x_run, y, progress
    )
    return _Measured(model, converted, checked, prepared)


def _check_agreement(report, minimum):
    agreement = report.top1_agreement
    if minimum is not None and (agreement is None or agreement < minimum):
        raise ConversionError(
            f"Top-1 agreement with the Keras model is {agreement}, below "
            f"min_top1_agreement={minimum}; nothing was written."
        )


def _latencies(ours, twin, sample):
    """Latency of our model (and the twin's), interleaved in one run.

    A fused "mcu" model is not timed here: its GroupNL ops run as NumPy on
    the host, which says nothing of a microcontroller (its Cortex-M
    estimate does).
    """
    measured = {"ours": ours, "twin": twin}
    runtimes = {
        key: m.converted.runtime
        for key, m in measured.items()
        if m is not None and m.converted.runtime in LATENCY_NOTES
    }
    calls = {
        key: measured[key].checked.runner.timed_call(sample) for key in runtimes
    }
    timed = _runtime.interleaved_latency(calls) if calls else {}
    latency = {"ours": {}, "twin": {}}
    for key, value in timed.items():
        runtime = runtimes[key]
        latency[key][runtime] = _report.Latency(
            note=LATENCY_NOTES[runtime], **value
        )
    return latency


def _sizes(measured):
    model_bytes = measured.converted.model_bytes
    return _inspect.byte_breakdown(fb.read_model(model_bytes), len(model_bytes))


def _groupnl_layers(converted):
    tables = converted.tables
    return [
        _report.GroupNLLayer(
            layer=layer.name,
            variant=layer.variant,
            seed_channels=layer.form.seed_channels,
            generated_channels=layer.form.generated_channels,
            folded_layers=list(layer.fold.layers) if layer.fold else [],
            tables=tables.get(layer.name, 0) // 256,
            table_bytes=int(tables.get(layer.name, 0)),
        )
        for layer in converted.deployed
    ]


def _estimate(measured, target):
    """The Cortex-M cost model's estimate of an "mcu" model, or `None`."""
    if target != "mcu":
        return None
    return _cortex_m.estimate(measured.converted.model_bytes)


def _comparison(ours, twin, latency, sizes, twin_sizes, target):
    ratios = {"file": sizes["file"] / twin_sizes["file"]}
    estimates = _estimate(ours, target), _estimate(twin, target)
    if estimates[0] is not None:
        for name, value in estimates[0].items():
            ratios[f"cortex_m:{name}"] = (
                value["instructions"] / estimates[1][name]["instructions"]
            )
    for runtime, value in latency["ours"].items():
        if runtime in latency["twin"]:
            ratios[f"latency_{runtime}"] = (
                value.median_ms / latency["twin"][runtime].median_ms
            )
    arena = twin.checked.arena
    if arena is not None and ours.checked.arena is not None:
        ratios["arena"] = ours.checked.arena.arena_bytes / arena.arena_bytes
    agreements = [
        v.top1_agreement
        for v in twin.checked.verification.values()
        if v.top1_agreement is not None
    ]
    return _report.Comparison(
        model=twin.model.name,
        params=int(twin.model.count_params()),
        sizes=twin_sizes,
        latency=latency["twin"],
        top1_agreement=min(agreements) if agreements else None,
        arena=arena,
        delegation=twin.checked.delegation,
        ratios=ratios,
        cortex_m=estimates[1],
    )


def _build_report(ours, twin, options, calibration_samples, y_verify):
    model = fb.read_model(ours.converted.model_bytes)
    sample = ours.checked.sample
    latency = _latencies(ours, twin, sample)
    sizes = _sizes(ours)
    histogram = fb.op_histogram(model)
    floats = _inspect.float_ops(model)
    by_layer = _promises.float_ops_by_layer(model, ours.converted.op_layers)
    target = options["target"]
    return _report.ConversionReport(
        target=target,
        integer_only=options["integer_only"],
        model=ours.model.name,
        params=int(ours.model.count_params()),
        files=_artifacts.file_names(
            options["name"], target, _artifacts.FUSED_OP in histogram
        ),
        sizes=sizes,
        input=_inspect.io_tensor(model, "input"),
        output=_inspect.io_tensor(model, "output"),
        op_histogram=histogram,
        float_ops=len(floats),
        float_ops_outside_io=sum(len(ops) for ops in by_layer.values()),
        float_ops_by_layer=by_layer,
        weights=_inspect.weight_summary(model),
        groupnl=_groupnl_layers(ours.converted),
        num_samples=int(ours.checked.num_samples),
        calibration_samples=int(calibration_samples),
        verification=ours.checked.verification,
        keras_accuracy=ours.checked.keras_accuracy,
        latency=latency["ours"],
        delegation=ours.checked.delegation,
        arena=ours.checked.arena,
        resolver_ops=(
            _artifacts.resolver_methods(histogram) if target == "mcu" else None
        ),
        comparison=(
            None
            if twin is None
            else _comparison(ours, twin, latency, sizes, _sizes(twin), target)
        ),
        android=None if ours.prepared is None else ours.prepared.android,
        toolchain=_toolchain(target),
        machine=describe_machine(tensorflow=True).to_dict(),
        cortex_m=_estimate(ours, target),
    )


def _toolchain(target):
    def version(package):
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None

    packages = ["tensorflow", "ai-edge-litert", "keras-groupnl"]
    if target == "mcu":
        packages.append("tflite-micro")
    else:
        packages.append("mediapipe")
    return {"keras": keras.__version__, **{p: version(p) for p in packages}}
