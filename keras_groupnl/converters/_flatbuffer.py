"""Reading, analysing and rewriting TFLite flatbuffers.

The TFLite converter quantizes everything in a GroupNL layer except the
sinusoids: TFLite's `SIN` has only a float kernel, so the converter leaves a
`DEQUANTIZE -> SIN -> QUANTIZE` float island. `replace_nlf_islands` removes
every such island and puts an exact int8 lookup table in its place:

    repeated seed maps (int8) -> CAST (int32) -> ADD (256 * table + 128)
                              -> GATHER (int8 table) -> generated maps (int8)

The int8 input of every NLF has 256 possible values, so a table of 256 entries
per (period, shift) pair computes `sin(T * (x - phi))` exactly to int8
rounding, with nothing but integer ops that TFLite and TFLite Micro implement.
"""

import collections
import re

import flatbuffers
import numpy as np

from keras_groupnl.converters._errors import ConversionError

try:  # The schema that ships with LiteRT, else the one inside TensorFlow.
    from ai_edge_litert import schema_py_generated as schema
except ImportError:  # pragma: no cover
    from tensorflow.lite.python import schema_py_generated as schema

_FILE_IDENTIFIER = b"TFL3"
_BUFFER_ALIGNMENT = 16

OP_NAMES = {
    value: name
    for name, value in vars(schema.BuiltinOperator).items()
    if not name.startswith("_")
}
_OP_CODES = {name: value for value, name in OP_NAMES.items()}
TYPE_NAMES = {
    value: name
    for name, value in vars(schema.TensorType).items()
    if not name.startswith("_")
}
FLOAT_TYPES = frozenset(
    getattr(schema.TensorType, name)
    for name in ("FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16")
    if hasattr(schema.TensorType, name)
)
_NUMPY_TYPES = {
    schema.TensorType.INT8: np.int8,
    schema.TensorType.UINT8: np.uint8,
    schema.TensorType.INT16: np.int16,
    schema.TensorType.INT32: np.int32,
    schema.TensorType.INT64: np.int64,
    schema.TensorType.FLOAT32: np.float32,
}

# Versions the TFLite converter itself gives these ops for the types used by
# the lookup table (measured with TF 2.21: int8 -> int32 CAST, int32 ADD with
# broadcasting, GATHER of an int8 table).
_LUT_OP_VERSIONS = {"CAST": 3, "ADD": 1, "GATHER": 2}

