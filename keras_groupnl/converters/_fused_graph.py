"""Puts the fused GroupNL tail op into a converted microcontroller model.

The builtin "mcu" graph of a GroupNL layer is its seed conv, then a tail
from L2_NORMALIZATION to the folded BatchNorm (a 1x1 DEPTHWISE_CONV_2D with
the fused ReLU / ReLU6), all named after the layer. `fuse` replaces every
such tail by one `KERAS_GROUPNL_TAIL` custom op (`_fused`) that reads the
tail's input (the seed maps) and writes the tail's output tensor, with that
tensor's quantization: the rest of the graph is untouched. A HARD_SWISH
after the BatchNorm stays a builtin op.
"""

import numpy as np

from keras_groupnl.converters import _flatbuffer as fb
from keras_groupnl.converters import _fused
from keras_groupnl.converters._errors import ConversionError

schema = fb.schema
CUSTOM_CODE = _fused.CUSTOM_CODE
# The tail starts at the normalisation; a HARD_SWISH after it stays.
_TAIL_START = "L2_NORMALIZATION"
_KEPT = ("HARD_SWISH",)
# What a GroupNL layer's builtin tail is made of (`_lookup`): anything else
# after its L2_NORMALIZATION is not the fused op's to replace.
_TAIL_OPS = {
    "L2_NORMALIZATION",
    "RESHAPE",
    "SPLIT",
    "SPLIT_V",
    "QUANTIZE",
    "GATHER",
    "CONCATENATION",
    "TRANSPOSE",
    "STRIDED_SLICE",
    "SLICE",
    "DEPTHWISE_CONV_2D",
}


def fuse(model, op_layers, deployed, mode):
    """Replaces every GroupNL tail of a `ModelT` by the fused op.

    Args:
        model: the builtin "mcu" `ModelT` (before stripping), edited.
        op_layers: the Keras layer of every op.
        deployed: the deploy layers (their `form` and `fold`).
        mode: `"nlf_tables"` or `"channel_tables"` (see `_fused`).

    Returns:
        `(op_layers, tails)`: the layer of every op of the edited model and
        the `FusedTail` of every layer, in model order.
    """
    subgraph = model.subgraphs[0]
    tails = []
    for layer in deployed:
        region = _tail_region(model, op_layers, layer.name)
        source = int(subgraph.operators[region[0]].inputs[0])
        output = _region_output(subgraph, region, layer.name)
        summation = _summation(model, op_layers, layer, source)
        if summation is not None:  # The op sums the depthwise outputs.
            source = int(subgraph.operators[summation].inputs[0])
            region = [summation] + region
        tail = _fused.build(
            layer.form,
            layer.fold,
            _zero_point(subgraph.tensors[source]),
            *_scale_and_zero_point(subgraph.tensors[output]),
            mode,
            summed=summation is not None,
        )
        op = _custom_op(model, subgraph, tail, source, output)
        ops = list(subgraph.operators)
        layers = list(op_layers)
        ops[region[-1]], layers[region[-1]] = op, layer.name
        keep = [i for i in range(len(ops)) if i not in set(region[:-1])]
        subgraph.operators = [ops[i] for i in keep]
        op_layers = [layers[i] for i in keep]
        tails.append(tail)
    fb.remove_unused(model)
    return op_layers, tails


def _tail_region(model, op_layers, layer):
    """Indices of the layer's tail ops, from its L2_NORMALIZATION on."""
    subgraph = model.subgraphs[0]
    mine = [i for i, name in enumerate(op_layers) if name == layer]
    names = {i: fb.op_name(model, subgraph.operators[i]) for i in mine}
    starts = [i for i in mine if names[i] == _TAIL_START]
    if len(starts) != 1:
        raise ConversionError(
            f"Layer '{layer}': expected one {_TAIL_START} in its converted "
            f"graph to fuse, found {len(starts)}.",
            layer=layer,
        )
    region = [i for i in mine if i >= starts[0] and names[i] not in _KEPT]
    unknown = sorted({names[i] for i in region} - _TAIL_OPS)
    if unknown:
        raise ConversionError(
            f"Layer '{layer}': its converted tail has ops the fused kernel "
            f"does not compute: {', '.join(unknown)}. Convert with "
            "mcu_kernel='builtin'.",
            layer=layer,
        )
    return region


