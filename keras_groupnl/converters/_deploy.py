"""The export copy of a model: GroupNL layers in their deploy form.

`export_copy(model, make_layer)` returns a copy of `model` that shares every
other layer (and so every weight) and replaces each GroupNL layer by
`make_layer(form, fold)`: a target's own implementation of the layer's
`deploy_form()` with the operators its runtime runs best.

A BatchNormalization whose only input is a GroupNL layer's output, and which
is that output's only reader, is folded into the deploy layer (`Fold`), as is
a ReLU / ReLU6 that is in turn the BatchNormalization's only reader; the
folded layers become identities in the copy. Targets use the fold to apply
the affine and the activation where they cost least.

Everything here is public Keras API: `keras.models.clone_model` with a
`clone_function`, and the connectivity recorded in `model.get_config()`.
"""

import dataclasses

import keras
import numpy as np

from keras_groupnl.converters._errors import ConversionError
from keras_groupnl.layers import BaseGroupNLConv
from keras_groupnl.layers.base_group_nl_conv import conv_output_length
from keras_groupnl.layers.sparse_group_nl_conv2d import sum_block_groups
from keras_groupnl.layers.sparse_group_nl_conv2d import summation_matrix


@dataclasses.dataclass(frozen=True, eq=False)
class Fold:
    """A BatchNormalization (and activation) folded into a GroupNL layer.

    The folded output is `activation(scale * groupnl_output + shift)`.

    Attributes:
        scale, shift: float32 `(filters,)`.
        activation: `None`, `"relu"`, `"relu6"` or `"hard_swish"`.
        layers: names of the folded layers, in order.
    """

    scale: np.ndarray
    shift: np.ndarray
    activation: str
    layers: tuple


HARD_SWISH_NAMES = ("hard_swish", "hard_silu")


def activation_kind(layer):
    """`"relu"`, `"relu6"`, `"hard_swish"` or `None` for any other layer."""
    if isinstance(layer, keras.layers.ReLU):
        config = layer.get_config()
        if config.get("negative_slope", 0) or config.get("threshold", 0):
            return None
        limit = config.get("max_value")
        if limit is None:
            return "relu"
        return "relu6" if float(limit) == 6.0 else None
    if isinstance(layer, keras.layers.Activation):
        name = keras.activations.serialize(layer.activation)
        name = name if isinstance(name, str) else name.get("config", name)
        if name in HARD_SWISH_NAMES:
            return "hard_swish"
        return name if name in ("relu", "relu6") else None
    return None


def batch_norm_affine(layer):
    """`(scale, shift)` of an inference-mode channels-last BatchNorm."""
    if layer.axis not in (-1, 3) and list(np.ravel(layer.axis)) not in (
        [-1],
        [3],
    ):
        return None

    def value(variable):
        return np.asarray(keras.ops.convert_to_numpy(variable), np.float64)

    variance = value(layer.moving_variance)
    scale = 1.0 / np.sqrt(variance + layer.epsilon)
    if layer.scale:
        scale = scale * value(layer.gamma)
    shift = -scale * value(layer.moving_mean)
    if layer.center:
        shift = shift + value(layer.beta)
    return scale.astype(np.float32), shift.astype(np.float32)


def _history_names(node):
    """Names of the layers whose outputs a serialised node argument reads."""
    if isinstance(node, dict):
        config = node.get("config")
        if isinstance(config, dict) and "keras_history" in config:
            return [config["keras_history"][0]]
        return [n for v in node.values() for n in _history_names(v)]
    if isinstance(node, (list, tuple)):
        return [n for v in node for n in _history_names(v)]
    return []


def _output_names(output_layers):
    if (
        isinstance(output_layers, (list, tuple))
        and len(output_layers) == 3
        and isinstance(output_layers[0], str)
    ):
        return [output_layers[0]]
    return [n for item in output_layers or [] for n in _output_names(item)]


def _readers(model):
    """`{layer name: [reader names]}` of a Functional or Sequential model.

    A model output counts as a reader named `None`.
    """
    layers = [layer.name for layer in model.layers]
    if isinstance(model, keras.Sequential):
        readers = {a: [b] for a, b in zip(layers, layers[1:])}
        readers[layers[-1]] = [None]
        return readers, {name: 1 for name in layers}
    config = model.get_config()
    readers, calls = {}, {}
    for entry in config["layers"]:
        calls[entry["name"]] = len(entry.get("inbound_nodes") or [])
        for source in _history_names(entry.get("inbound_nodes")):
            readers.setdefault(source, []).append(entry["name"])
    for name in _output_names(config.get("output_layers")):
        readers.setdefault(name, []).append(None)
    return readers, calls


def _only_reader(name, readers, calls, by_name):
    """The single layer (called once) that reads `name`'s output, or None."""
    found = readers.get(name, [])
    if len(found) != 1 or found[0] is None or calls.get(found[0]) != 1:
        return None
    return by_name[found[0]]


