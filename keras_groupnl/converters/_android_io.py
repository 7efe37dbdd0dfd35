"""The phone model's input and output as Android's image clients use them.

MediaPipe Tasks' `ImageClassifier` hands a model RGB pixels: a float32
input gets them normalised by one mean and one standard deviation from the
metadata (per-channel values are refused: "Per-channel image normalization
is not available"), a uint8 input gets the raw pixels, and other types,
or inputs with other than 3 (or 4) channels, are refused. `plan` decides
how the converted model meets that; `apply` rewrites the converted model's
edges accordingly:

- **input stage**: one int8 1x1 CONV_2D in front of the model, when the
  model takes 1-channel images (RGB -> gray with the ITU-R BT.601 luma
  weights 0.299, 0.587, 0.114) or when its normalisation cannot be left to
  the client (per-channel mean / std; for uint8, a mean that is not a
  whole pixel value). With a normalising stage the model takes raw pixels.
- **uint8 input and output**: the model is converted with int8 I/O, then
  a QUANTIZE from a uint8 input (scale `1 / std`, zero point `mean`: the
  raw pixels) to the int8 model input, and a QUANTIZE from the int8 output
  to a uint8 output (same scale, zero point + 128).

Every change is an edit of the converted flatbuffer, after the target's
own conversion; `to_client` maps verification samples to what the
rewritten model takes.
"""

import dataclasses
import typing

import numpy as np

from keras_groupnl.converters import _flatbuffer as fb
from keras_groupnl.converters._errors import ConversionError
from keras_groupnl.converters._normalization import Normalization

LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601
_PIXELS_INT8 = (1.0, -128)  # Pixels 0..255 as int8.


@dataclasses.dataclass(frozen=True)
class InputPlan:
    """What the phone model takes, and how it gets there.

    Attributes:
        channels: channels of the Keras model's input.
        io_dtype: `"float32"`, `"uint8"` or `"int8"`.
        normalization: the model's `Normalization`; `None` when its input
            is not taken for images.
        rgb: a 1-channel model takes RGB through the input stage.
        pixels: the model takes raw pixels; the input stage normalises.
    """

    channels: int
    io_dtype: str
    normalization: typing.Optional[Normalization]
    rgb: bool = False
    pixels: bool = False

    @property
    def stage(self):
        return self.rgb or self.pixels

    @property
    def client_channels(self):
        return 3 if self.rgb else self.channels

    @property
    def client_normalization(self):
        """`(mean, std)` of the client input, as the metadata gives it."""
        if self.normalization is None:
            return None
        if self.pixels:
            return (0.0,), (1.0,)
        norm = self.normalization
        if norm.per_channel:
            return norm.mean, norm.std
        return norm.mean[:1], norm.std[:1]

    def to_client(self, x):
        """Model-input samples as the rewritten model takes them (float;
        the runtime quantizes integer inputs)."""
        x = np.asarray(x, np.float32)
        if self.rgb:
            x = np.repeat(x, 3, axis=-1)
        if self.pixels:
            x = self.normalization.to_pixels(x).astype(np.float32)
        return x

    def to_pixels(self, x):
        """Model-input samples as the uint8 RGB (or gray) camera images
        they come from."""
        pixels = self.normalization.to_pixels(x)
        if self.rgb:
            pixels = np.repeat(pixels, 3, axis=-1)
        return np.clip(np.round(pixels), 0, 255).astype(np.uint8)

    def from_pixels(self, pixels):
        """Camera images as the rewritten model takes them (float)."""
        if self.pixels:
            return np.asarray(pixels, np.float32)
        mean, std = self.client_normalization
        return ((np.asarray(pixels, np.float64) - mean) / std).astype(
            np.float32
        )

    def describe(self):
        """The input stage in words, for the report."""
        steps = []
        if self.rgb:
            steps.append(
                "RGB -> gray (ITU-R BT.601 luma), so that Android's RGB "
                "images fit this 1-channel model"
            )
        if self.pixels:
            why = (
                "per-channel mean / std, which Android's clients do not apply"
                if self.normalization.per_channel
                else "a mean that is not a whole pixel value, which a uint8 "
                "input cannot carry"
            )
            steps.append(f"(pixel - mean) / std in the graph: {why}")
        return steps


