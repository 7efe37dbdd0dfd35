"""Where the convolutions of a model are, and which of them are stems.

`walk(model)` visits a Functional or Sequential model and the Functional and
Sequential models nested in it, and returns every `Conv2D` and
`DepthwiseConv2D` it can replace (a `ConvSite`), and every other layer that
holds such convolutions where `to_groupnl` cannot reach them (an
`OpaqueLayer`: a subclassed model, a custom layer, a wrapper such as
`TimeDistributed`, a subclass of `Conv2D`).

A conv is a *stem* conv when none of its inputs has passed through a layer
with a kernel (a conv or a dense layer) since the model input: the first
conv(s) that see the image. The connectivity comes from the public
`model.get_config()` of each Functional model.
"""

import dataclasses

import keras

# The layers `to_groupnl` replaces, matched by exact class: a subclass may
# compute something else, so it is an `OpaqueLayer` instead.
CONV_CLASSES = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)


@dataclasses.dataclass(frozen=True, eq=False)
class ConvSite:
    """A `Conv2D` or `DepthwiseConv2D` that `to_groupnl` can replace.

    Attributes:
        layer: the conv layer.
        parent: the Functional or Sequential model that holds it.
        scopes: names of the nested models around it, outermost first (the
            top model not included).
        stem: whether it is a stem conv (see the module docstring).
    """

    layer: keras.layers.Layer
    parent: keras.Model
    scopes: tuple
    stem: bool

    @property
    def path(self):
        """`"nested_model/conv"`: the names from below the top model."""
        return "/".join(self.scopes + (self.layer.name,))


@dataclasses.dataclass(frozen=True, eq=False)
class OpaqueLayer:
    """A layer holding convs that `to_groupnl` cannot reach.

    Attributes:
        layer: the layer.
        scopes: names of the nested models around it.
        convs: the `Conv2D` / `DepthwiseConv2D` layers it holds (itself, for
            a subclass of either).
        kind: what it is, in words (`"a subclassed model"`, ...).
    """

    layer: keras.layers.Layer
    scopes: tuple
    convs: tuple
    kind: str

    @property
    def path(self):
        return "/".join(self.scopes + (self.layer.name,))


def is_graph_model(layer):
    """Whether `layer` is a Functional or Sequential model.

    Those are the models whose graph `keras.models.clone_model` rebuilds.
    `Functional` is not exported by Keras; a Functional model (or a subclass
    such as a keras-hub backbone) has it among its base classes.
    """
    if isinstance(layer, keras.Sequential):
        return True
    return isinstance(layer, keras.Model) and any(
        cls.__name__ == "Functional" for cls in type(layer).__mro__
    )


def walk(model):
    """Returns `(sites, opaque)`: a `ConvSite` list and an `OpaqueLayer` list.

    Both are in model order, nested models depth first.
    """
    sites, opaque = [], []
    _walk(model, False, (), sites, opaque)
    return sites, opaque


def _walk(model, fed, scopes, sites, opaque):
    for layer, inbound_fed in _layers_in_order(model, fed):
        if is_graph_model(layer):
            _walk(layer, inbound_fed, scopes + (layer.name,), sites, opaque)
        elif type(layer) in CONV_CLASSES:
            sites.append(ConvSite(layer, model, scopes, not inbound_fed))
        else:
            convs = held_convs(layer)
            if convs:
                opaque.append(
                    OpaqueLayer(layer, scopes, tuple(convs), _kind(layer))
                )


def _kind(layer):
    if isinstance(layer, keras.Model):
        return "a subclassed model"
    if isinstance(layer, CONV_CLASSES):
        return f"a subclass of {_conv_base(layer).__name__}"
    return "a layer that holds other layers"


def _conv_base(layer):
    return next(cls for cls in CONV_CLASSES if isinstance(layer, cls))


