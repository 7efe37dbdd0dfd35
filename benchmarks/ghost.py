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
    """A Ghost module standing in for a `Conv2D` (no bias, "same").

    The primary conv has the replaced conv's kernel and strides and makes
    `ceil(filters / ratio)` maps; a 3x3 depthwise conv (multiplier
    `ratio - 1`, stride 1) makes the ghost maps; the output is both,
    concatenated and cut to `filters`.
    """

    def __init__(self, filters, kernel_size, strides, ratio, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(ratio, int) or ratio < 2:
            raise ValueError(
                f"`ratio` must be an integer >= 2. Received: ratio={ratio!r}"
            )
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.ratio = ratio
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

    def build(self, input_shape):
        self.primary.build(input_shape)
        self.cheap.build(self.primary.compute_output_shape(input_shape))

    def call(self, inputs):
        intrinsic = self.primary(inputs)
        ghost = self.cheap(intrinsic)
        outputs = keras.ops.concatenate([intrinsic, ghost], axis=-1)
        return outputs[..., : self.filters]

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
        }


def ghost_twin(plain, names, ratio):
    """`plain` with the convs named in `names` as Ghost modules."""
    names = set(names)

    def clone(layer):
        if layer.name not in names:
            return layer
        config = layer.get_config()
        return GhostConv2D(
            config["filters"],
            tuple(config["kernel_size"]),
            tuple(config["strides"]),
            ratio,
            name=layer.name,
        )

    twin = keras.models.clone_model(plain, clone_function=clone)
    twin.name = f"ghost_r{ratio}_{plain.name}"
    return twin
