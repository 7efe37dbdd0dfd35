"""Ghost twins: the established cheap-feature baseline, for the benchmarks.

The Ghost module of GhostNet (Han et al., CVPR 2020) makes `m / r` intrinsic
maps with a primary conv and the rest with a cheap depthwise conv (3x3,
depth multiplier `r - 1`) of them, concatenated. `ghost_twin(plain, names,
r)` rebuilds a plain model with every conv named in `names` (the convs a
GroupNL model of the same builder replaces) as a `GhostConv2D`, so that the
benchmarks put GroupNL, Ghost and plain side by side through the same
converters. Written for this benchmark from the paper's description; it is
not part of the package.
"""

import math

import keras


class GhostConv2D(keras.layers.Layer):
    """A Ghost module standing in for a `Conv2D` and its BatchNorm.

    The primary conv has the replaced conv's kernel and strides and makes
    `ceil(filters / ratio)` maps, followed by a BatchNorm; a 3x3 depthwise
    conv (multiplier `ratio - 1`, stride 1) makes the ghost maps from them,
    followed by its BatchNorm; the output is both, concatenated (and cut to
    `filters`), as GhostNet's module; with `relu=True` each branch ends in
    a ReLU, as in GhostNet. Each BatchNorm (and ReLU) fuses into its conv
    when converted, as the ones after the replaced conv did.
    """

    def __init__(
        self, filters, kernel_size, strides, ratio, relu=False, **kwargs
    ):
        super().__init__(**kwargs)
        if not isinstance(ratio, int) or ratio < 2:
            raise ValueError(
                f"`ratio` must be an integer >= 2. Received: ratio={ratio!r}"
            )
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.ratio = ratio
        self.relu = relu
        self.primary = keras.layers.Conv2D(
            math.ceil(filters / ratio),
            kernel_size,
            strides=strides,
            padding="same",
            use_bias=False,
            name="primary",
        )
        self.cheap = keras.layers.DepthwiseConv2D(
            3,
            padding="same",
            depth_multiplier=ratio - 1,
            use_bias=False,
            name="cheap",
        )
        self.primary_bn = keras.layers.BatchNormalization(name="primary_bn")
        self.cheap_bn = keras.layers.BatchNormalization(name="cheap_bn")

    def build(self, input_shape):
        self.primary.build(input_shape)
        shape = self.primary.compute_output_shape(input_shape)
        self.primary_bn.build(shape)
        self.cheap.build(shape)
        self.cheap_bn.build(self.cheap.compute_output_shape(shape))

    def call(self, inputs, training=None):
        intrinsic = self.primary_bn(self.primary(inputs), training=training)
        if self.relu:
            intrinsic = keras.ops.relu(intrinsic)
        ghost = self.cheap_bn(self.cheap(intrinsic), training=training)
        if self.relu:
            ghost = keras.ops.relu(ghost)
        outputs = keras.ops.concatenate([intrinsic, ghost], axis=-1)
        if outputs.shape[-1] != self.filters:
            outputs = outputs[..., : self.filters]
        return outputs

    def compute_output_shape(self, input_shape):
        shape = self.primary.compute_output_shape(input_shape)
        return shape[:-1] + (self.filters,)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "ratio": self.ratio,
            "relu": self.relu,
        }


class Absorbed(keras.layers.Layer):
    """Stands in for a BatchNorm (or ReLU) a Ghost module brings itself."""

    def call(self, inputs, training=None, mask=None):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape


def ghost_twin(plain, names, ratio):
    """`plain` rebuilt (fresh weights) with the convs named in `names` as
    Ghost modules, which bring their own BatchNorms (and ReLUs): the
    BatchNorm and ReLU after a replaced conv (`<name>_bn`, `<name>_relu` for
    `<name>_conv`, the applications' naming) become identities."""
    names = set(names)
    stems = {n[: -len("_conv")] for n in names if n.endswith("_conv")}
    present = {layer.name for layer in plain.layers}
    absorbed = {f"{stem}_bn" for stem in stems} | {
        f"{stem}_relu" for stem in stems if f"{stem}_relu" in present
    }

    def clone(layer):
        if layer.name in absorbed:
            return Absorbed(name=layer.name)
        if layer.name not in names:  # A fresh copy: no layer is shared.
            return layer.__class__.from_config(layer.get_config())
        config = layer.get_config()
        stem = layer.name[: -len("_conv")]
        return GhostConv2D(
            config["filters"],
            tuple(config["kernel_size"]),
            tuple(config["strides"]),
            ratio,
            relu=f"{stem}_relu" in absorbed,
            name=layer.name,
        )

    twin = keras.models.clone_model(plain, clone_function=clone)
    twin.name = f"ghost_r{ratio}_{plain.name}"
    return twin
