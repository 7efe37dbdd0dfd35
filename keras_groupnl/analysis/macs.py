"""Multiply-accumulate counts of Keras models, GroupNL layers included."""

import math

import keras

from keras_groupnl.layers.base_group_nl_conv import BaseGroupNLConv


def count_macs(model, by_layer=False):
    """Counts the multiply-accumulates (MACs) of one example's forward pass.

    Counts what papers count as a network's FLOPs: the products of the
    convolution and dense kernels. Element-wise work (normalisation,
    activations, additions, pooling, the GroupNL sinusoids) is not counted.

    - `Conv1D` / `Conv2D` / `Conv3D` (grouped ones too) and
      `DepthwiseConv2D`: output positions x kernel entries (every output
      value costs one kernel column).
    - `SeparableConv1D` / `SeparableConv2D`: the same for both kernels.
    - `Conv1DTranspose` / `Conv2DTranspose` / `Conv3DTranspose`: input
      positions x kernel entries.
    - `Dense`: positions x kernel entries, so a `Dense` over a sequence
      counts every step.
    - `GroupNLConv2D` and `SparseGroupNLConv2D`: their seed conv, the only
      convolution they run: output positions x seed kernel entries, that is
      `filters / reduction_ratio` maps (`gcd` groups for the sparse one).

    A layer called several times counts every call, and the layers of a
    nested model count as often as that model is called.

    Args:
        model: a built functional or `Sequential` Keras model with fixed
            input sizes; nested models are walked.
        by_layer: bool, return `{layer path: MACs}` for every counted layer
            instead of the total. Defaults to `False`.

    Returns:
        An int, or a dict of ints with `by_layer=True`.

    Raises:
        ValueError: if `model` is not a Keras model, the sizes are not
            fixed, or a layer with kernel weights is of a type this function
            does not know (for example a custom layer holding convs).

    Example:

    >>> inputs = keras.Input((32, 32, 3))
    >>> outputs = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    >>> count_macs(keras.Model(inputs, outputs))  # 32 * 32 * 3 * 3 * 3 * 8
    221184
    """
    if not isinstance(model, keras.Model):
        raise ValueError(
            "`model` must be a Keras model. "
            f"Received: model={model!r} of type {type(model).__name__}"
        )
    counts = {}
    for layer, calls, graph in _layers(model, 1):
        macs = _layer_macs(layer, graph)
        if macs is not None:
            counts[layer.path] = calls * macs
    if by_layer:
        return counts
    return int(sum(counts.values()))


def _nodes(operation, graph=None):
    """The calls of a layer (in the graph `graph` only, when given).

    Keras 3 records each call of a layer in a functional graph as a node;
    `_inbound_nodes` is the only handle on them, and a functional model's
    `_nodes_by_depth` on its own nodes (no public accessors). A layer that
    another model reuses (as `keras.models.clone_model` does with the
    layers it keeps) has that model's calls too, which are not this one's.
    """
    nodes = list(getattr(operation, "_inbound_nodes", ()))
    return nodes if graph is None else [n for n in nodes if id(n) in graph]


def _graph(model):
    """Ids of the nodes of a functional or Sequential model, or None."""
    functional = getattr(model, "_functional", None) or model
    by_depth = getattr(functional, "_nodes_by_depth", None)
    if not by_depth:
        return None
    return {id(node) for nodes in by_depth.values() for node in nodes}


def _layers(model, calls):
    """Yields (leaf layer, how many times its enclosing models run, the
    node ids of the model it is in)."""
    graph = _graph(model)
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            runs = max(1, len(_nodes(layer, graph)))
            yield from _layers(layer, calls * runs)
        else:
            yield layer, calls, graph


_CONV = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
    BaseGroupNLConv,
)
_SEPARABLE = (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)
_TRANSPOSE = (
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
)


def _layer_macs(layer, graph=None):
    """MACs of every call of one layer, or None without kernel products.

    Every output position of a conv or dense layer (every input position of
    a transposed conv) costs one product per kernel entry.
    """
    if isinstance(layer, _TRANSPOSE):
        which, entries = "input", _size(layer.kernel)
    elif isinstance(layer, (_CONV, keras.layers.Dense)):
        which, entries = "output", _size(layer.kernel)
    elif isinstance(layer, _SEPARABLE):
        which = "output"
        entries = _size(layer.depthwise_kernel) + _size(layer.pointwise_kernel)
    elif any(w.path.split("/")[-1].endswith("kernel") for w in layer.weights):
        raise ValueError(
            f"count_macs does not know how to count layer '{layer.name}' of "
            f"type {type(layer).__name__}, which has kernel weights. "
            "Build the model from Keras layers and GroupNL layers, or count "
            "this layer yourself."
        )
    else:
        return None
    positions = sum(_positions(layer, s) for s in _shapes(layer, which, graph))
    return positions * entries


def _shapes(layer, which, graph=None):
    """The input or output shape of every call of `layer` in `graph`."""
    nodes = _nodes(layer, graph)
    if not nodes:
        raise ValueError(
            f"count_macs needs the {which} shape of layer '{layer.name}' "
            f"({type(layer).__name__}), but the layer was never called in a "
            "functional graph (is it inside a custom layer?)."
        )
    shapes = []
    for node in nodes:
        tensors = (
            node.input_tensors if which == "input" else node.output_tensors
        )
        shape = tuple(tensors[0].shape)
        if any(d is None for d in shape[1:]):
            raise ValueError(
                f"count_macs needs fixed sizes, but layer '{layer.name}' has "
                f"{which} shape {shape}. Build the model with a fixed input "
                "shape, e.g. `keras.Input((224, 224, 3))`."
            )
        shapes.append(shape)
    return shapes


def _positions(layer, shape):
    """Positions of an input or output: all axes but batch and channels."""
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return math.prod(shape[2:])
    return math.prod(shape[1:-1])


def _size(variable):
    return math.prod(int(d) for d in variable.shape)