def fold_plan(model):
    """`{id(groupnl layer): Fold}` for `model` and the models nested in it."""
    plan = {}
    readers, calls = _readers(model)
    by_name = {layer.name: layer for layer in model.layers}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            if _is_graph_model(layer):
                plan.update(fold_plan(layer))
            continue
        if not isinstance(layer, BaseGroupNLConv) or calls.get(layer.name) != 1:
            continue
        bn = _only_reader(layer.name, readers, calls, by_name)
        if not isinstance(bn, keras.layers.BatchNormalization):
            continue
        affine = batch_norm_affine(bn)
        if affine is None:
            continue
        act = _only_reader(bn.name, readers, calls, by_name)
        kind = activation_kind(act) if act is not None else None
        names = (bn.name,) + ((act.name,) if kind else ())
        plan[id(layer)] = Fold(affine[0], affine[1], kind, names)
        plan[id(bn)] = None
        if kind:
            plan[id(act)] = None
    return plan


def _any_layer(model, replace):
    """Whether `replace` replaces any layer of `model` (nested included)."""
    for layer in getattr(model, "layers", []):
        if replace(layer) is not None or _any_layer(layer, replace):
            return True
    return False


def _is_graph_model(model):
    """Functional or Sequential: the models `clone_model` can rebuild."""
    if isinstance(model, keras.Sequential):
        return True
    try:
        config = model.get_config()
    except NotImplementedError:
        return False
    return isinstance(config, dict) and "input_layers" in config


def all_layers(model):
    """Every layer of `model`, nested models' layers included."""
    found = []
    for layer in getattr(model, "layers", []):
        found.append(layer)
        found.extend(all_layers(layer))
    return found


def groupnl_layers(model):
    """Every GroupNL layer of `model`, nested models included."""
    found = []
    for layer in getattr(model, "layers", []):
        if isinstance(layer, BaseGroupNLConv):
            found.append(layer)
        elif hasattr(layer, "layers"):
            found.extend(groupnl_layers(layer))
    return found


def export_copy(model, make_layer, fold=True, replace=None):
    """A copy of `model` whose GroupNL layers are target deploy layers.

    Every deploy layer is checked against the layer it replaces (on random
    inputs, without its fold) before it is used.

    Args:
        model: a Functional or Sequential Keras model (nested ones too).
        make_layer: `make_layer(form, fold)` -> a `DeployedGroupNL`.
        fold: whether to fold BatchNormalization / activation layers.
        replace: optional `replace(layer)` -> a layer to use instead of
            another (not GroupNL) layer, or `None` to keep it.

    Returns:
        `(copy, deployed)`: the copy and its deploy layers, in model order.
    """
    replace = replace or (lambda layer: None)
    if not groupnl_layers(model) and not _any_layer(model, replace):
        return model, []
    if not _is_graph_model(model):
        raise ConversionError(
            f"Model '{model.name}' is a subclassed model: its GroupNL layers "
            "can be exported only from a Functional or Sequential model, "
            "whose graph Keras can rebuild around their deploy form. "
            "Rebuild the model with the Functional API (keras.Model(inputs, "
            "outputs)), then convert it."
        )
    plan = fold_plan(model) if fold else {}
    deployed = []

    def clone(layer):
        if isinstance(layer, BaseGroupNLConv):
            try:
                form = layer.deploy_form()
            except ValueError as error:
                raise ConversionError(str(error), layer=layer.name) from None
            deploy = make_layer(form, plan.get(id(layer)))
            _check_deploy_layer(layer, deploy)
            deployed.append(deploy)
            return deploy
        if id(layer) in plan:
            return _Folded(name=layer.name)
        return replace(layer) or layer

    try:
        copy = keras.models.clone_model(
            model, clone_function=clone, recursive=True
        )
    except ValueError as error:
        if isinstance(error, ConversionError):
            raise
        raise ConversionError(
            f"Model '{model.name}' could not be rebuilt with the deploy form "
            f"of its GroupNL layers: {error}"
        ) from None
    return copy, deployed


class _Folded(keras.layers.Layer):
    """Stands in for a layer that a deploy layer has folded in."""

    def call(self, inputs, training=None, mask=None):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape


def _check_deploy_layer(layer, deploy):
    """Refuses a deploy layer that does not compute what `layer` does."""
    form = deploy.form
    extent = [
        (k - 1) * d + 1 + s
        for k, d, s in zip(
            form.kernel.shape[:2], form.dilation_rate, form.strides
        )
    ]
    # Batch 1, as exported: the lookup graph reshapes to 3-D.
    shape = (1, max(8, extent[0]), max(8, extent[1]), layer.in_channels)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    expected = keras.ops.convert_to_numpy(layer(x)).astype(np.float32)
    actual = np.asarray(deploy.unfolded(x), np.float32)
    if expected.shape != actual.shape or not np.allclose(
        expected, actual, atol=2e-4, rtol=1e-3
    ):
        difference = (
            f"max difference {np.max(np.abs(expected - actual)):.3g}"
            if expected.shape == actual.shape
            else f"shape {actual.shape} instead of {expected.shape}"
        )
        raise ConversionError(
            f"Layer '{layer.name}': its deploy form does not reproduce the "
            f"layer ({difference}); refusing to convert a model that would "
            "compute something else.",
            layer=layer.name,
        )


