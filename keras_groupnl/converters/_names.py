"""Which Keras layer a TFLite op comes from.

Keras runs every layer call in a TensorFlow name scope named after the
layer (made unique with `_N` suffixes), so converted tensors carry names
such as `functional_1/conv2d_3_1/convolution`; the converter joins the names
of fused ops with `;`. Targets map every op to its layer before they strip
names, so that reports and errors can still name layers.
"""

import re

from keras_groupnl.converters import _flatbuffer as fb


def layer_names(model):
    """Names of every layer of `model`, nested models included."""
    names = []
    for layer in getattr(model, "layers", []):
        names.append(layer.name)
        names.extend(layer_names(layer))
    return names


def find_layer(names, tensor_names):
    """The layer that produced tensors with these names, or `None`."""
    known = set(names)
    for full in tensor_names:
        for name in full.split(";"):
            parts = [p for p in re.split(r"[/:@]", name) if p]
            for part in reversed(parts):
                while True:
                    if part in known:
                        return part
                    stripped = re.sub(r"_\d+$", "", part)
                    if stripped == part:
                        break
                    part = stripped
    return None


def op_layers(model, names):
    """The layer of every op of a `ModelT` (by its output, then inputs)."""
    subgraph = model.subgraphs[0]
    layers = []
    for op in subgraph.operators or []:
        outputs = [fb.tensor_name(subgraph.tensors[int(t)]) for t in op.outputs]
        inputs = [
            fb.tensor_name(subgraph.tensors[int(t)])
            for t in op.inputs
            if t >= 0
        ]
        layers.append(find_layer(names, outputs) or find_layer(names, inputs))
    return layers