# Builtin operators that TensorFlow Lite Micro implements, with the
# `MicroMutableOpResolver` method that registers each (from
# tensorflow/lite/micro/micro_mutable_op_resolver.h, tflite-micro 2026).
TFLM_RESOLVER_METHODS = {
    "ABS": "AddAbs",
    "ADD": "AddAdd",
    "ADD_N": "AddAddN",
    "ARG_MAX": "AddArgMax",
    "ARG_MIN": "AddArgMin",
    "ASSIGN_VARIABLE": "AddAssignVariable",
    "AVERAGE_POOL_2D": "AddAveragePool2D",
    "BATCH_MATMUL": "AddBatchMatMul",
    "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd",
    "BROADCAST_ARGS": "AddBroadcastArgs",
    "BROADCAST_TO": "AddBroadcastTo",
    "CALL_ONCE": "AddCallOnce",
    "CAST": "AddCast",
    "CEIL": "AddCeil",
    "CONCATENATION": "AddConcatenation",
    "CONV_2D": "AddConv2D",
    "COS": "AddCos",
    "CUMSUM": "AddCumSum",
    "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
    "DEQUANTIZE": "AddDequantize",
    "DIV": "AddDiv",
    "DYNAMIC_UPDATE_SLICE": "AddDynamicUpdateSlice",
    "EMBEDDING_LOOKUP": "AddEmbeddingLookup",
    "ELU": "AddElu",
    "EQUAL": "AddEqual",
    "EXP": "AddExp",
    "EXPAND_DIMS": "AddExpandDims",
    "FILL": "AddFill",
    "FLOOR": "AddFloor",
    "FLOOR_DIV": "AddFloorDiv",
    "FLOOR_MOD": "AddFloorMod",
    "FULLY_CONNECTED": "AddFullyConnected",
    "GATHER": "AddGather",
    "GATHER_ND": "AddGatherNd",
    "GREATER": "AddGreater",
    "GREATER_EQUAL": "AddGreaterEqual",
    "HARD_SWISH": "AddHardSwish",
    "IF": "AddIf",
    "L2_NORMALIZATION": "AddL2Normalization",
    "L2_POOL_2D": "AddL2Pool2D",
    "LEAKY_RELU": "AddLeakyRelu",
    "LESS": "AddLess",
    "LESS_EQUAL": "AddLessEqual",
    "LOG": "AddLog",
    "LOGICAL_AND": "AddLogicalAnd",
    "LOGICAL_NOT": "AddLogicalNot",
    "LOGICAL_OR": "AddLogicalOr",
    "LOGISTIC": "AddLogistic",
    "LOG_SOFTMAX": "AddLogSoftmax",
    "MAXIMUM": "AddMaximum",
    "MAX_POOL_2D": "AddMaxPool2D",
    "MIRROR_PAD": "AddMirrorPad",
    "MEAN": "AddMean",
    "MINIMUM": "AddMinimum",
    "MUL": "AddMul",
    "NEG": "AddNeg",
    "NOT_EQUAL": "AddNotEqual",
    "PACK": "AddPack",
    "PAD": "AddPad",
    "PADV2": "AddPadV2",
    "PRELU": "AddPrelu",
    "QUANTIZE": "AddQuantize",
    "READ_VARIABLE": "AddReadVariable",
    "REDUCE_ALL": "AddReduceAll",
    "REDUCE_MAX": "AddReduceMax",
    "REDUCE_MIN": "AddReduceMin",
    "RELU": "AddRelu",
    "RELU6": "AddRelu6",
    "RESHAPE": "AddReshape",
    "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor",
    "REVERSE_V2": "AddReverseV2",
    "ROUND": "AddRound",
    "RSQRT": "AddRsqrt",
    "SELECT_V2": "AddSelectV2",
    "SHAPE": "AddShape",
    "SIN": "AddSin",
    "SLICE": "AddSlice",
    "SOFTMAX": "AddSoftmax",
    "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd",
    "SPACE_TO_DEPTH": "AddSpaceToDepth",
    "SPLIT": "AddSplit",
    "SPLIT_V": "AddSplitV",
    "SQUEEZE": "AddSqueeze",
    "SQRT": "AddSqrt",
    "SQUARE": "AddSquare",
    "SQUARED_DIFFERENCE": "AddSquaredDifference",
    "STRIDED_SLICE": "AddStridedSlice",
    "SUB": "AddSub",
    "SUM": "AddSum",
    "SVDF": "AddSvdf",
    "TANH": "AddTanh",
    "TRANSPOSE_CONV": "AddTransposeConv",
    "TRANSPOSE": "AddTranspose",
    "UNPACK": "AddUnpack",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    "VAR_HANDLE": "AddVarHandle",
    "WHILE": "AddWhile",
    "ZEROS_LIKE": "AddZerosLike",
}


FlatbufferError = ConversionError


# --------------------------------------------------------------------------
# Reading and writing.


def read_model(model_bytes):
    """Parses TFLite flatbuffer bytes into a mutable `ModelT`."""
    root = schema.Model.GetRootAsModel(bytearray(model_bytes), 0)
    return schema.ModelT.InitFromObj(root)


class _AlignedBufferT(schema.BufferT):
    """A buffer whose data is packed 16-byte aligned, as `force_align: 16` in
    the TFLite schema asks (the generated Python code ignores it)."""

    def Pack(self, builder):
        data = None
        if self.data is not None and len(self.data):
            payload = np.asarray(self.data, dtype=np.uint8).tobytes()
            builder.StartVector(1, len(payload), _BUFFER_ALIGNMENT)
            builder.head = builder.head - len(payload)
            builder.Bytes[builder.head : builder.head + len(payload)] = payload
            data = builder.EndVector()
        schema.BufferStart(builder)
        if data is not None:
            schema.BufferAddData(builder, data)
        schema.BufferAddOffset(builder, self.offset)
        schema.BufferAddSize(builder, self.size)
        return schema.BufferEnd(builder)


