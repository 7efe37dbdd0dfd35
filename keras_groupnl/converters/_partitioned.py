"""Runs a microcontroller model with fused GroupNL ops on the host.

TFLite Micro's Python interpreter knows only builtin ops, and a fused model
(`_fused_graph`) has one `KERAS_GROUPNL_TAIL` custom op per GroupNL layer.
`PartitionedRunner` runs such a model exactly as a microcontroller would:
the builtin ops between two fused ops are a sub-model that the TFLite Micro
interpreter runs (the same reference kernels, so the same bytes), and every
fused op is computed by its bit-exact NumPy reference (`_fused.evaluate`),
the reference the C kernel is tested against.

`stand_in` gives the model with every fused op replaced by a PAD (or a
SLICE) of the same output tensor: it loads in TFLite Micro with the same
tensors and the same number of ops, so its arena is the fused model's, but
for the fused ops' scratch buffers (3 bytes per seed map), which `arena`
adds.
"""

import numpy as np

from keras_groupnl.converters import _flatbuffer as fb
from keras_groupnl.converters import _fused
from keras_groupnl.converters import _memory_plan
from keras_groupnl.converters import _runtime

schema = fb.schema


def _is_fused(model, op):
    return fb.op_name(model, op) == _fused.OP_NAME


def _segments(model):
    """`[("tflm", [op indices]) | ("fused", op index)]` in graph order."""
    segments = []
    for index, op in enumerate(model.subgraphs[0].operators):
        if _is_fused(model, op):
            segments.append(("fused", index))
        elif segments and segments[-1][0] == "tflm":
            segments[-1][1].append(index)
        else:
            segments.append(("tflm", [index]))
    return segments


def _constant(model, tensor):
    return fb.buffer_data(model, tensor) is not None


def _sub_model(model_bytes, ops):
    """A model of the ops `ops`: `(bytes, input tensors, output tensors)`.

    Its inputs are the activations the ops read and do not make; its
    outputs every tensor they make that a later op or the model reads.
    """
    model = fb.read_model(model_bytes)
    subgraph = model.subgraphs[0]
    everything = list(subgraph.operators)
    chosen = set(ops)
    made = {int(t) for i in ops for t in everything[i].outputs}
    read_later = {
        int(t)
        for i, op in enumerate(everything)
        if i > max(ops)
        for t in op.inputs
        if t >= 0
    } | {int(t) for t in subgraph.outputs}
    inputs = []
    for i in ops:
        for t in everything[i].inputs:
            t = int(t)
            if t < 0 or t in made or t in inputs:
                continue
            if not _constant(model, subgraph.tensors[t]):
                inputs.append(t)
    outputs = [t for t in sorted(made) if t in read_later]
    subgraph.operators = [op for i, op in enumerate(everything) if i in chosen]
    subgraph.inputs = np.asarray(inputs, np.int32)
    subgraph.outputs = np.asarray(outputs, np.int32)
    model.metadata = []
    model.signatureDefs = []
    fb.remove_unused(model)
    return fb.write_model(model), inputs, outputs


def _tail(model, op):
    """The `FusedTail` a fused op's constant inputs hold."""
    subgraph = model.subgraphs[0]

    def value(position):
        return fb.tensor_value(
            model, subgraph.tensors[int(op.inputs[position])]
        )

    header = value(3)
    return _fused.FusedTail(
        layer="",
        zero_point=int(header[0]),
        tables=value(1),
        plan=value(2),
        out_min=int(header[1]),
        out_max=int(header[2]),
        mode=int(header[3]),
        group_in=int(header[4]),
        multiplier=int(header[5]),
    )


class PartitionedRunner(_runtime._Runner):
    """A fused microcontroller model: TFLite Micro and the NumPy reference.

    Args:
        model_bytes: the fused model, without an offline arena plan.
    """

    def __init__(self, model_bytes):
        model = fb.read_model(model_bytes)
        subgraph = model.subgraphs[0]
        if len(subgraph.inputs) != 1 or len(subgraph.outputs) != 1:
            raise ValueError(
                "A fused microcontroller model runs here with one input and "
                f"one output. Received: {len(subgraph.inputs)} inputs, "
                f"{len(subgraph.outputs)} outputs"
            )
        self.model_input = int(subgraph.inputs[0])
        self.model_output = int(subgraph.outputs[0])
        self.input_detail = _detail(subgraph.tensors[self.model_input])
        self.output_detail = _detail(subgraph.tensors[self.model_output])
        self.steps = []
        for kind, where in _segments(model):
            if kind == "fused":
                op = subgraph.operators[where]
                self.steps.append(
                    (
                        "fused",
                        _tail(model, op),
                        int(op.inputs[0]),
                        int(op.outputs[0]),
                    )
                )
            else:
                sub, inputs, outputs = _sub_model(model_bytes, where)
                runner = _runtime.TFLMRunner(sub)
                self.steps.append(("tflm", runner, inputs, outputs))

    def invoke_raw(self, raw):
        values = {self.model_input: raw}
        for kind, run, inputs, outputs in self.steps:
            if kind == "fused":
                values[outputs] = _fused.evaluate(run, values[inputs])
                continue
            results = run.invoke_all(
                [values[t] for t in inputs], outputs=len(outputs)
            )
            values.update(zip(outputs, results))
        return values[self.model_output]


