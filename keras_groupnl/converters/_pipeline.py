"""The conversion itself, on the TensorFlow backend, with validated inputs."""

import importlib.metadata
import json
import os
import re

import keras
import numpy as np

from keras_groupnl.converters import _artifacts
from keras_groupnl.converters import _convert
from keras_groupnl.converters import _export
from keras_groupnl.converters import _flatbuffer
from keras_groupnl.converters import _runtime
from keras_groupnl.converters._errors import ConversionError


def _evenly_spaced(n, k):
    if n <= k:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))


def _version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _check_ops(tfl, target, io_dtype, names):
    """Refuses a model that is not what the target claims.

    Returns `(float_op_count, float_ops_outside_io)`.
    """
    subgraph = tfl.subgraphs[0]
    inputs = {int(i) for i in subgraph.inputs}
    outputs = {int(i) for i in subgraph.outputs}
    floats = _flatbuffer.float_ops(tfl)
    outside = []
    for index, op, tensors in floats:
        node = subgraph.operators[index]
        boundary = io_dtype == "float32" and (
            (op == "QUANTIZE" and int(node.inputs[0]) in inputs)
            or (op == "DEQUANTIZE" and int(node.outputs[0]) in outputs)
        )
        if not boundary:
            outside.append((index, op, tensors))
    if outside:
        # Name the op without an int8 kernel, not the (DE)QUANTIZE around it.
        compute = [f for f in outside if f[1] not in ("QUANTIZE", "DEQUANTIZE")]
        index, op, tensors = (compute or outside)[0]
        layer = _export.find_layer(
            names, _flatbuffer.op_tensor_names(tfl, index)
        )
        where = f"layer '{layer}'" if layer else "an unnamed part of the model"
        listing = ", ".join(sorted({o for _, o, _ in outside}))
        raise ConversionError(
            f"Cannot make {'a full-integer' if target == 'mcu' else 'an int8'} "
            f"model: {where} leaves the float op {op} in the graph "
            f"(float tensor '{tensors[0]}'); {len(outside)} float op(s) in "
            f"all: {listing}. TFLite has no int8 kernel for it. Replace the "
            "layer, or keep it out of the converted model.",
            layer=layer,
            op=op,
        )
    if target == "mcu":
        leftover = _flatbuffer.float_tensors(tfl)
        if leftover:
            raise ConversionError(
                "Cannot make a full-integer model: float tensors remain "
                f"({', '.join(leftover[:3])}).",
                op=None,
            )
        for index, node in enumerate(subgraph.operators):
            op = _flatbuffer.op_name(tfl, node)
            if op not in _flatbuffer.TFLM_RESOLVER_METHODS:
                layer = _export.find_layer(
                    names, _flatbuffer.op_tensor_names(tfl, index)
                )
                where = f"Layer '{layer}'" if layer else "The model"
                raise ConversionError(
                    f"{where} converts to the op {op}, which TensorFlow Lite "
                    "Micro does not implement; the model cannot run on a "
                    "microcontroller.",
                    layer=layer,
                    op=op,
                )
        ends = (("input", subgraph.inputs[0]), ("output", subgraph.outputs[0]))
        for role, index in ends:
            tensor = subgraph.tensors[int(index)]
            if tensor.type != _flatbuffer.schema.TensorType.INT8:
                raise ConversionError(
                    f"The model {role} is "
                    f"{_flatbuffer.TYPE_NAMES.get(tensor.type)}, not int8.",
                    op=None,
                )
    return len(floats), len(outside)


def _compare(reference, output, labels):
    ref = np.asarray(reference, np.float64).reshape(len(reference), -1)
    out = np.asarray(output, np.float64).reshape(len(output), -1)
    error = np.abs(ref - out)
    result = {
        "top1_agreement": None,
        "max_abs_error": float(error.max()),
        "mean_abs_error": float(error.mean()),
        "accuracy": None,
    }
    if np.ndim(reference) == 2:
        result["top1_agreement"] = float(
            np.mean(np.argmax(ref, axis=1) == np.argmax(out, axis=1))
        )
        if labels is not None:
            predicted = np.argmax(out, axis=1)
            result["accuracy"] = float(np.mean(predicted == labels))
    return result


def _tflm_failure(error, tfl, names):
    """A ConversionError naming the op (and layer) TFLite Micro rejected."""
    log = getattr(error, "log", "") or ""
    match = re.search(r"Node (\w+) \(number (\d+)\)", log) or re.search(
        r"builtin opcode '(\w+)'", log
    )
    op = match.group(1) if match else None
    layer = None
    if match and match.lastindex and match.lastindex >= 2:
        layer = _export.find_layer(
            names, _flatbuffer.op_tensor_names(tfl, int(match.group(2)))
        )
    detail = " ".join(log.split())[:400]
    return ConversionError(
        "TensorFlow Lite Micro cannot run the converted model"
        + (
            f" (layer '{layer}', op {op})"
            if layer
            else (f" (op {op})" if op else "")
        )
        + f": {error}. {detail}",
        layer=layer,
        op=op,
    )


