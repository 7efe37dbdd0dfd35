"""An independent NumPy implementation of GroupNL convolution, for tests.

Written from the method's description (design notes, section 1), not from
the layer code: it imports nothing from `keras_groupnl`. Everything is
computed in float64, channels_last (NHWC); callers transpose for
channels_first.
"""

import math

import numpy as np

NORM_EPSILON = 1e-12


def _pair(value):
    if isinstance(value, int):
        return (value, value)
    value = tuple(value)
    assert len(value) == 2
    return value


def conv_output_size(length, kernel_size, stride, dilation, padding):
    """Output length of one spatial axis, TF's rules."""
    effective = dilation * (kernel_size - 1) + 1
    if padding == "same":
        return -(-length // stride)
    if padding == "valid":
        return max(0, (length - effective) // stride + 1)
    raise ValueError(padding)


def same_padding(length, kernel_size, stride, dilation):
    """(before, after) zero padding of TF's 'same': before = total // 2."""
    effective = dilation * (kernel_size - 1) + 1
    out = -(-length // stride)
    total = max((out - 1) * stride + effective - length, 0)
    return total // 2, total - total // 2


def conv2d(
    x, kernel, bias=None, strides=1, padding="valid", dilation_rate=1, groups=1
):
    """Grouped 2D convolution (cross-correlation), NHWC.

    Args:
        x: array `(batch, rows, cols, in_channels)`.
        kernel: array `(kh, kw, in_channels // groups, out_channels)`, the
            layout of `keras.layers.Conv2D(groups=...)`: output channel `o`
            belongs to group `o // (out_channels // groups)` and sees the
            input channels of that group.
        bias: optional array `(out_channels,)`.
        strides, dilation_rate: int or pair.
        padding: "valid" or "same" (TF convention).
        groups: int, divides both channel counts.

    Returns:
        float64 array `(batch, out_rows, out_cols, out_channels)`.
    """
    x = np.asarray(x, dtype=np.float64)
    kernel = np.asarray(kernel, dtype=np.float64)
    sh, sw = _pair(strides)
    dh, dw = _pair(dilation_rate)
    kh, kw, group_in, out_channels = kernel.shape
    batch, rows, cols, in_channels = x.shape
    if in_channels % groups or out_channels % groups:
        raise ValueError("groups must divide the channel counts")
    if group_in != in_channels // groups:
        raise ValueError(
            f"kernel has {group_in} input channels per group, expected "
            f"{in_channels // groups}"
        )
    out_rows = conv_output_size(rows, kh, sh, dh, padding)
    out_cols = conv_output_size(cols, kw, sw, dw, padding)
    if padding == "same":
        pad_rows = same_padding(rows, kh, sh, dh)
        pad_cols = same_padding(cols, kw, sw, dw)
        x = np.pad(x, ((0, 0), pad_rows, pad_cols, (0, 0)))
    group_out = out_channels // groups
    out = np.zeros((batch, out_rows, out_cols, out_channels))
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dh, j * dw
            patch = x[
                :,
                r0 : r0 + (out_rows - 1) * sh + 1 : sh,
                c0 : c0 + (out_cols - 1) * sw + 1 : sw,
                :,
            ]
            for g in range(groups):
                xin = patch[..., g * group_in : (g + 1) * group_in]
                w = kernel[i, j, :, g * group_out : (g + 1) * group_out]
                out[..., g * group_out : (g + 1) * group_out] += np.einsum(
                    "bhwc,co->bhwo", xin, w
                )
    if bias is not None:
        out = out + np.asarray(bias, dtype=np.float64)
    return out


def seed_channel_count(filters, reduction_ratio):
    return int(math.ceil(filters / reduction_ratio))


def nlf_group_of_seed_channel(seed_channels, num_groups):
    """Group of every seed channel, split as np.array_split does."""
    group = np.empty(seed_channels, dtype=np.int64)
    for g, members in enumerate(
        np.array_split(np.arange(seed_channels), num_groups)
    ):
        group[members] = g
    return group


def generated_channel_sources(filters, seed_channels, shuffle):
    """(seed channel, copy) of every generated channel, in output order."""
    generated = filters - seed_channels
    copies = -(-generated // seed_channels) if generated else 0
    sources = []
    for j in range(generated):
        if shuffle:
            sources.append((j // copies, j % copies))
        else:
            sources.append((j % seed_channels, j // seed_channels))
    return sources


def groupnl_reference(
    x,
    kernel,
    bias,
    periods,
    shifts,
    filters,
    reduction_ratio,
    num_groups,
    shuffle=False,
    groups=1,
    strides=1,
    padding="valid",
    dilation_rate=1,
):
    """GroupNL convolution, NHWC, float64.

    Args:
        x: input `(batch, rows, cols, in_channels)`.
        kernel: seed conv kernel `(kh, kw, in_channels // groups, s)`,
            `s = ceil(filters / reduction_ratio)`.
        bias: `None` or `(s,)`, added before normalising.
        periods, shifts: `(copies, num_groups)` NLF tables (ignored when no
            channel is generated): copy `k` of group `g` computes
            `sin(periods[k, g] * (u - shifts[k, g]))`.
        filters, reduction_ratio, num_groups, shuffle: as in the layer.
        groups: the number of groups of the seed conv.
        strides, padding, dilation_rate: of the seed conv.

    Returns:
        float64 array `(batch, out_rows, out_cols, filters)`.
    """
    s = seed_channel_count(filters, reduction_ratio)
    if kernel.shape[-1] != s:
        raise ValueError(f"kernel makes {kernel.shape[-1]} maps, expected {s}")
    seeds = conv2d(
        x,
        kernel,
        bias=bias,
        strides=strides,
        padding=padding,
        dilation_rate=dilation_rate,
        groups=groups,
    )
    norm = np.sqrt(np.sum(seeds**2, axis=-1, keepdims=True))
    u = seeds / np.maximum(norm, NORM_EPSILON)
    sources = generated_channel_sources(filters, s, shuffle)
    if not sources:
        return u
    group = nlf_group_of_seed_channel(s, num_groups)
    periods = np.asarray(periods, dtype=np.float64)
    shifts = np.asarray(shifts, dtype=np.float64)
    generated = []
    for channel, copy in sources:
        t = periods[copy, group[channel]]
        phi = shifts[copy, group[channel]]
        generated.append(np.sin(t * (u[..., channel] - phi)))
    return np.concatenate([u, np.stack(generated, axis=-1)], axis=-1)