def write_model(model):
    """Serialises a `ModelT` with 16-byte-aligned constant buffers."""
    for index, buffer in enumerate(model.buffers or []):
        aligned = _AlignedBufferT()
        aligned.data = buffer.data
        aligned.offset = buffer.offset
        aligned.size = buffer.size
        model.buffers[index] = aligned
    builder = flatbuffers.Builder(1024)
    offset = model.Pack(builder)
    builder.Finish(offset, file_identifier=_FILE_IDENTIFIER)
    return bytes(builder.Output())


# --------------------------------------------------------------------------
# Graph helpers.


def op_name(model, op):
    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    if builtin == schema.BuiltinOperator.CUSTOM:
        custom = code.customCode
        if isinstance(custom, bytes):
            custom = custom.decode("utf-8", "replace")
        return f"CUSTOM:{custom}"
    return OP_NAMES.get(builtin, f"BUILTIN_{builtin}")


def tensor_name(tensor):
    name = tensor.name
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    return name or ""


def _buffer_data(model, tensor):
    if tensor.buffer <= 0 or tensor.buffer >= len(model.buffers):
        return None
    data = model.buffers[tensor.buffer].data
    if data is None or len(data) == 0:
        return None
    return data


def is_constant(model, tensor):
    return _buffer_data(model, tensor) is not None


def tensor_value(model, tensor):
    """The value of a constant tensor as a NumPy array, or `None`."""
    data = _buffer_data(model, tensor)
    if data is None or tensor.type not in _NUMPY_TYPES:
        return None
    array = np.frombuffer(
        np.asarray(data, dtype=np.uint8).tobytes(), _NUMPY_TYPES[tensor.type]
    )
    shape = [int(d) for d in (tensor.shape if tensor.shape is not None else [])]
    return array.reshape(shape) if shape else array.reshape(())


def quantization(tensor):
    """`(scales, zero_points, quantized_dimension)` or `None`."""
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return None
    scales = [float(s) for s in q.scale]
    zero_points = (
        [int(z) for z in q.zeroPoint]
        if q.zeroPoint is not None
        else [0] * len(scales)
    )
    return scales, zero_points, int(q.quantizedDimension)


def _producers_and_consumers(subgraph):
    producers = {}
    consumers = collections.defaultdict(list)
    for index, op in enumerate(subgraph.operators or []):
        for t in op.outputs if op.outputs is not None else []:
            producers[int(t)] = index
        for t in op.inputs if op.inputs is not None else []:
            if t >= 0:
                consumers[int(t)].append(index)
    return producers, consumers


def op_histogram(model):
    histogram = collections.Counter()
    for subgraph in model.subgraphs:
        for op in subgraph.operators or []:
            histogram[op_name(model, op)] += 1
    return dict(sorted(histogram.items()))


def _ensure_opcode(model, name):
    code = _OP_CODES[name]
    version = _LUT_OP_VERSIONS.get(name, 1)
    for index, opcode in enumerate(model.operatorCodes):
        if (
            max(opcode.builtinCode, opcode.deprecatedBuiltinCode) == code
            and opcode.version == version
        ):
            return index
    opcode = schema.OperatorCodeT()
    opcode.builtinCode = code
    opcode.deprecatedBuiltinCode = min(code, 127)
    opcode.version = version
    model.operatorCodes.append(opcode)
    return len(model.operatorCodes) - 1


def _add_buffer(model, array):
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(
        np.ascontiguousarray(array).tobytes(), dtype=np.uint8
    ).copy()
    model.buffers.append(buffer)
    return len(model.buffers) - 1


def _add_tensor(subgraph, name, tensor_type, shape, buffer=0, quant=None):
    tensor = schema.TensorT()
    tensor.name = name
    tensor.type = tensor_type
    tensor.shape = np.asarray(shape, dtype=np.int32)
    tensor.buffer = buffer
    if quant is not None:
        q = schema.QuantizationParametersT()
        q.scale = np.asarray([quant[0]], dtype=np.float32)
        q.zeroPoint = np.asarray([quant[1]], dtype=np.int64)
        q.quantizedDimension = 0
        tensor.quantization = q
    subgraph.tensors.append(tensor)
    return len(subgraph.tensors) - 1