def run(model, x, x_check, y_check, output_dir, options):
    progress = _convert._Progress(options["verbose"])
    target = options["target"]
    io_dtype = options["io_dtype"]
    name = options["name"]
    names = _export.layer_names(model)

    calib = x[_evenly_spaced(len(x), options["calibration_samples"])]
    n_verify = options["verification_samples"] or len(x_check)
    x_verify = x_check[:n_verify]
    y_verify = None if y_check is None else y_check[:n_verify]

    progress.stage(
        f"converting '{model.name}' for target '{target}' "
        f"({len(calib)} calibration samples)"
    )
    advance = progress.bar(len(calib), "calibrating int8 ranges")
    tflite_bytes, info = _export.convert_to_tflite(
        model,
        (1,) + tuple(x.shape[1:]),
        calib,
        int8_io=io_dtype == "int8",
        fold_batchnorm=options.get("fold_batchnorm", True),
        on_sample=advance,
    )
    tfl = _flatbuffer.read_model(tflite_bytes)
    float_count, float_outside = _check_ops(tfl, target, io_dtype, names)
    histogram = _flatbuffer.op_histogram(tfl)
    inputs, outputs = _flatbuffer.io_details(tfl)

    progress.stage(f"verifying on {len(x_verify)} samples")
    reference = model.predict(x_verify, batch_size=64, verbose=0)
    reference = np.asarray(reference, np.float32)

    verification = {}
    latency = {}
    try:
        litert = _runtime.LiteRTRunner(tflite_bytes)
    except Exception as error:
        raise ConversionError(
            f"LiteRT cannot load the converted model: {error}"
        ) from None
    advance = progress.bar(len(x_verify), "LiteRT (XNNPACK)")
    litert_out = litert.predict(x_verify, advance)
    verification["litert"] = _compare(reference, litert_out, y_verify)
    latency["litert_xnnpack_1_thread"] = litert.latency_ms(x_verify[0])
    latency["litert_xnnpack_1_thread"]["xnnpack_partitions"] = (
        litert.xnnpack_partitions
    )

    mcu = None
    if target == "mcu":
        try:
            tflm = _runtime.TFLMRunner(tflite_bytes)
            advance = progress.bar(len(x_verify), "TensorFlow Lite Micro")
            tflm_out = tflm.predict(x_verify, advance)
        except (_runtime.TFLMError, RuntimeError) as error:
            raise _tflm_failure(error, tfl, names) from None
        verification["tflm"] = _compare(reference, tflm_out, y_verify)
        latency["tflm_host_reference_kernels"] = tflm.latency_ms(x_verify[0])
        arena = tflm.measure_arena(x_verify[0])
        mcu = {
            "arena_bytes": arena["arena_bytes"],
            "arena_used_bytes": arena["used_bytes"],
            "arena_measured_with": "tflite-micro Python interpreter "
            "(reference kernels, 64-bit host)",
            "resolver_ops": _artifacts.resolver_methods(histogram),
        }

    agreements = [
        v["top1_agreement"]
        for v in verification.values()
        if v["top1_agreement"] is not None
    ]
    report = {
        "format_version": _convert.REPORT_FORMAT_VERSION,
        "target": target,
        "model": {"name": model.name, "params": int(model.count_params())},
        "files": {},
        "size_bytes": len(tflite_bytes),
        "op_histogram": histogram,
        "float_ops": float_count,
        "float_ops_outside_io": float_outside,
        "input": inputs[0],
        "output": outputs[0],
        "weights": _weight_summary(tfl),
        "groupnl": info["groupnl"],
        "bias_rescaled": info["bias_rescaled"],
        "num_samples": int(len(x_verify)),
        "calibration_samples": int(len(calib)),
        "top1_agreement": min(agreements) if agreements else None,
        "max_abs_error": max(v["max_abs_error"] for v in verification.values()),
        "verification": verification,
        "keras_accuracy": (
            None
            if y_verify is None or reference.ndim != 2
            else float(np.mean(np.argmax(reference, axis=1) == y_verify))
        ),
        "latency": latency,
        "mcu": mcu,
        "toolchain": {
            "keras": keras.__version__,
            "tensorflow": _version("tensorflow"),
            "ai-edge-litert": _version("ai-edge-litert"),
            "tflite-micro": (
                _version("tflite-micro") if target == "mcu" else None
            ),
            "keras-groupnl": _version("keras-groupnl"),
        },
    }
    minimum = options["min_top1_agreement"]
    if minimum is not None and (
        report["top1_agreement"] is None or report["top1_agreement"] < minimum
    ):
        raise ConversionError(
            f"Top-1 agreement with the Keras model is "
            f"{report['top1_agreement']}, below min_top1_agreement={minimum}; "
            "nothing was written."
        )

    files = [(f"{name}.tflite", tflite_bytes)]
    report["files"]["tflite"] = f"{name}.tflite"
    if target == "mcu":
        header = f"{name}_data.h"
        source = _artifacts.c_source(name, tflite_bytes, header)
        files.append((f"{name}_data.cc", source.encode()))
        header_text = _artifacts.c_header(name, tflite_bytes, report)
        files.append((header, header_text.encode()))
        ops_text = _artifacts.ops_header(name, report)
        files.append((f"{name}_ops.h", ops_text.encode()))
        report["files"].update(
            {
                "c_source": f"{name}_data.cc",
                "c_header": header,
                "ops_header": f"{name}_ops.h",
            }
        )
    report["files"]["report"] = f"{name}_report.json"
    text = json.dumps(report, indent=2, default=_json_default) + "\n"
    report = json.loads(text)
    files.append((f"{name}_report.json", text.encode()))
    progress.stage(f"writing {len(files)} files to {output_dir}")
    _convert.write_atomically(files, output_dir)
    by_role = {
        role: os.path.join(output_dir, fname)
        for role, fname in report["files"].items()
    }
    return _convert.ConversionResult(
        tflite_path=by_role["tflite"],
        report_path=by_role["report"],
        report=report,
        files=by_role,
    )


def _weight_summary(tfl):
    summary = _flatbuffer.weight_quantization(tfl)
    return {
        "ops": len(summary),
        "int8": sum(1 for s in summary if s["weights_dtype"] == "int8"),
        "per_channel": sum(1 for s in summary if s["scales"] > 1),
    }


def _json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
