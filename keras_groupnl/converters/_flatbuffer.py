"""TFLite flatbuffers: reading, writing and small edits.

`read_model` / `write_model` convert between bytes and the schema's mutable
object API (`ModelT`); `write_model` packs constant buffers 16-byte aligned,
as TFLite Micro needs. The helpers below read tensors and quantization, and
add buffers, tensors and operators; `remove_unused` cleans up after an edit
and `strip_for_microcontrollers` drops what TensorFlow Lite Micro never
reads.
"""

import collections

import flatbuffers
import numpy as np

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
NUMPY_TYPES = {
    schema.TensorType.INT8: np.int8,
    schema.TensorType.UINT8: np.uint8,
    schema.TensorType.INT16: np.int16,
    schema.TensorType.INT32: np.int32,
    schema.TensorType.INT64: np.int64,
    schema.TensorType.FLOAT32: np.float32,
}

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
# Reading the graph.


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


def buffer_data(model, tensor):
    """The constant bytes of a tensor, or `None` for an activation."""
    if tensor.buffer <= 0 or tensor.buffer >= len(model.buffers):
        return None
    data = model.buffers[tensor.buffer].data
    if data is None or len(data) == 0:
        return None
    return data


def tensor_value(model, tensor):
    """The value of a constant tensor as a NumPy array, or `None`."""
    data = buffer_data(model, tensor)
    if data is None or tensor.type not in NUMPY_TYPES:
        return None
    array = np.frombuffer(
        np.asarray(data, dtype=np.uint8).tobytes(), NUMPY_TYPES[tensor.type]
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


def producers_and_consumers(subgraph):
    """`({tensor: producing op}, {tensor: [consuming ops]})` by index."""
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


# --------------------------------------------------------------------------
# Editing.


def add_buffer(model, array):
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(
        np.ascontiguousarray(array).tobytes(), dtype=np.uint8
    ).copy()
    model.buffers.append(buffer)
    return len(model.buffers) - 1


def add_tensor(
    model, subgraph, name, tensor_type, shape, value=None, quant=None
):
    """Appends a tensor (a constant when `value` is given); its index.

    `quant` is `(scale, zero_point)` for per-tensor quantization.
    """
    tensor = schema.TensorT()
    tensor.name = name
    tensor.type = tensor_type
    tensor.shape = np.asarray(shape, dtype=np.int32)
    tensor.buffer = 0 if value is None else add_buffer(model, value)
    if quant is not None:
        q = schema.QuantizationParametersT()
        q.scale = np.asarray([quant[0]], dtype=np.float32)
        q.zeroPoint = np.asarray([quant[1]], dtype=np.int64)
        q.quantizedDimension = 0
        tensor.quantization = q
    subgraph.tensors.append(tensor)
    return len(subgraph.tensors) - 1


def make_op(model, name, version, inputs, outputs, options=None):
    """A new operator; `options` is the schema's `...OptionsT` object."""
    op = schema.OperatorT()
    op.opcodeIndex = _opcode(model, name, version)
    op.inputs = np.asarray(inputs, dtype=np.int32)
    op.outputs = np.asarray(outputs, dtype=np.int32)
    if options is not None:
        kind = type(options).__name__[: -len("T")]
        op.builtinOptionsType = getattr(schema.BuiltinOptions, kind)
        op.builtinOptions = options
    return op


def _opcode(model, name, version):
    code = _OP_CODES[name]
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


def remove_unused(model):
    """Drops unused tensors, then empties buffers no tensor refers to."""
    for s_index, subgraph in enumerate(model.subgraphs):
        used = set()
        for op in subgraph.operators or []:
            for field in (op.inputs, op.outputs, op.intermediates):
                if field is not None:
                    used.update(int(t) for t in field if t >= 0)
        for field in (subgraph.inputs, subgraph.outputs):
            if field is not None:
                used.update(int(t) for t in field)
        for entry in _signature_entries(model, s_index):
            used.add(int(entry.tensorIndex))
        _renumber_tensors(model, s_index, sorted(used))
    _compact_buffers(model)


def _compact_buffers(model):
    """Keeps only buffer 0 (the empty sentinel) and referenced buffers."""
    referenced = {0}
    for subgraph in model.subgraphs:
        referenced.update(int(t.buffer) for t in subgraph.tensors)
    referenced.update(int(m.buffer) for m in model.metadata or [])
    keep = sorted(referenced)
    remap = {old: new for new, old in enumerate(keep)}
    model.buffers = [model.buffers[i] for i in keep]
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            tensor.buffer = remap[int(tensor.buffer)]
    for entry in model.metadata or []:
        entry.buffer = remap[int(entry.buffer)]


def _signature_entries(model, subgraph_index):
    for signature in model.signatureDefs or []:
        if signature.subgraphIndex == subgraph_index:
            yield from (signature.inputs or []) + (signature.outputs or [])


def _renumber_tensors(model, subgraph_index, keep):
    subgraph = model.subgraphs[subgraph_index]
    remap = {old: new for new, old in enumerate(keep)}

    def renumber(field):
        if field is None:
            return None
        return np.asarray(
            [remap[int(t)] if t >= 0 else -1 for t in field], dtype=np.int32
        )

    subgraph.tensors = [subgraph.tensors[i] for i in keep]
    for op in subgraph.operators or []:
        op.inputs = renumber(op.inputs)
        op.outputs = renumber(op.outputs)
        op.intermediates = renumber(op.intermediates)
    subgraph.inputs = renumber(subgraph.inputs)
    subgraph.outputs = renumber(subgraph.outputs)
    for entry in _signature_entries(model, subgraph_index):
        entry.tensorIndex = remap[int(entry.tensorIndex)]


def strip_for_microcontrollers(model):
    """Drops what TFLite Micro never reads: names, signatures, metadata.

    Tensor and subgraph names, the signature definitions and the metadata
    entries (the converter's version strings) only serve desktop tooling.
    """
    for subgraph in model.subgraphs:
        subgraph.name = None
        for tensor in subgraph.tensors:
            tensor.name = None
    model.signatureDefs = []
    model.metadata = []
    model.description = None
    _compact_buffers(model)