# --------------------------------------------------------------------------
# The NLF lookup tables.


def _tflite_round(x):
    """Round half away from zero, as TFLite's QUANTIZE does."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def nlf_lookup_table(
    periods,
    offsets,
    in_quant,
    out_quant,
    gains=None,
    shifts=None,
    activation=None,
):
    """The int8 table of `act(a * sin(x * T + offset) + b)` for every NLF.

    Args:
        periods, offsets: float arrays of shape `(tables,)`; the NLF is
            `sin(x * T + offset)` with `offset = -T * phi`, as in the layer.
        in_quant, out_quant: `(scale, zero_point)` of the int8 input and
            output.
        gains, shifts: optional float arrays of shape `(tables,)`: a
            BatchNormalization folded into the table (`a`, `b`).
        activation: optional `"relu"` or `"relu6"` after it.

    Returns:
        int8 array of shape `(tables * 256,)`; entry `256 * p + q + 128` is
        the quantized output of table `p` for the int8 input value `q`.
    """
    q = np.arange(-128, 128, dtype=np.float64)
    x = in_quant[0] * (q - in_quant[1])
    periods = np.asarray(periods, dtype=np.float32).astype(np.float64)
    offsets = np.asarray(offsets, dtype=np.float32).astype(np.float64)
    values = np.sin(x[None, :] * periods[:, None] + offsets[:, None])
    if gains is not None:
        gains = np.asarray(gains, np.float32).astype(np.float64)
        shifts = np.asarray(shifts, np.float32).astype(np.float64)
        values = values * gains[:, None] + shifts[:, None]
    if activation == "relu":
        values = np.maximum(values, 0.0)
    elif activation == "relu6":
        values = np.clip(values, 0.0, 6.0)
    elif activation is not None:
        raise ValueError(f"Unknown activation for a lookup table: {activation}")
    quantized = _tflite_round(values / out_quant[0]) + out_quant[1]
    return np.clip(quantized, -128, 127).astype(np.int8).reshape(-1)


def _marker_pattern(marker):
    return re.compile(rf"(^|[/;]){re.escape(marker)}(_\d+)?\d*($|[/;:])")


def find_tensors(subgraph, marker):
    pattern = _marker_pattern(marker)
    return [
        index
        for index, tensor in enumerate(subgraph.tensors)
        if pattern.search(tensor_name(tensor))
    ]


def replace_nlf_islands(model, nlfs):
    """Replaces the float NLF islands of the GroupNL layers by lookup tables.

    Args:
        model: `ModelT`, changed in place.
        nlfs: list of dicts, one per GroupNL layer with generated channels:
            `layer` (name), `rep_marker`, `nlf_marker` and `out_marker`
            (names of the repeated-seed, NLF-output and layer-output tensors
            in the exported graph),
            `pair_index` (int array, the NLF of every generated channel),
            `periods` and `offsets` (float arrays, one per NLF pair).

    Returns:
        A list of dicts describing the tables that were inserted.

    Raises:
        FlatbufferError: if an island is not where it should be or does not
            have the expected form.
    """
    subgraph = model.subgraphs[0]
    inserted = []
    for nlf in nlfs:
        layer = nlf["layer"]
        # The generated maps are the second input of the layer's output
        # concatenation; the converter may rename the NLF output itself when
        # it fuses the ops around it.
        outputs = []
        if nlf.get("out_marker"):
            concat_outputs = set(find_tensors(subgraph, nlf["out_marker"]))
            for op in subgraph.operators:
                if (
                    op_name(model, op) == "CONCATENATION"
                    and int(op.outputs[0]) in concat_outputs
                    and len(op.inputs) == 2
                ):
                    outputs.append(int(op.inputs[1]))
        if not outputs:
            outputs = find_tensors(subgraph, nlf["nlf_marker"])
        reps = set(find_tensors(subgraph, nlf["rep_marker"]))
        if not outputs:
            raise FlatbufferError(
                f"Layer '{layer}': the converted model has no tensor for the "
                "output of its NLF sinusoids, so they cannot be replaced by an "
                "int8 lookup table.",
                layer=layer,
                op="SIN",
            )
        for out_index in outputs:
            inserted.append(
                _replace_island(model, subgraph, nlf, out_index, reps)
            )
    remove_unused_tensors(model)
    return inserted


def _replace_island(model, subgraph, nlf, out_index, reps):
    layer = nlf["layer"]
    producers, consumers = _producers_and_consumers(subgraph)
    operators = subgraph.operators

    # Walk back from the NLF output to the repeated seed maps.
    island = set()
    rep_index = None
    frontier = [out_index]
    seen = set()
    while frontier:
        t = frontier.pop()
        if t in seen:
            continue
        seen.add(t)
        if t in reps:
            if rep_index is not None and rep_index != t:
                raise FlatbufferError(
                    f"Layer '{layer}': its NLF island reads two different "
                    "tensors.",
                    layer=layer,
                    op="SIN",
                )
            rep_index = t
            continue
        if t not in producers:
            if is_constant(model, subgraph.tensors[t]):
                continue
            raise FlatbufferError(
                f"Layer '{layer}': its NLF island reads the graph input "
                f"'{tensor_name(subgraph.tensors[t])}'.",
                layer=layer,
                op="SIN",
            )
        op_index = producers[t]
        if op_index in island:
            continue
        island.add(op_index)
        if len(island) > 16:
            raise FlatbufferError(
                f"Layer '{layer}': could not isolate its NLF (more than 16 "
                "ops between the repeated seed maps and the sinusoids).",
                layer=layer,
                op="SIN",
            )
        for i in operators[op_index].inputs:
            if i >= 0 and not is_constant(model, subgraph.tensors[i]):
                frontier.append(int(i))
    if rep_index is None:
        raise FlatbufferError(
            f"Layer '{layer}': the repeated seed maps feeding its NLF were not "
            "found in the converted model.",
            layer=layer,
            op="SIN",
        )
    # The island must be closed: only its output leaves it.
    for op_index in island:
        for t in operators[op_index].outputs:
            if t == out_index:
                continue
            if any(c not in island for c in consumers.get(int(t), [])) or t in (
                subgraph.outputs if subgraph.outputs is not None else []
            ):
                raise FlatbufferError(
                    f"Layer '{layer}': an intermediate tensor of its NLF "
                    f"('{tensor_name(subgraph.tensors[t])}') is used outside "
                    "the NLF.",
                    layer=layer,
                    op=op_name(model, operators[op_index]),
                )

    rep = subgraph.tensors[rep_index]
    out = subgraph.tensors[out_index]
    for role, tensor in (("input", rep), ("output", out)):
        q = quantization(tensor)
        if tensor.type != schema.TensorType.INT8 or q is None or len(q[0]) != 1:
            raise FlatbufferError(
                f"Layer '{layer}': the {role} of its NLF "
                f"('{tensor_name(tensor)}') is "
                f"{TYPE_NAMES.get(tensor.type, tensor.type)} without "
                "per-tensor int8 quantization; an int8 lookup table needs "
                "both sides int8.",
                layer=layer,
                op="SIN",
            )
    shape = [int(d) for d in rep.shape]
    if shape != [int(d) for d in out.shape]:
        raise FlatbufferError(
            f"Layer '{layer}': the NLF input shape {shape} differs from its "
            f"output shape {[int(d) for d in out.shape]}.",
            layer=layer,
            op="SIN",
        )
    pair_index = np.asarray(nlf["pair_index"], dtype=np.int64)
    if shape[-1] != len(pair_index):
        raise FlatbufferError(
            f"Layer '{layer}': the NLF has {shape[-1]} channels in the "
            f"converted model, expected {len(pair_index)}.",
            layer=layer,
            op="SIN",
        )
    in_q = quantization(rep)
    out_q = quantization(out)
    in_quant = (in_q[0][0], in_q[1][0])
    out_quant = (out_q[0][0], out_q[1][0])
    table = nlf_lookup_table(
        nlf["periods"],
        nlf["offsets"],
        in_quant,
        out_quant,
        gains=nlf.get("gains"),
        shifts=nlf.get("shifts"),
        activation=nlf.get("activation"),
    )
    offsets = (256 * pair_index + 128).astype(np.int32)

    base = tensor_name(out).split(";")[0]
    cast_out = _add_tensor(
        subgraph,
        f"{base}/groupnl_lut/index_int32",
        schema.TensorType.INT32,
        shape,
    )
    offset_tensor = _add_tensor(
        subgraph,
        f"{base}/groupnl_lut/table_offsets",
        schema.TensorType.INT32,
        [len(offsets)],
        buffer=_add_buffer(model, offsets),
    )
    index_tensor = _add_tensor(
        subgraph,
        f"{base}/groupnl_lut/index",
        schema.TensorType.INT32,
        shape,
    )
    table_tensor = _add_tensor(
        subgraph,
        f"{base}/groupnl_lut/table",
        schema.TensorType.INT8,
        [len(table)],
        buffer=_add_buffer(model, table),
        quant=out_quant,
    )

    cast = schema.OperatorT()
    cast.opcodeIndex = _ensure_opcode(model, "CAST")
    cast.inputs = np.asarray([rep_index], dtype=np.int32)
    cast.outputs = np.asarray([cast_out], dtype=np.int32)
    cast.builtinOptionsType = schema.BuiltinOptions.CastOptions
    cast.builtinOptions = schema.CastOptionsT()
    cast.builtinOptions.inDataType = schema.TensorType.INT8
    cast.builtinOptions.outDataType = schema.TensorType.INT32

    add = schema.OperatorT()
    add.opcodeIndex = _ensure_opcode(model, "ADD")
    add.inputs = np.asarray([cast_out, offset_tensor], dtype=np.int32)
    add.outputs = np.asarray([index_tensor], dtype=np.int32)
    add.builtinOptionsType = schema.BuiltinOptions.AddOptions
    add.builtinOptions = schema.AddOptionsT()
    add.builtinOptions.fusedActivationFunction = (
        schema.ActivationFunctionType.NONE
    )

    gather = schema.OperatorT()
    gather.opcodeIndex = _ensure_opcode(model, "GATHER")
    gather.inputs = np.asarray([table_tensor, index_tensor], dtype=np.int32)
    gather.outputs = np.asarray([out_index], dtype=np.int32)
    gather.builtinOptionsType = schema.BuiltinOptions.GatherOptions
    gather.builtinOptions = schema.GatherOptionsT()
    gather.builtinOptions.axis = 0
    gather.builtinOptions.batchDims = 0

    removed = sorted(island)
    removed_names = [op_name(model, operators[i]) for i in removed]
    position = removed[-1]
    new_ops = []
    for index, op in enumerate(operators):
        if index == position:
            new_ops.extend([cast, add, gather])
        elif index not in island:
            new_ops.append(op)
    subgraph.operators = new_ops
    return {
        "layer": layer,
        "channels": int(len(pair_index)),
        "tables": int(len(nlf["periods"])),
        "table_bytes": int(table.size),
        "input_quantization": [float(in_quant[0]), int(in_quant[1])],
        "output_quantization": [float(out_quant[0]), int(out_quant[1])],
        "replaced_ops": removed_names,
        "folded_layers": list(nlf.get("folded", [])),
    }


def remove_unused_tensors(model):
    """Drops tensors no op or signature uses and empties orphaned buffers."""
    for s_index, subgraph in enumerate(model.subgraphs):
        used = set()
        for op in subgraph.operators or []:
            for field in (op.inputs, op.outputs, op.intermediates):
                if field is not None:
                    used.update(int(t) for t in field if t >= 0)
        for field in (subgraph.inputs, subgraph.outputs):
            if field is not None:
                used.update(int(t) for t in field)
        for signature in model.signatureDefs or []:
            if signature.subgraphIndex != s_index:
                continue
            for entry in (signature.inputs or []) + (signature.outputs or []):
                used.add(int(entry.tensorIndex))
        keep = sorted(used)
        remap = {old: new for new, old in enumerate(keep)}

        def _map(field):
            if field is None:
                return None
            return np.asarray(
                [remap[int(t)] if t >= 0 else -1 for t in field], dtype=np.int32
            )

        subgraph.tensors = [subgraph.tensors[i] for i in keep]
        for op in subgraph.operators or []:
            op.inputs = _map(op.inputs)
            op.outputs = _map(op.outputs)
            if op.intermediates is not None:
                op.intermediates = _map(op.intermediates)
        subgraph.inputs = _map(subgraph.inputs)
        subgraph.outputs = _map(subgraph.outputs)
        for signature in model.signatureDefs or []:
            if signature.subgraphIndex != s_index:
                continue
            for entry in (signature.inputs or []) + (signature.outputs or []):
                entry.tensorIndex = remap[int(entry.tensorIndex)]

    referenced = {0}
    for subgraph in model.subgraphs:
        referenced.update(int(t.buffer) for t in subgraph.tensors)
    referenced.update(int(m.buffer) for m in model.metadata or [])
    for index, buffer in enumerate(model.buffers):
        if index not in referenced:
            buffer.data = None


_BIAS_OPS = {
    "CONV_2D": (0, 1, 2),
    "DEPTHWISE_CONV_2D": (0, 1, 2),
    "FULLY_CONNECTED": (0, 1, 2),
    "TRANSPOSE_CONV": (2, 1, 3),
}


def fix_bias_scales(model):
    """Requantizes int32 biases whose scale is not input scale x weight scale.

    TFLite kernels take the bias scale to be `input_scale * weight_scale`
    without checking. The converter quantizes a bias with the input scale it
    calibrated, and can then change that input scale to satisfy a same-scale
    constraint (a concatenation whose inputs have a fixed scale, as the
    GroupNL output has): the bias is then silently off by the ratio of the two
    scales. This puts every such bias back on the scale the kernel uses, from
    the real value the converter meant.

    Returns the names of the ops whose bias was rescaled.
    """
    fixed = []
    subgraph = model.subgraphs[0]
    for op in subgraph.operators or []:
        name = op_name(model, op)
        if name not in _BIAS_OPS:
            continue
        i_in, i_w, i_b = _BIAS_OPS[name]
        if len(op.inputs) <= i_b or op.inputs[i_b] < 0:
            continue
        inp = subgraph.tensors[int(op.inputs[i_in])]
        weights = subgraph.tensors[int(op.inputs[i_w])]
        bias = subgraph.tensors[int(op.inputs[i_b])]
        q_in = quantization(inp)
        q_w = quantization(weights)
        q_b = quantization(bias)
        if (
            bias.type != schema.TensorType.INT32
            or None in (q_in, q_w, q_b)
            or len(q_in[0]) != 1
        ):
            continue
        values = tensor_value(model, bias)
        if values is None:
            continue
        stored = np.asarray(q_b[0], np.float64)
        expected = q_in[0][0] * np.asarray(q_w[0], np.float64)
        if stored.shape != expected.shape and stored.size != 1:
            continue
        if np.allclose(stored, expected, rtol=1e-5, atol=0):
            continue
        real = values.astype(np.float64) * stored
        requantized = _tflite_round(real / expected)
        requantized = np.clip(requantized, -(2**31), 2**31 - 1).astype(np.int32)
        bias.buffer = _add_buffer(model, requantized)
        q = schema.QuantizationParametersT()
        q.scale = expected.astype(np.float32)
        q.zeroPoint = np.zeros(len(expected), dtype=np.int64)
        q.quantizedDimension = 0
        bias.quantization = q
        fixed.append(tensor_name(subgraph.tensors[int(op.outputs[0])]))
    return fixed


# --------------------------------------------------------------------------
# Analysis.


def io_details(model):
    """Name, shape, dtype and quantization of the model input and output."""
    subgraph = model.subgraphs[0]

    def describe(index):
        tensor = subgraph.tensors[index]
        q = quantization(tensor)
        return {
            "name": tensor_name(tensor),
            "shape": [int(d) for d in tensor.shape],
            "dtype": TYPE_NAMES.get(tensor.type, str(tensor.type)).lower(),
            "scale": q[0][0] if q and len(q[0]) == 1 else None,
            "zero_point": q[1][0] if q and len(q[1]) == 1 else None,
        }

    producers, consumers = _producers_and_consumers(subgraph)

    def int8_side(index, is_input):
        # A float input is quantized by a QUANTIZE op, a float output comes
        # from a DEQUANTIZE op: report the int8 quantization inside.
        if is_input:
            ops = [subgraph.operators[c] for c in consumers.get(index, [])]
            ops = [o for o in ops if op_name(model, o) == "QUANTIZE"]
            inner = [int(o.outputs[0]) for o in ops]
        else:
            p = producers.get(index)
            op = subgraph.operators[p] if p is not None else None
            inner = (
                [int(op.inputs[0])]
                if op is not None and op_name(model, op) == "DEQUANTIZE"
                else []
            )
        if len(inner) != 1:
            return None
        q = quantization(subgraph.tensors[inner[0]])
        if q is None or len(q[0]) != 1:
            return None
        return {"scale": q[0][0], "zero_point": q[1][0]}

    ins, outs = [], []
    for index in subgraph.inputs:
        d = describe(int(index))
        if subgraph.tensors[int(index)].type in FLOAT_TYPES:
            d["quantized_as"] = int8_side(int(index), True)
        ins.append(d)
    for index in subgraph.outputs:
        d = describe(int(index))
        if subgraph.tensors[int(index)].type in FLOAT_TYPES:
            d["quantized_as"] = int8_side(int(index), False)
        outs.append(d)
    return ins, outs


def float_ops(model):
    """Every op that reads or writes a float tensor, in graph order.

    Returns a list of `(op_index, op_name, tensor_names)`.
    """
    found = []
    subgraph = model.subgraphs[0]
    for index, op in enumerate(subgraph.operators or []):
        tensors = [int(t) for t in list(op.outputs) + list(op.inputs) if t >= 0]
        floats = [
            tensor_name(subgraph.tensors[t])
            for t in tensors
            if subgraph.tensors[t].type in FLOAT_TYPES
        ]
        if floats:
            found.append((index, op_name(model, op), floats))
    return found


def float_tensors(model):
    subgraph = model.subgraphs[0]
    return [tensor_name(t) for t in subgraph.tensors if t.type in FLOAT_TYPES]


def op_tensor_names(model, op_index):
    subgraph = model.subgraphs[0]
    op = subgraph.operators[op_index]
    names = []
    for t in list(op.outputs) + list(op.inputs):
        if t >= 0:
            names.append(tensor_name(subgraph.tensors[int(t)]))
    return names


def activation_bytes(model):
    """Bytes of all non-constant tensors: an upper bound of the activations."""
    total = 0
    sizes = {
        schema.TensorType.INT8: 1,
        schema.TensorType.UINT8: 1,
        schema.TensorType.INT16: 2,
        schema.TensorType.INT32: 4,
        schema.TensorType.INT64: 8,
        schema.TensorType.FLOAT32: 4,
    }
    for tensor in model.subgraphs[0].tensors:
        if is_constant(model, tensor) or tensor.shape is None:
            continue
        count = int(np.prod([max(int(d), 1) for d in tensor.shape]))
        total += count * sizes.get(tensor.type, 4)
    return total


def weight_quantization(model):
    """Per-channel status of the weights of conv and dense ops."""
    subgraph = model.subgraphs[0]
    summary = []
    for op in subgraph.operators or []:
        name = op_name(model, op)
        if name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        if len(op.inputs) < 2:
            continue
        weights = subgraph.tensors[int(op.inputs[1])]
        q = quantization(weights)
        summary.append(
            {
                "op": name,
                "weights_dtype": TYPE_NAMES.get(weights.type, "?").lower(),
                "scales": 0 if q is None else len(q[0]),
            }
        )
    return summary
