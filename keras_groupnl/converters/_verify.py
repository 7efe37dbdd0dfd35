"""Running a converted model against its Keras model.

`check_runtime` runs a `Converted` model in the runtime its target promises
(LiteRT with XNNPACK, or TensorFlow Lite Micro) on the verification samples
and compares it with the Keras model's outputs.
"""

import dataclasses
import re

import numpy as np

from keras_groupnl.converters import _flatbuffer as fb
from keras_groupnl.converters import _report
from keras_groupnl.converters import _runtime
from keras_groupnl.converters._errors import ConversionError


@dataclasses.dataclass
class Checked:
    """A converted model's runner and what running it showed.

    Attributes:
        runner: the runtime's runner, kept for timing.
        verification: `{runtime: Verification}`.
        sample: one verification sample (for timing).
        num_samples: how many samples were verified.
        keras_accuracy: the Keras model's accuracy, with labels.
        arena: the TFLite Micro `Arena`, for models run there.
        delegation: the XNNPACK `Delegation`, for models run in LiteRT.
    """

    runner: object
    verification: dict
    sample: np.ndarray
    num_samples: int
    keras_accuracy: object = None
    arena: object = None
    delegation: object = None


def compare(reference, output, labels):
    """A `Verification` of `output` against the Keras `reference`."""
    ref = np.asarray(reference, np.float64).reshape(len(reference), -1)
    out = np.asarray(output, np.float64).reshape(len(output), -1)
    error = np.abs(ref - out)
    agreement = accuracy = None
    if np.ndim(reference) == 2:
        agreement = float(np.mean(ref.argmax(1) == out.argmax(1)))
        if labels is not None:
            accuracy = float(np.mean(out.argmax(1) == labels))
    return _report.Verification(
        top1_agreement=agreement,
        max_abs_error=float(error.max()),
        mean_abs_error=float(error.mean()),
        accuracy=accuracy,
    )


def check_runtime(converted, reference, x, labels, progress):
    """Runs `converted` on `x` in its runtime; returns a `Checked`."""
    if converted.runtime == "tflm":
        checked = _check_tflm(converted, reference, x, labels, progress)
    elif converted.runtime == "tflm_fused":
        checked = _check_fused(converted, reference, x, labels, progress)
    else:
        checked = _check_litert(converted, reference, x, labels, progress)
    if labels is not None and np.ndim(reference) == 2:
        checked.keras_accuracy = float(np.mean(reference.argmax(1) == labels))
    return checked


def _check_litert(converted, reference, x, labels, progress):
    try:
        runner = _runtime.LiteRTRunner(converted.model_bytes)
    except Exception as error:  # LiteRT raises several types.
        raise ConversionError(
            f"LiteRT cannot load the converted model: {error}"
        ) from None
    advance = progress.bar(len(x), "running it in LiteRT (XNNPACK)")
    output = runner.predict(x, advance)
    plan = runner.delegation()
    model = fb.read_model(converted.model_bytes)
    ops = model.subgraphs[0].operators
    undelegated = [
        f"{fb.op_name(model, ops[i])} ({converted.op_layers[i] or 'model'})"
        for i in plan["undelegated"]
    ]
    delegation = _report.Delegation(
        partitions=plan["partitions"],
        delegated_ops=len(plan["delegated"]),
        undelegated_ops=undelegated,
    )
    return Checked(
        runner,
        {"litert": compare(reference, output, labels)},
        sample=x[0],
        num_samples=len(x),
        delegation=delegation,
    )


def _check_tflm(converted, reference, x, labels, progress):
    try:
        runner = _runtime.TFLMRunner(converted.model_bytes)
        advance = progress.bar(len(x), "running it in TensorFlow Lite Micro")
        output = runner.predict(x, advance)
        arena = runner.measure_arena(x[0])
    except _runtime.TFLMError as error:
        raise tflm_failure(error, converted) from None
    return Checked(
        runner,
        {"tflm": compare(reference, output, labels)},
        sample=x[0],
        num_samples=len(x),
        arena=_report.Arena(**arena),
    )


def _check_fused(converted, reference, x, labels, progress):
    """TFLite Micro for the builtin ops, the NumPy reference (what the C
    kernel computes) for the fused ones; the arena on the stand-in."""
    from keras_groupnl.converters import _partitioned

    try:
        runner = _partitioned.PartitionedRunner(converted.model_bytes)
        advance = progress.bar(len(x), "running it (TFLite Micro + kernel)")
        output = runner.predict(x, advance)
        raw = _runtime.quantize(x[:1], runner.input_detail)
        arena = _partitioned.arena(converted.model_bytes, raw)
    except _runtime.TFLMError as error:
        raise tflm_failure(error, converted) from None
    return Checked(
        runner,
        {"tflm_fused": compare(reference, output, labels)},
        sample=x[0],
        num_samples=len(x),
        arena=_report.Arena(
            **arena,
            measured_with=(
                "tflite-micro Python interpreter on a stand-in with a PAD "
                "for every fused op, plus the fused ops' scratch (64-bit "
                "host)"
            ),
        ),
    )


def tflm_failure(error, converted):
    """A `ConversionError` naming the op (and layer) TFLite Micro rejected."""
    log = getattr(error, "log", "") or ""
    match = re.search(r"Node (\w+) \(number (\d+)\)", log) or re.search(
        r"builtin opcode '(\w+)'", log
    )
    op = match.group(1) if match else None
    layer = None
    if match and match.lastindex and match.lastindex >= 2:
        index = int(match.group(2))
        if index < len(converted.op_layers):
            layer = converted.op_layers[index]
    where = (
        f" (layer '{layer}', op {op})"
        if layer
        else (f" (op {op})" if op else "")
    )
    detail = " ".join(log.split())[:400]
    return ConversionError(
        f"TensorFlow Lite Micro cannot run the converted model{where}: "
        f"{error}. {detail}",
        layer=layer,
        op=op,
    )
