"""What a converted model contains: I/O, float ops, bytes by kind.

Read-only views of a `ModelT` (see `_flatbuffer`) that the targets check and
the report shows.
"""

import numpy as np

from keras_groupnl.converters import _flatbuffer as fb
from keras_groupnl.converters import _fused

_WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def io_tensor(model, role):
    """Shape, dtype and quantization of the model input or output.

    For a float input (output), `scale` and `zero_point` are those of the
    int8 tensor its QUANTIZE makes (its DEQUANTIZE reads), when it has one.
    """
    subgraph = model.subgraphs[0]
    index = int((subgraph.inputs if role == "input" else subgraph.outputs)[0])
    tensor = subgraph.tensors[index]
    quantized = tensor
    if tensor.type in fb.FLOAT_TYPES:
        inner = _int8_side(model, index, role == "input")
        quantized = subgraph.tensors[inner] if inner is not None else None
    q = fb.quantization(quantized) if quantized is not None else None
    return {
        "shape": [int(d) for d in tensor.shape],
        "dtype": fb.TYPE_NAMES.get(tensor.type, str(tensor.type)).lower(),
        "scale": q[0][0] if q and len(q[0]) == 1 else None,
        "zero_point": q[1][0] if q and len(q[1]) == 1 else None,
    }


def _int8_side(model, index, is_input):
    subgraph = model.subgraphs[0]
    producers, consumers = fb.producers_and_consumers(subgraph)
    if is_input:
        ops = [subgraph.operators[c] for c in consumers.get(index, [])]
        inner = [
            int(o.outputs[0]) for o in ops if fb.op_name(model, o) == "QUANTIZE"
        ]
        return inner[0] if len(inner) == 1 else None
    p = producers.get(index)
    op = subgraph.operators[p] if p is not None else None
    if op is not None and fb.op_name(model, op) == "DEQUANTIZE":
        return int(op.inputs[0])
    return None


def float_ops(model):
    """`[(op index, op name)]` of every op reading or writing a float."""
    subgraph = model.subgraphs[0]
    found = []
    for index, op in enumerate(subgraph.operators or []):
        tensors = [int(t) for t in list(op.outputs) + list(op.inputs) if t >= 0]
        if any(subgraph.tensors[t].type in fb.FLOAT_TYPES for t in tensors):
            found.append((index, fb.op_name(model, op)))
    return found


def is_io_conversion(model, op_index):
    """Whether an op is the QUANTIZE of a float input or the DEQUANTIZE of a
    float output (the float I/O of an otherwise int8 model)."""
    subgraph = model.subgraphs[0]
    op = subgraph.operators[op_index]
    name = fb.op_name(model, op)
    if name == "QUANTIZE":
        return int(op.inputs[0]) in {int(i) for i in subgraph.inputs}
    if name == "DEQUANTIZE":
        return int(op.outputs[0]) in {int(o) for o in subgraph.outputs}
    return False


def float_tensor_count(model):
    subgraph = model.subgraphs[0]
    return sum(1 for t in subgraph.tensors if t.type in fb.FLOAT_TYPES)


def weight_summary(model):
    """`{"ops", "int8", "per_channel"}` over the conv and dense ops."""
    subgraph = model.subgraphs[0]
    ops = int8 = per_channel = 0
    for op in subgraph.operators or []:
        if fb.op_name(model, op) not in _WEIGHT_OPS:
            continue
        weights = subgraph.tensors[int(op.inputs[1])]
        q = fb.quantization(weights)
        ops += 1
        int8 += weights.type == fb.schema.TensorType.INT8
        per_channel += q is not None and len(q[0]) > 1
    return {"ops": ops, "int8": int8, "per_channel": per_channel}


# Ops whose input at this position, when constant, is an NLF table: the
# builtin GATHER's params and the fused GroupNL op's tables.
_TABLE_INPUTS = {"GATHER": 0, _fused.OP_NAME: 1}


def table_tensors(model):
    """Indices of the constant tensors that ops read as NLF tables."""
    subgraph = model.subgraphs[0]
    found = set()
    for op in subgraph.operators or []:
        position = _TABLE_INPUTS.get(fb.op_name(model, op))
        if position is not None:
            params = subgraph.tensors[int(op.inputs[position])]
            if fb.buffer_data(model, params) is not None:
                found.add(int(op.inputs[position]))
    return found


def byte_breakdown(model, file_bytes):
    """`{"file", "tables", "weights", "other"}` in bytes.

    Tables are the NLF lookup tables, weights every other constant buffer,
    and other the rest of the file (graph structure, quantization
    parameters, names when kept).
    """
    subgraph = model.subgraphs[0]
    tables = table_tensors(model)
    table_bytes = weight_bytes = 0
    for index, tensor in enumerate(subgraph.tensors):
        data = fb.buffer_data(model, tensor)
        if data is None:
            continue
        if index in tables:
            table_bytes += len(data)
        else:
            weight_bytes += len(data)
    return {
        "file": int(file_bytes),
        "tables": int(table_bytes),
        "weights": int(weight_bytes),
        "other": int(file_bytes - table_bytes - weight_bytes),
    }


def activation_bytes(model):
    """Bytes of all non-constant tensors: an upper bound of the activations."""
    total = 0
    for tensor in model.subgraphs[0].tensors:
        if fb.buffer_data(model, tensor) is not None or tensor.shape is None:
            continue
        count = int(np.prod([max(int(d), 1) for d in tensor.shape]))
        itemsize = np.dtype(fb.NUMPY_TYPES.get(tensor.type, np.float32))
        total += count * itemsize.itemsize
    return total