def _summation(model, op_layers, layer, source):
    """The index of a sparse seed conv's 1x1 summation conv making
    `source`, when the fused op can sum the depthwise outputs itself."""
    form = layer.form
    if form.groups == 1 or form.kernel.shape[2] == 1:
        # A full seed conv, or a depthwise one whose outputs are the seed
        # maps (`_deploy.DeployedGroupNL.seed_conv` writes no sum for it).
        return None
    if not _fused.can_sum(form):
        return None
    subgraph = model.subgraphs[0]
    producers, consumers = fb.producers_and_consumers(subgraph)
    index = producers.get(source)
    if (
        index is None
        or op_layers[index] != layer.name
        or fb.op_name(model, subgraph.operators[index]) != "CONV_2D"
        or len(consumers.get(source, [])) != 1
    ):
        return None
    depthwise = producers.get(int(subgraph.operators[index].inputs[0]))
    if (
        depthwise is None
        or fb.op_name(model, subgraph.operators[depthwise])
        != "DEPTHWISE_CONV_2D"
    ):
        return None
    return index


def _region_output(subgraph, region, layer):
    """The one tensor the region writes that anything else reads."""
    inside = set(region)
    producers, consumers = fb.producers_and_consumers(subgraph)
    outputs = set(int(t) for t in subgraph.outputs)
    leaving = {
        t
        for t, op in producers.items()
        if op in inside
        and (t in outputs or any(c not in inside for c in consumers.get(t, [])))
    }
    last = int(subgraph.operators[region[-1]].outputs[0])
    if leaving != {last}:
        raise ConversionError(
            f"Layer '{layer}': its tail is read before its end, so it cannot "
            "be fused into one op.",
            layer=layer,
        )
    return last


def _zero_point(tensor):
    quant = fb.quantization(tensor)
    return 0 if quant is None else quant[1][0]


def _scale_and_zero_point(tensor):
    scales, zero_points, _ = fb.quantization(tensor)
    return scales[0], zero_points[0]


def _custom_op(model, subgraph, tail, source, output):
    """The `KERAS_GROUPNL_TAIL` op and its constant inputs."""
    name = f"{tail.layer}/groupnl_tail"
    constants = [
        fb.add_tensor(
            model,
            subgraph,
            f"{name}/{role}",
            tensor_type,
            value.shape,
            value=value,
        )
        for role, tensor_type, value in (
            ("tables", schema.TensorType.INT8, tail.tables),
            ("plan", schema.TensorType.INT32, tail.plan),
            ("header", schema.TensorType.INT32, tail.header()),
        )
    ]
    op = schema.OperatorT()
    op.opcodeIndex = _custom_opcode(model)
    op.inputs = np.asarray([source] + constants, dtype=np.int32)
    op.outputs = np.asarray([output], dtype=np.int32)
    op.customOptionsFormat = schema.CustomOptionsFormat.FLEXBUFFERS
    return op


def _custom_opcode(model):
    code = _fused.CUSTOM_CODE.encode()
    for index, opcode in enumerate(model.operatorCodes):
        if opcode.builtinCode == schema.BuiltinOperator.CUSTOM and (
            opcode.customCode == code or opcode.customCode == _fused.CUSTOM_CODE
        ):
            return index
    opcode = schema.OperatorCodeT()
    opcode.builtinCode = schema.BuiltinOperator.CUSTOM
    opcode.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    opcode.customCode = _fused.CUSTOM_CODE
    opcode.version = 1
    model.operatorCodes.append(opcode)
    return len(model.operatorCodes) - 1
