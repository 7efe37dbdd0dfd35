"""The sparse GroupNL convolution layer (grouped seed conv)."""

import math

import keras
import numpy as np
from keras import ops

from keras_groupnl.layers import kernel_support
from keras_groupnl.layers.base_group_nl_conv import BaseGroupNLConv


@keras.saving.register_keras_serializable(package="keras_groupnl")
class SparseGroupNLConv2D(BaseGroupNLConv):
    """2D GroupNL convolution whose seed conv is a grouped convolution.

    Same as `GroupNLConv2D`, except that the seed conv has
    `gcd(in_channels, seed_channels)` groups, where
    `seed_channels = ceil(filters / reduction_ratio)`. With
    `filters == in_channels` every seed map sees `reduction_ratio` input
    channels, so the layer costs about as much as a depthwise conv: it is the
    GroupNL replacement of `DepthwiseConv2D` in inverted-residual blocks.

    The kernel has the layout of `keras.layers.Conv2D(groups=...)`:
    `(rows, cols, in_channels // groups, seed_channels)`. The grouped conv is
    computed as a depthwise conv followed by a sum over the input channels of
    each group (a matmul with a fixed 0/1 matrix), which is several times
    faster on CPU than a grouped conv.

    Args:
        filters: int, the number of output channels.
        kernel_size: int or tuple of 2 ints, the seed conv window.
        strides: int or tuple of 2 ints. Defaults to `1`.
        padding: `"valid"` or `"same"` (case-insensitive). Defaults to
            `"valid"`.
        dilation_rate: int or tuple of 2 ints. Defaults to `1`.
        reduction_ratio: number >= 1, `r`: the seed conv makes
            `ceil(filters / r)` maps. Defaults to `2`.
        num_groups: int, the number of NLF channel groups (not the conv
            groups); at most the number of seed maps. Defaults to `4`.
        period_range: two increasing numbers, the range `T` is drawn from.
            Defaults to `(1.0, 2.0)`.
        shift_range: two increasing numbers, the range `phi` is drawn from.
            Defaults to `(1.0, 5.0)`.
        trainable_nlf: bool, whether `T` and `phi` are trained. Defaults to
            `False`.
        shuffle: bool, interleave the copies of each seed map in the output.
            Defaults to `False`.
        use_bias: bool, add a bias to the seed maps before normalising them.
            Defaults to `False`.
        data_format: `"channels_last"` or `"channels_first"`. Defaults to
            `keras.config.image_data_format()`.
        kernel_initializer: initializer of the seed kernel. Defaults to
            `"glorot_uniform"`.
        bias_initializer: initializer of the bias. Defaults to `"zeros"`.
        kernel_regularizer: optional regularizer of the seed kernel.
        bias_regularizer: optional regularizer of the bias.
        kernel_constraint: optional constraint on the seed kernel.
        bias_constraint: optional constraint on the bias.
        seed: int or `None`, the seed of the NLF parameters (see
            `GroupNLConv2D`).
        **kwargs: base layer keyword arguments (`name`, `dtype`, ...).

    A saved model holding this layer loads after `import
    keras_groupnl.layers` (which registers the layer with Keras).

    Input shape:
        4D tensor, as for `GroupNLConv2D`. The number of input channels must
        share a factor greater than 1 with the number of seed maps.

    Output shape:
        4D tensor, as for `GroupNLConv2D`.

    Example:

    >>> x = np.random.rand(2, 16, 16, 64).astype("float32")
    >>> y = SparseGroupNLConv2D(64, 3, padding="same", seed=1)(x)
    >>> y.shape
    (2, 16, 16, 64)
    """

    def _check_input_channels(self, in_channels):
        groups = math.gcd(in_channels, self.seed_channels)
        if groups == 1:
            raise ValueError(
                "SparseGroupNLConv2D groups its seed conv into "
                "gcd(in_channels, seed_channels) groups, which needs a common "
                "factor greater than 1; use GroupNLConv2D for this input. "
                f"Received: in_channels={in_channels} with "
                f"seed_channels={self.seed_channels} "
                f"(filters={self.filters}, "
                f"reduction_ratio={self.reduction_ratio})"
            )

    @property
    def conv_groups(self):
        """The number of groups of the seed conv, set when built."""
        return math.gcd(self.in_channels, self.seed_channels)

    def _seed_kernel_shape(self, in_channels):
        groups = math.gcd(in_channels, self.seed_channels)
        return self.kernel_size + (in_channels // groups, self.seed_channels)

    def _runs_as_depthwise(self):
        """Whether the seed conv runs as depthwise conv + summation (the
        fast route everywhere) or, lacking a depthwise kernel for unequal
        strides, as the grouped conv itself."""
        return (
            self.strides[0] == self.strides[1]
            or kernel_support.unequal_stride_depthwise_conv()
        )

    def _has_channels_first_kernel(self):
        if self._runs_as_depthwise():
            return kernel_support.channels_first_depthwise_conv()
        return kernel_support.channels_first_conv()

    def _seed_conv(self, inputs, data_format):
        if not self._runs_as_depthwise():
            # No depthwise kernel for these strides (TensorFlow on a CPU
            # without oneDNN): the grouped conv itself, as Keras'
            # `Conv2D(groups=...)` runs it.
            return ops.conv(
                inputs,
                self.kernel,
                strides=self.strides,
                padding=self.padding,
                data_format=data_format,
                dilation_rate=self.dilation_rate,
            )
        groups = self.conv_groups
        group_in = self.in_channels // groups
        multiplier = self.seed_channels // groups
        rows, cols = self.kernel_size
        # (rows, cols, group_in, groups * multiplier) ->
        # (rows, cols, groups * group_in, multiplier): depthwise channel
        # g * group_in + i then holds input channel i of group g.
        kernel = ops.reshape(
            self.kernel, (rows, cols, group_in, groups, multiplier)
        )
        kernel = ops.transpose(kernel, (0, 1, 3, 2, 4))
        kernel = ops.reshape(kernel, (rows, cols, self.in_channels, multiplier))
        outputs = ops.depthwise_conv(
            inputs,
            kernel,
            strides=self.strides,
            padding=self.padding,
            data_format=data_format,
            dilation_rate=self.dilation_rate,
        )
        if group_in == 1:
            return outputs
        # Depthwise output channel (g * group_in + i) * multiplier + o summed
        # over i gives seed channel g * multiplier + o. A reshape-and-sum
        # over that axis measured ~2x the depthwise conv itself on TF's CPU
        # kernels; a matmul with a fixed 0/1 matrix over blocks of groups
        # costs a fraction of it on every backend.
        block_groups = self._sum_block_groups()
        summation = self._summation_matrix(block_groups)
        width = summation.shape[0]
        summation = ops.cast(summation, outputs.dtype)
        blocks = groups // block_groups
        shape = ops.shape(outputs)
        if data_format == "channels_last":
            outputs = ops.reshape(outputs, (-1, width))
            outputs = ops.matmul(outputs, summation)
            return ops.reshape(
                outputs, (-1, shape[1], shape[2], self.seed_channels)
            )
        outputs = ops.reshape(outputs, (-1, blocks, width, shape[2], shape[3]))
        outputs = ops.einsum("nbkhw,kd->nbdhw", outputs, summation)
        return ops.reshape(
            outputs, (-1, self.seed_channels, shape[2], shape[3])
        )

    def _sum_block_groups(self):
        return sum_block_groups(
            self.conv_groups,
            self.in_channels // self.conv_groups,
            self.seed_channels // self.conv_groups,
        )

    def _summation_matrix(self, block_groups):
        return summation_matrix(
            block_groups,
            self.in_channels // self.conv_groups,
            self.seed_channels // self.conv_groups,
        )


def sum_block_groups(groups, group_in, multiplier, max_width=32):
    """How many conv groups one summation matmul covers.

    The grouped seed conv runs as a depthwise conv (multiplier
    `multiplier`) whose outputs are summed over each group's `group_in`
    input channels; one summation covers the largest divisor of `groups`
    whose block stays at most `max_width` depthwise channels wide: wide
    enough for an efficient matmul, narrow enough that the 0/1 matrix adds
    few FLOPs.
    """
    width = group_in * multiplier
    best = 1
    for b in range(1, groups + 1):
        if groups % b == 0 and b * width <= max_width:
            best = b
    return best


def summation_matrix(block_groups, group_in, multiplier):
    """The 0/1 matrix that sums each group's depthwise channels, for a
    block of `block_groups` groups."""
    block = np.ones((group_in, 1), dtype="float32")
    per_group = np.kron(block, np.eye(multiplier, dtype=block.dtype))
    return np.kron(np.eye(block_groups, dtype=block.dtype), per_group)