class DeployedGroupNL(keras.layers.Layer):
    """Base of the targets' deploy layers (TensorFlow backend only).

    Holds the layer's `GroupNLDeployForm` and its `Fold`, and computes the
    seed conv; a target subclass implements `generate(y)` (everything after
    the seed conv) and `apply_fold(out)` with the TensorFlow ops its runtime
    runs best, and names what it emits in `variant`. The layer
    keeps the name of the GroupNL layer it replaces, so converted ops still
    name it.
    """

    # Set to True to compute without quantization hints (fake-quant
    # nodes), e.g. to check the layer against the original in float.
    exact = False

    def __init__(self, form, fold=None, **kwargs):
        super().__init__(name=form.name, **kwargs)
        self.form = form
        self.fold = fold

    # The widest block of depthwise channels one 1x1 summation covers in a
    # grouped seed conv (see `depthwise_and_summation`); `None`: one dense
    # 1x1 conv over all of them.
    summation_block_width = None

    def seed_conv(self, x):
        """The seed conv; a grouped one as a depthwise conv and a sum.

        Grouped convs with few channels per group miss the fast kernels of
        both runtimes: XNNPACK ran one 5x slower than a depthwise conv plus
        a 1x1 conv summing each group's depthwise outputs (0.8x a plain
        depthwise block at 16x16x96), and CMSIS-NN has no grouped fast
        path, so a sparse seed conv is written that way, as the sparse
        layer itself computes it.
        """
        import tensorflow as tf

        form = self.form
        strides = (1,) + tuple(form.strides) + (1,)
        padding = form.padding.upper()
        if form.groups == 1:
            y = tf.nn.conv2d(
                x,
                tf.constant(form.kernel),
                strides=strides,
                padding=padding,
                dilations=(1,) + tuple(form.dilation_rate) + (1,),
            )
        else:
            kernel, summation = depthwise_and_summation(
                form, self.summation_block_width
            )
            y = tf.nn.depthwise_conv2d(
                x,
                kernel,
                strides=strides,
                padding=padding,
                dilations=tuple(form.dilation_rate),
            )
            if form.kernel.shape[2] > 1:
                # With one input channel per group the depthwise outputs
                # are the seed maps already (the summation is identity).
                y = tf.nn.conv2d(y, summation, 1, "VALID")
        if form.bias is not None:
            y = tf.nn.bias_add(y, tf.constant(form.bias))
        return y

    def generate(self, y):
        """The layer output from the seed maps `y` (before any fold)."""
        raise NotImplementedError

    def apply_fold(self, out):
        """`activation(scale * out + shift)` of the fold."""
        raise NotImplementedError

    def call(self, x):
        out = self.generate(self.seed_conv(x))
        return out if self.fold is None else self.apply_fold(out)

    def unfolded(self, x):
        """The GroupNL layer alone, computed exactly (no fold, no hints)."""
        self.exact = True
        try:
            return self.generate(self.seed_conv(x))
        finally:
            self.exact = False

    def compute_output_shape(self, input_shape):
        form = self.form
        rows, cols = (
            conv_output_length(length, k, s, d, form.padding)
            for length, k, s, d in zip(
                input_shape[1:3],
                form.kernel.shape[:2],
                form.strides,
                form.dilation_rate,
            )
        )
        return (input_shape[0], rows, cols, form.filters)


def depthwise_and_summation(form, block_width=None):
    """The grouped seed kernel as a depthwise kernel `(rows, cols, in,
    multiplier)` and a 1x1 0/1 summation kernel: one dense 1x1 conv, or
    with `block_width` a grouped one whose groups span at most that many
    depthwise channels."""
    rows, cols, group_in, seeds = form.kernel.shape
    groups = form.groups
    multiplier = seeds // groups
    kernel = form.kernel.reshape(rows, cols, group_in, groups, multiplier)
    kernel = kernel.transpose(0, 1, 3, 2, 4)
    kernel = kernel.reshape(rows, cols, group_in * groups, multiplier)
    block_groups = (
        groups
        if block_width is None
        else sum_block_groups(groups, group_in, multiplier, block_width)
    )
    block = summation_matrix(block_groups, group_in, multiplier)
    # One copy of the block matrix per group of the 1x1 conv.
    summation = np.tile(block, (1, groups // block_groups))
    return (
        np.ascontiguousarray(kernel, np.float32),
        summation.reshape((1, 1) + block.shape[:1] + (seeds,)),
    )
