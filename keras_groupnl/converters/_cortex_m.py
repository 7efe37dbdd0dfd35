"""A Cortex-M cost model: instructions per inference of an "mcu" model.

The "mcu" report times models in the tflite-micro Python interpreter on
the host, with TFLite Micro's reference kernels. A microcontroller user
links CMSIS-NN, which speeds up the convolutions several times and none of
a GroupNL layer's builtin tail, so the host latency misleads. This model
estimates, from a converted `.tflite` alone, the instructions one inference
executes on a Cortex-M4F and a Cortex-M55 (Helium), with CMSIS-NN and with
reference kernels: per op, a linear function of its sizes (MACs, output
elements, ...), with coefficients fitted to instruction counts measured on
those CPUs (TFLite Micro + CMSIS-NN built for each, run in QEMU with
`-icount`; `cortex_m_costs.json` names the measurements, docs/results.md
the method). Instructions, not cycles: wait states, caches and the beats
of Helium instructions are not modelled.
"""

import functools
import importlib.resources
import json

import numpy as np

from keras_groupnl.converters import _flatbuffer as fb
from keras_groupnl.converters import _fused

COSTS_FILE = "cortex_m_costs.json"
_FUSED = _fused.OP_NAME
# Ops that only move a pointer in TFLite Micro (no data copied).
_FREE = ("RESHAPE", "SQUEEZE", "EXPAND_DIMS")


def _shape(subgraph, index):
    return [int(d) for d in subgraph.tensors[int(index)].shape]


def _size(shape):
    return int(np.prod(shape)) if shape else 1


def op_features(model, op):
    """`(key, {feature: value})` of one op, the cost model's inputs.

    `key` is the op name, with the kernel path where the kernels have
    several (convolution window, depthwise multiplier, the fused op's table
    mode); the features are counts the op's work grows with.
    """
    subgraph = model.subgraphs[0]
    name = fb.op_name(model, op)
    inputs = [int(t) for t in op.inputs if t >= 0]
    out = _shape(subgraph, op.outputs[0])
    outputs = _size(out)
    first = _shape(subgraph, inputs[0]) if inputs else []
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        kernel = _shape(subgraph, inputs[1])
        taps = kernel[1] * kernel[2]
        per_output = taps * (kernel[3] if name == "CONV_2D" else 1)
        # CMSIS-NN picks its kernels by window (1x1 convs skip im2col) and,
        # for depthwise, by channel multiplier: each path its own costs.
        window = "1x1" if taps == 1 else "kxk"
        if name == "DEPTHWISE_CONV_2D":
            multiplier = out[-1] // max(first[-1], 1)
            window += "/m1" if multiplier == 1 else "/mn"
        return f"{name}/{window}", {
            "macs": outputs * per_output,
            "outputs": outputs,
            "im2col": outputs // out[-1] * taps * first[-1],
            "ops": 1,
        }
    if name == "FULLY_CONNECTED":
        weights = _shape(subgraph, inputs[1])
        return name, {
            "macs": outputs * weights[-1],
            "outputs": outputs,
            "ops": 1,
        }
    if name == _FUSED:
        header = fb.tensor_value(model, subgraph.tensors[inputs[3]])
        mode = "channel_tables" if int(header[3]) == 1 else "nlf_tables"
        return f"{name}/{mode}", {
            "outputs": outputs,
            "seed_values": _size(first),
            "pixels": outputs // out[-1],
            "ops": 1,
        }
    if name in ("MEAN", "L2_NORMALIZATION", "SOFTMAX"):
        return name, {
            "inputs": _size(first),
            "outputs": outputs,
            "pixels": _size(first) // max(first[-1], 1) if first else 1,
            "ops": 1,
        }
    if name in _FREE:
        return name, {"ops": 1}
    return name, {"outputs": outputs, "ops": 1}


@functools.cache
def costs():
    """The fitted coefficients: `{target: {op key: {feature: per unit}}}`
    and the provenance, from `cortex_m_costs.json`."""
    folder = importlib.resources.files("keras_groupnl.converters")
    return json.loads(folder.joinpath(COSTS_FILE).read_text())


def model_features(model_bytes):
    """`[(key, features)]` of every op of a `.tflite`, in graph order."""
    model = fb.read_model(model_bytes)
    return [op_features(model, op) for op in model.subgraphs[0].operators]


def estimate(model_bytes):
    """Estimated instructions per inference on each modelled Cortex-M.

    Returns:
        `{target: {"instructions": int, "by_op": {op: instructions},
        "unmodelled": [op, ...]}}` for every target of the cost file
        (`"cortex-m4f/cmsis-nn"`, ...). Ops the model has no coefficients
        for are listed, not counted.
    """
    return estimate_features(model_features(model_bytes))


def estimate_features(features):
    """`estimate` from `model_features`."""
    result = {}
    for target, table in costs()["targets"].items():
        by_op, unmodelled = {}, []
        for key, values in features:
            coefficients = table.get(key)
            if coefficients is None:
                if key not in _FREE:
                    unmodelled.append(key)
                continue
            cost = sum(coefficients.get(f, 0.0) * v for f, v in values.items())
            label = key.split("/")[0]  # The op, without its kernel path.
            by_op[label] = by_op.get(label, 0) + max(cost, 0.0)
        result[target] = {
            "instructions": int(round(sum(by_op.values()))),
            "by_op": {k: int(round(v)) for k, v in sorted(by_op.items())},
            "unmodelled": sorted(set(unmodelled)),
        }
    return result
