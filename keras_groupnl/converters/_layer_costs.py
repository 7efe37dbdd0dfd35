"""Which GroupNL layers pay on the target: a per-layer deployment table.

A GroupNL layer saves convolution MACs and adds a tail (normalisation,
sinusoids). On a phone the tail is float work that XNNPACK runs after an
int8 conv; on a microcontroller it is the fused op or TFLite Micro's
builtins. Whether a layer pays depends on its shape and on the runtime: in
a model as small as ResNet-8 at 32x32 most layers do not on a phone, while
the wide layers of ResNet-18 do. `layer_costs(model, target, ...)` converts
every GroupNL layer of a model alone (with the BatchNorm and ReLU that
follow it, as the converters fold them) and the convolution it replaces
(the same filters, kernel, strides and padding, with the same BatchNorm
and ReLU), at the layer's own input shape, the same way, and measures both
side by side: LiteRT latency for `"phone"` (interleaved), estimated
Cortex-M instructions for `"mcu"` (the cost model of the report). Layers
whose ratio is above 1 cost more than the convolution they replaced: keep
them plain with `keras_groupnl.to_groupnl(plain_model, exclude=...)`.
"""

import dataclasses
import tempfile
import typing

import numpy as np

# Keras, TensorFlow and the layers are imported where used: importing
# `keras_groupnl.converters` stays light (the CLI's usage errors need it).


@dataclasses.dataclass
class LayerCost:
    """One GroupNL layer against the convolution it replaced.

    Attributes:
        layer: the GroupNL layer's name.
        input_shape: its input, without the batch axis.
        folded: the layers converted with it (BatchNorm, activation).
        groupnl, conv: the measure of each (`"ms"` on a phone; estimated
            instructions per Cortex-M target on a microcontroller).
        ratios: GroupNL / conv per measure.
    """

    layer: str
    input_shape: typing.Tuple[int, ...]
    folded: typing.List[str]
    groupnl: typing.Dict[str, float]
    conv: typing.Dict[str, float]
    ratios: typing.Dict[str, float]

    def pays(self, measure):
        return self.ratios[measure] < 1.0


@dataclasses.dataclass
class LayerCosts:
    """`layer_costs`' result: one `LayerCost` per GroupNL layer."""

    target: str
    measures: typing.List[str]
    layers: typing.List[LayerCost]
    machine: typing.Dict[str, typing.Any]

    def exclude(self, measure=None):
        """Names of the layers that do not pay on `measure` (default: the
        first), for `to_groupnl(..., exclude=...)`."""
        measure = measure or self.measures[0]
        return [c.layer for c in self.layers if not c.pays(measure)]

    def summary(self):
        """The table as Markdown."""
        header = ["layer", "input"] + [
            f"{m}: GroupNL / conv" for m in self.measures
        ]
        lines = [
            "| " + " | ".join(header) + " |",
            "|" + "---|" * 2 + "---:|" * len(self.measures),
        ]
        for c in self.layers:
            cells = [
                f"{_number(c.groupnl[m])} / {_number(c.conv[m])} = "
                f"{c.ratios[m]:.2f}x" + ("" if c.pays(m) else " (costs)")
                for m in self.measures
            ]
            shape = "x".join(str(d) for d in c.input_shape)
            lines.append(f"| {c.layer} | {shape} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def _number(value):
    return f"{value:.3f}" if value < 1000 else f"{value:,.0f}"


def _replaced_conv(layer, in_channels):
    """The standard conv a GroupNL layer stands for."""
    import keras

    from keras_groupnl.layers import GroupNLConv2D

    common = dict(
        strides=layer.strides,
        padding=layer.padding,
        dilation_rate=layer.dilation_rate,
        use_bias=layer.use_bias,
        name=f"{layer.name}_conv",
    )
    depthwise = (
        not isinstance(layer, GroupNLConv2D) and layer.filters == in_channels
    )
    if depthwise:
        return keras.layers.DepthwiseConv2D(layer.kernel_size, **common)
    return keras.layers.Conv2D(layer.filters, layer.kernel_size, **common)


def _pair(model, layer, folded):
    """The GroupNL layer (and its folded layers) alone, and its conv twin."""
    import keras

    from keras_groupnl.converters import _deploy

    shape = tuple(int(d) for d in layer.input.shape[1:])
    by_name = {lay.name: lay for lay in _deploy.all_layers(model)}

    def head(first):
        inputs = keras.Input(shape)
        x = first(inputs)
        for name in folded:
            original = by_name[name]
            copy = original.__class__.from_config(original.get_config())
            x = copy(x)
            copy.set_weights(original.get_weights())
        return keras.Model(inputs, x)

    groupnl = layer.__class__.from_config(layer.get_config())
    ours = head(groupnl)
    groupnl.set_weights(layer.get_weights())
    return shape, ours, head(_replaced_conv(layer, shape[-1]))


def layer_costs(
    model, target="phone", samples=16, seed=0, mcu_kernel="builtin"
):
    """Every GroupNL layer of `model` against the conv it replaced.

    Args:
        model: a Functional or Sequential Keras model with GroupNL layers
            (TensorFlow backend: the layers are converted in this process).
        target: `"phone"` (LiteRT latency, XNNPACK, 1 thread, this CPU) or
            `"mcu"` (estimated Cortex-M instructions).
        samples: random samples that calibrate each pair.
        seed: seed of the random samples.
        mcu_kernel: `"mcu"` only: the GroupNL tail measured, as in
            `convert` (`"builtin"`, `"fused"` or `"fused_channel_tables"`);
            the answer differs: with CMSIS-NN the builtin tail costs more
            than the fused op (docs/results.md).

    Returns:
        A `LayerCosts`; `.summary()` is the table, `.exclude()` the layers
        that cost more than their conv.
    """
    from keras_groupnl.analysis.machine import describe_machine
    from keras_groupnl.converters import _deploy
    from keras_groupnl.converters._convert import convert

    if target not in ("phone", "mcu"):
        raise ValueError(
            f"`target` must be 'phone' or 'mcu'. Received: target={target!r}"
        )
    plan = _deploy.fold_plan(model)
    rng = np.random.default_rng(seed)
    costs, measures = [], None
    for layer in _deploy.groupnl_layers(model):
        fold = plan.get(id(layer))
        folded = list(fold.layers) if fold else []
        shape, ours, conv = _pair(model, layer, folded)
        x = rng.standard_normal((samples,) + shape).astype("float32")
        with tempfile.TemporaryDirectory() as out:
            report = convert(
                ours,
                target,
                x,
                out,
                compare_with=conv,
                calibration_samples=samples,
                verification_samples=2,
                verbose=0,
                mcu_kernel=mcu_kernel,
            ).report
        mine, theirs = _measures(report)
        measures = list(mine)
        costs.append(
            LayerCost(
                layer=layer.name,
                input_shape=shape,
                folded=folded,
                groupnl=mine,
                conv=theirs,
                ratios={m: mine[m] / theirs[m] for m in mine},
            )
        )
    return LayerCosts(
        target,
        measures or [],
        costs,
        describe_machine(tensorflow=True).to_dict(),
    )


def _measures(report):
    """`(ours, twin)`: `{measure: value}` of a report with a comparison."""
    twin = report.comparison
    if report.target == "phone":
        return (
            {"litert ms": report.latency["litert"].median_ms},
            {"litert ms": twin.latency["litert"].median_ms},
        )
    return (
        {k: v["instructions"] for k, v in report.cortex_m.items()},
        {k: v["instructions"] for k, v in twin.cortex_m.items()},
    )
