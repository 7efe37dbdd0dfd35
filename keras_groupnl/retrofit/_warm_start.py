"""Warm start: the seed kernel of a GroupNL layer from the conv it replaces.

`Conv2D` -> GroupNL: the seed conv starts as the conv's first
`s = ceil(filters / r)` filters, with their biases; a sparse seed conv
keeps of each filter the taps on the input channels of its group. Why the
first: a GroupNL layer puts its seed maps at output channels `0 .. s-1`,
and the layers after it, whose weights are kept, read channel `c` as the
feature of filter `c`. The first filters keep those channels meaning what
the next layers expect (up to the normalisation across the seed
channels). Measured on the example's CNN (Fashion-MNIST, two seeds, one
epoch of fine-tuning; `docs/to_groupnl.md`), the first filters beat the
`s` filters of largest L2 norm (which land on channels the next layers
read as other features) by 1.4-1.7 points, and a fresh initialisation by
2.5-2.7 points.

`DepthwiseConv2D` -> `SparseGroupNLConv2D`: seed `j` of group `g` sees the
`in_channels / groups` input channels of that group. Each of those input
channels is given to one seed of its group (in order, as evenly as
possible) with the depthwise filter it had, so seed `j` starts as the sum
of the depthwise outputs of its channels (biases summed too); the other
taps start at zero.
"""

import keras
import numpy as np


def seed_weights(replacement, conv):
    """`(kernel, bias, chosen)`: the warm-start weights of a replacement.

    `bias` is `None` without one; `chosen` the source filter indices (a
    `Conv2D`) or `None` (a `DepthwiseConv2D`).
    """
    kernel = keras.ops.convert_to_numpy(conv.kernel).astype("float32")
    bias = None
    if conv.use_bias:
        bias = keras.ops.convert_to_numpy(conv.bias).astype("float32")
    seeds, groups = replacement.seed_channels, replacement.conv_groups
    if isinstance(conv, keras.layers.DepthwiseConv2D):
        return (*_from_depthwise(kernel[..., 0], bias, seeds, groups), None)
    chosen = np.arange(seeds)
    seed_kernel = _grouped(kernel[..., chosen], groups)
    return seed_kernel, None if bias is None else bias[chosen], chosen


def _grouped(kernel, groups):
    """Of each filter, the taps on the input channels of its group.

    `(rows, cols, in, seeds)` -> `(rows, cols, in // groups, seeds)`, the
    layout of `Conv2D(groups=groups)`: seed `j` is in group
    `j // (seeds // groups)`.
    """
    if groups == 1:
        return kernel
    rows, cols, channels, seeds = kernel.shape
    per_group = kernel.reshape(
        rows, cols, groups, channels // groups, groups, seeds // groups
    )
    diagonal = np.einsum("abgigo->abigo", per_group)
    return diagonal.reshape(rows, cols, channels // groups, seeds)


def _from_depthwise(kernel, bias, seeds, groups):
    """Seed kernel and bias from a `(rows, cols, channels)` depthwise kernel."""
    rows, cols, channels = kernel.shape
    group_in, multiplier = channels // groups, seeds // groups
    seed_kernel = np.zeros((rows, cols, group_in, seeds), "float32")
    seed_bias = None if bias is None else np.zeros(seeds, "float32")
    starts = np.arange(groups)
    for i in range(group_in):
        targets = starts * multiplier + i * multiplier // group_in
        sources = starts * group_in + i
        seed_kernel[:, :, i, targets] = kernel[:, :, sources]
        if bias is not None:
            seed_bias[targets] += bias[sources]
    return seed_kernel, seed_bias