def has_kernel(layer):
    """Whether `layer` (or a layer inside it) has a kernel weight."""
    return any(
        weight.path.split("/")[-1].endswith("kernel")
        for weight in layer.weights
    )


def held_convs(layer):
    """The convs inside a layer that is not a graph model (itself included).

    Keras tracks sublayers as attributes (or lists and dicts of them), so
    the attributes are searched.
    """
    found, seen = [], {id(layer)}
    if isinstance(layer, CONV_CLASSES):
        found.append(layer)

    def visit(value, depth):
        if depth > 16:
            return
        if isinstance(value, keras.layers.Layer):
            if id(value) in seen:
                return
            seen.add(id(value))
            if isinstance(value, CONV_CLASSES):
                found.append(value)
            for item in vars(value).values():
                visit(item, depth + 1)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item, depth + 1)
        elif isinstance(value, dict):
            for item in value.values():
                visit(item, depth + 1)

    for item in vars(layer).values():
        visit(item, 1)
    return found


def _layers_in_order(model, fed):
    """Yields `(layer, inbound_fed)` for every non-input layer of `model`.

    `inbound_fed`: whether an input of the layer has passed through a layer
    with a kernel. `fed` says so of the model's own inputs. A layer called
    several times counts as fed if any of its calls is; layers reused on
    their own outputs make the layer graph cyclic, so the flags are found
    by iterating to a fixed point (they only ever turn on).
    """
    if isinstance(model, keras.Sequential):
        for layer in model.layers:
            yield layer, fed
            fed = fed or has_kernel(layer)
        return
    config = model_config(model)
    if "layers" not in config:
        # A Functional subclass with its own get_config (a keras-hub
        # backbone): a plain Functional model over the same graph has the
        # connectivity.
        view = keras.Model(model.input, model.output, name=model.name)
        config = model_config(view)
    by_name = {layer.name: layer for layer in model.layers}
    inputs = set(_history_names(config.get("input_layers")))
    entries = [
        (by_name[e["name"]], _history_names(e.get("inbound_nodes")))
        for e in config["layers"]
        if e["name"] not in inputs
    ]
    kernel = {layer.name: has_kernel(layer) for layer, _ in entries}
    fed_out = dict.fromkeys(by_name, False)
    fed_out.update(dict.fromkeys(inputs, fed))
    changed = True
    while changed:
        changed = False
        for layer, sources in entries:
            out = kernel[layer.name] or any(fed_out[s] for s in sources)
            if out and not fed_out[layer.name]:
                fed_out[layer.name] = changed = True
    for layer, sources in entries:
        yield layer, any(fed_out[s] for s in sources)


def model_config(model):
    """`model.get_config()`, or a `ValueError` naming the layer that fails."""
    try:
        return model.get_config()
    except Exception as error:  # noqa: BLE001 - any layer may fail.
        for layer in model.layers:
            try:
                layer.get_config()
            except Exception as layer_error:  # noqa: BLE001
                raise ValueError(
                    f"Layer '{layer.name}' ({type(layer).__name__}) of "
                    f"model '{model.name}' has no usable get_config() "
                    f"({type(layer_error).__name__}: {layer_error}). "
                    "to_groupnl copies every layer from its config; "
                    "implement get_config() for this layer."
                ) from None
        raise ValueError(
            f"The config of model '{model.name}' cannot be read "
            f"({type(error).__name__}: {error})."
        ) from None


def _history_names(node):
    """Names of the layers whose outputs a serialised node reads."""
    if isinstance(node, dict):
        config = node.get("config")
        if isinstance(config, dict) and "keras_history" in config:
            return [config["keras_history"][0]]
        return [name for v in node.values() for name in _history_names(v)]
    if isinstance(node, (list, tuple)):
        if (
            len(node) == 3
            and isinstance(node[0], str)
            and all(isinstance(i, int) for i in node[1:])
        ):
            return [node[0]]  # `input_layers` entries: [name, node, index].
        return [name for v in node for name in _history_names(v)]
    return []