def plan(normalization, channels, io_dtype, rgb_input):
    """The `InputPlan` for a model input of `channels` channels.

    `rgb_input`: `None` (RGB for 1-channel image models), `True` or
    `False` (keep the model's channels).
    """
    if normalization is None:
        if rgb_input:
            raise ValueError(
                "`rgb_input=True` needs image inputs: the representative "
                "data matches no pixel normalization; pass `normalization`. "
                "Received: rgb_input=True"
            )
        return InputPlan(channels, io_dtype, None)
    rgb = channels == 1 and rgb_input is not False
    pixels = False
    if io_dtype == "float32":
        pixels = normalization.per_channel
    elif io_dtype == "uint8":
        mean = normalization.mean[0]
        whole = float(mean).is_integer() and 0 <= mean <= 255
        pixels = normalization.per_channel or not whole
    return InputPlan(channels, io_dtype, normalization, rgb, pixels)


def apply(model_bytes, op_layers, input_plan):
    """The converted model with its edges rewritten for `input_plan`.

    `model_bytes` has float32 I/O for `io_dtype="float32"` and int8 I/O
    otherwise. Returns `(model bytes, op layers)`; new ops belong to no
    layer (`None`).
    """
    if not input_plan.stage and input_plan.io_dtype != "uint8":
        return model_bytes, op_layers
    model = fb.read_model(model_bytes)
    subgraph = model.subgraphs[0]
    first, removed = _input_edge(model, input_plan)
    layers = [layer for i, layer in enumerate(op_layers) if i != removed]
    ops = [op for i, op in enumerate(subgraph.operators) if i != removed]
    subgraph.operators = first + ops
    layers = [None] * len(first) + layers
    if input_plan.io_dtype == "uint8":
        subgraph.operators.append(_uint8_output(model))
        layers.append(None)
    fb.remove_unused(model)
    return fb.write_model(model), layers


def _input_edge(model, input_plan):
    """Replaces the model input; returns `(new ops, index of the removed
    input QUANTIZE or None)`."""
    subgraph = model.subgraphs[0]
    old = int(subgraph.inputs[0])
    core, removed = old, None
    if subgraph.tensors[old].type in fb.FLOAT_TYPES:
        _, consumers = fb.producers_and_consumers(subgraph)
        readers = consumers[old]
        names = [fb.op_name(model, subgraph.operators[i]) for i in readers]
        if names != ["QUANTIZE"]:
            raise ConversionError(
                "Cannot give the phone model its Android input: its float "
                f"input is read by {names or 'no op'}, not by one QUANTIZE."
            )
        (removed,) = readers
        core = int(subgraph.operators[removed].outputs[0])
    scale, zero = fb.quantization(subgraph.tensors[core])[:2]
    core_quant = (scale[0], zero[0])
    feed_quant = _PIXELS_INT8 if input_plan.pixels else core_quant
    shape = list(subgraph.tensors[core].shape[:3]) + [
        input_plan.client_channels
    ]
    name = fb.tensor_name(subgraph.tensors[old])
    subgraph.tensors[old].name = name + "_model"
    client = _client_tensor(model, name, shape, input_plan, feed_quant)
    if subgraph.tensors[client].type == fb.schema.TensorType.INT8:
        feed = client  # The stage reads the int8 input itself.
    elif input_plan.stage:
        int8 = fb.schema.TensorType.INT8
        feed = fb.add_tensor(
            model, subgraph, name + "_int8", int8, shape, quant=feed_quant
        )
    else:
        feed = core  # A uint8 input, requantized into the model's.
    ops = []
    if feed != client:
        ops.append(fb.make_op(model, "QUANTIZE", 2, [client], [feed]))
    if input_plan.stage:
        ops.append(_stage_conv(model, feed, core, input_plan))
    _replace_io(model, "inputs", old, client)
    return ops, removed