def mcu_predict(model, x):
    """Runs an "mcu" model on the host, as a microcontroller computes it.

    The desktop check before flashing: LiteRT's interpreter refuses these
    files (their int8 -> int32 QUANTIZE, or the fused GroupNL op), so a
    builtin model runs in TFLite Micro's Python interpreter, and a fused
    one in TFLite Micro with the fused ops' bit-exact reference.

    Args:
        model: the `.tflite` path or bytes.
        x: float32 samples, batch axis first, as the Keras model takes.

    Returns:
        The float outputs (the int8 outputs dequantized).
    """
    if not isinstance(model, (bytes, bytearray)):
        with open(model, "rb") as f:
            model = f.read()
    parsed = fb.read_model(model)
    fused = any(_is_fused(parsed, op) for op in parsed.subgraphs[0].operators)
    runner = PartitionedRunner(model) if fused else _runtime.TFLMRunner(model)
    return runner.predict(np.asarray(x, np.float32))


def _detail(tensor):
    quant = fb.quantization(tensor)
    return {
        "dtype": fb.NUMPY_TYPES[tensor.type],
        "scale": quant[0][0] if quant else 0.0,
        "zero_point": quant[1][0] if quant else 0,
    }


def stand_in(model_bytes):
    """The fused model with a PAD for every fused op, and an arena plan.

    Returns `(bytes, scratch)`: the stand-in and the largest scratch buffer
    a fused op asks for (3 bytes per seed map: int16 differences and the
    unit vector).
    """
    model = fb.read_model(model_bytes)
    subgraph = model.subgraphs[0]
    scratch = 0
    for index, op in enumerate(subgraph.operators):
        if not _is_fused(model, op):
            continue
        source, output = int(op.inputs[0]), int(op.outputs[0])
        shape = [int(d) for d in subgraph.tensors[output].shape]
        tail = _tail(model, op)
        scratch = max(scratch, 3 * tail.seeds)
        subgraph.operators[index] = _same_shape_op(
            model, subgraph, source, output, shape
        )
        # The stand-in keeps its input's quantization; values do not matter.
        subgraph.tensors[output].quantization = subgraph.tensors[
            source
        ].quantization
    _memory_plan.add_offline_plan(model)
    return fb.write_model(model), scratch


def _same_shape_op(model, subgraph, source, output, shape):
    """A PAD (or, for a wider input, a SLICE) of `source` into `output`."""
    channels = int(subgraph.tensors[source].shape[-1])
    if channels <= shape[-1]:
        paddings = np.zeros((len(shape), 2), np.int32)
        paddings[-1, 1] = shape[-1] - channels
        padding = fb.add_tensor(
            model,
            subgraph,
            "",
            schema.TensorType.INT32,
            paddings.shape,
            value=paddings,
        )
        return fb.make_op(model, "PAD", 1, [source, padding], [output])
    begin = np.zeros(len(shape), np.int32)
    size = np.asarray(shape, np.int32)
    constants = [
        fb.add_tensor(
            model,
            subgraph,
            "",
            schema.TensorType.INT32,
            value.shape,
            value=value,
        )
        for value in (begin, size)
    ]
    return fb.make_op(model, "SLICE", 1, [source] + constants, [output])


def arena(model_bytes, sample_raw):
    """The fused model's TFLite Micro arena, measured on its stand-in.

    Returns `{"arena_bytes", "activation_bytes", "bookkeeping_bytes"}` with
    the fused ops' scratch added to the activations.
    """
    standing, scratch = stand_in(model_bytes)
    runner = _runtime.TFLMRunner(standing)
    measured = runner.measure_arena_raw(sample_raw)
    return {
        "arena_bytes": measured["arena_bytes"] + _align(scratch),
        "activation_bytes": measured["activation_bytes"] + _align(scratch),
        "bookkeeping_bytes": measured["bookkeeping_bytes"],
    }


def _align(size, alignment=16):
    return -(-size // alignment) * alignment
