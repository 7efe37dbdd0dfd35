"""What each target promises, checked on the converted model.

- phone: int8 everywhere except the float tails of GroupNL layers (which
  XNNPACK runs in float) and, with float I/O, the input QUANTIZE and output
  DEQUANTIZE;
- phone with `integer_only`: not even the float tails;
- mcu: no float tensor at all, int8 input and output, and only operators
  TensorFlow Lite Micro implements.

A model that breaks a promise is refused with a `ConversionError` that
names the layer and the op.
"""

from keras_groupnl.converters import _flatbuffer as fb
from keras_groupnl.converters import _fused
from keras_groupnl.converters import _inspect
from keras_groupnl.converters._errors import ConversionError


def float_ops_by_layer(model, op_layers):
    """`{layer: [op names]}` of the float ops outside the I/O conversion
    (a float softmax head counts as the model's output conversion)."""
    head = _float_head(model)
    found = {}
    for index, name in _inspect.float_ops(model):
        if not _inspect.is_io_conversion(model, index) and index not in head:
            layer = op_layers[index] or "(unnamed)"
            found.setdefault(layer, []).append(name)
    return found


def check(converted, target, integer_only):
    """Raises `ConversionError` when the model is not what `target` says."""
    model = fb.read_model(converted.model_bytes)
    allowed = set()
    if target == "phone" and not integer_only:
        layers = {layer.name for layer in converted.deployed}
        allowed = {
            index
            for index, layer in enumerate(converted.op_layers)
            if layer in layers
        }
        allowed |= _float_head(model)
    _check_float_ops(model, converted.op_layers, allowed, target)
    if target == "mcu":
        _check_micro_ops(model, converted.op_layers)
        _check_integer_io(model)


def _float_head(model):
    """Op indices of a float softmax that makes the (float) model output,
    with the DEQUANTIZE feeding it: the phone target keeps softmax float,
    where XNNPACK runs it."""
    subgraph = model.subgraphs[0]
    producers, _ = fb.producers_and_consumers(subgraph)
    outputs = {int(t) for t in subgraph.outputs}
    head = set()
    for index, op in enumerate(subgraph.operators):
        if (
            fb.op_name(model, op) != "SOFTMAX"
            or int(op.outputs[0]) not in outputs
        ):
            continue
        head.add(index)
        feeder = producers.get(int(op.inputs[0]))
        if feeder is not None:
            if fb.op_name(model, subgraph.operators[feeder]) == "DEQUANTIZE":
                head.add(feeder)
    return head


def _check_float_ops(model, op_layers, allowed, target):
    """`allowed`: indices of the ops that may be float."""
    outside = [
        (index, name)
        for index, name in _inspect.float_ops(model)
        if not _inspect.is_io_conversion(model, index) and index not in allowed
    ]
    if not outside:
        return
    # Name the op without an int8 kernel, not the (DE)QUANTIZE around it.
    compute = [f for f in outside if f[1] not in ("QUANTIZE", "DEQUANTIZE")]
    index, op = (compute or outside)[0]
    layer = op_layers[index]
    where = f"layer '{layer}'" if layer else "an unnamed part of the model"
    listing = ", ".join(sorted({name for _, name in outside}))
    kind = "a full-integer" if target == "mcu" else "an int8"
    raise ConversionError(
        f"Cannot make {kind} model: {where} leaves the float op {op} in the "
        f"graph; {len(outside)} float op(s) in all: {listing}. TFLite has no "
        "int8 kernel for it. Replace the layer, or keep it out of the "
        "converted model.",
        layer=layer,
        op=op,
    )


# The fused GroupNL op: its kernel is written beside the model.
FUSED_OP = _fused.OP_NAME


def _check_micro_ops(model, op_layers):
    if _inspect.float_tensor_count(model):
        raise ConversionError(
            "Cannot make a full-integer model: float tensors remain."
        )
    for index, op in enumerate(model.subgraphs[0].operators):
        name = fb.op_name(model, op)
        if name not in fb.TFLM_RESOLVER_METHODS and name != FUSED_OP:
            layer = op_layers[index]
            where = f"Layer '{layer}'" if layer else "The model"
            raise ConversionError(
                f"{where} converts to the op {name}, which TensorFlow Lite "
                "Micro does not implement; the model cannot run on a "
                "microcontroller.",
                layer=layer,
                op=name,
            )


def _check_integer_io(model):
    for role in ("input", "output"):
        io = _inspect.io_tensor(model, role)
        if io["dtype"] != "int8":
            raise ConversionError(
                f"The model {role} is {io['dtype']}, not int8."
            )