def _client_tensor(model, name, shape, input_plan, feed_quant):
    """The new model input: float32, uint8 or int8."""
    subgraph = model.subgraphs[0]
    types = fb.schema.TensorType
    if input_plan.io_dtype == "float32":
        return fb.add_tensor(model, subgraph, name, types.FLOAT32, shape)
    if input_plan.io_dtype == "int8":
        return fb.add_tensor(
            model, subgraph, name, types.INT8, shape, quant=feed_quant
        )
    if input_plan.pixels:
        quant = (1.0, 0)
    elif input_plan.normalization is not None:
        mean, std = input_plan.client_normalization
        quant = (1.0 / std[0], int(mean[0]))
    else:  # Not an image: the int8 input's scale, shifted to uint8.
        quant = (feed_quant[0], feed_quant[1] + 128)
    return fb.add_tensor(model, subgraph, name, types.UINT8, shape, quant=quant)


def _stage_conv(model, source, target, input_plan):
    """The input stage as one int8 1x1 CONV_2D from `source` to `target`:
    RGB -> gray and / or `(pixel - mean) / std`, per output channel."""
    subgraph = model.subgraphs[0]
    channels = input_plan.channels
    kernel = np.eye(channels)
    if input_plan.rgb:
        kernel = np.asarray([LUMA_WEIGHTS])
    bias = np.zeros(channels)
    if input_plan.pixels:
        mean = np.asarray(input_plan.normalization.mean)
        std = np.asarray(input_plan.normalization.std)
        kernel, bias = kernel / std[:, None], -mean / std
    source_scale = fb.quantization(subgraph.tensors[source])[0][0]
    weight_scale = np.abs(kernel).max(axis=1) / 127.0
    weights = np.round(kernel / weight_scale[:, None]).astype(np.int8)
    weights = weights.reshape(channels, 1, 1, -1)
    bias_scale = source_scale * weight_scale
    bias = np.round(bias / bias_scale).astype(np.int32)
    types = fb.schema.TensorType
    name = fb.tensor_name(subgraph.tensors[target])
    w = fb.add_tensor(
        model,
        subgraph,
        name + "_stage_weights",
        types.INT8,
        weights.shape,
        value=weights,
    )
    b = fb.add_tensor(
        model,
        subgraph,
        name + "_stage_bias",
        types.INT32,
        bias.shape,
        value=bias,
    )
    _per_channel(subgraph.tensors[w], weight_scale)
    _per_channel(subgraph.tensors[b], bias_scale)
    options = fb.schema.Conv2DOptionsT()
    options.padding = fb.schema.Padding.VALID
    options.strideW = options.strideH = 1
    options.dilationWFactor = options.dilationHFactor = 1
    return fb.make_op(model, "CONV_2D", 3, [source, w, b], [target], options)


def _per_channel(tensor, scales):
    q = fb.schema.QuantizationParametersT()
    q.scale = np.asarray(scales, np.float32)
    q.zeroPoint = np.zeros(len(scales), np.int64)
    q.quantizedDimension = 0
    tensor.quantization = q


def _uint8_output(model):
    """A QUANTIZE from the int8 output to a new uint8 output (same scale,
    zero point + 128), which becomes the model output."""
    subgraph = model.subgraphs[0]
    old = int(subgraph.outputs[0])
    tensor = subgraph.tensors[old]
    scales, zeros, _ = fb.quantization(tensor)
    name = fb.tensor_name(tensor)
    tensor.name = name + "_int8"
    new = fb.add_tensor(
        model,
        subgraph,
        name,
        fb.schema.TensorType.UINT8,
        list(tensor.shape),
        quant=(scales[0], zeros[0] + 128),
    )
    _replace_io(model, "outputs", old, new)
    return fb.make_op(model, "QUANTIZE", 2, [old], [new])


def _replace_io(model, field, old, new):
    """Points the subgraph's inputs / outputs and the signatures from
    tensor `old` to tensor `new`."""
    subgraph = model.subgraphs[0]
    values = [
        new if int(t) == old else int(t) for t in getattr(subgraph, field)
    ]
    setattr(subgraph, field, np.asarray(values, np.int32))
    for signature in model.signatureDefs or []:
        for entry in getattr(signature, field) or []:
            if int(entry.tensorIndex) == old:
                entry.tensorIndex = new
