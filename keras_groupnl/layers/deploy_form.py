"""What a GroupNL layer computes, as constants, for export to other runtimes.

A trained GroupNL layer is a fixed function. `GroupNLConv2D.deploy_form()`
returns it as a `GroupNLDeployForm`: NumPy arrays and integers that say
exactly what the layer computes, so that a converter can rebuild it from
whatever operators its runtime offers, without reading the layer's code.
"""

import dataclasses

import numpy as np

# The floor of the L2 norm in `y / max(||y||_2, epsilon)`.
NORM_EPSILON = 1e-12


@dataclasses.dataclass(frozen=True, eq=False)
class GroupNLDeployForm:
    """The function a built GroupNL layer computes (channels-last).

    For an input `x` of shape `(batch, rows, cols, in_channels)`:

        y = conv2d(x, kernel, strides, padding, dilation_rate, groups) + bias
        u = y / max(||y||_2 over the channels, NORM_EPSILON)
        output[..., :s] = u
        output[..., s + j] = sin(period[j] * (u[..., source[j]] - shift[j]))

    with `s = seed_channels`. Generated channel `j` uses the NLF of copy
    `copy[j]` of NLF group `group_of_channel[source[j]]`; the NLF tables
    `periods` and `shifts` have shape `(num_copies, num_groups)`, so every
    NLF is shared by all the seed channels of its group.

    Attributes:
        name: the layer's name.
        kernel: float32 `(rows, cols, in_channels // groups, s)`, the seed
            kernel in the layout of `Conv2D(groups=...)`.
        bias: float32 `(s,)` or `None`.
        groups: number of groups of the seed conv (1 for `GroupNLConv2D`).
        strides, dilation_rate: pairs of ints.
        padding: `"same"` or `"valid"`.
        periods, shifts: float32 `(num_copies, num_groups)` NLF tables.
        group_of_channel: int `(s,)`, the NLF group of every seed channel.
        source: int `(generated,)`, the seed channel of every generated one.
        copy: int `(generated,)`, the copy of every generated channel.
        shuffle: whether copies are interleaved (`source = j // copies`)
            rather than stacked (`source = j % s`).
    """

    name: str
    kernel: np.ndarray
    bias: np.ndarray
    groups: int
    strides: tuple
    padding: str
    dilation_rate: tuple
    periods: np.ndarray
    shifts: np.ndarray
    group_of_channel: np.ndarray
    source: np.ndarray
    copy: np.ndarray
    shuffle: bool

    @property
    def seed_channels(self):
        return int(self.kernel.shape[-1])

    @property
    def generated_channels(self):
        return int(len(self.source))

    @property
    def filters(self):
        return self.seed_channels + self.generated_channels

    @property
    def num_copies(self):
        return int(self.periods.shape[0])

    @property
    def num_groups(self):
        return int(self.periods.shape[1])

    @property
    def period(self):
        """float32 `(generated,)`: `T` of every generated channel."""
        return self.periods[self.copy, self.group_of_channel[self.source]]

    @property
    def shift(self):
        """float32 `(generated,)`: `phi` of every generated channel."""
        return self.shifts[self.copy, self.group_of_channel[self.source]]

    def group_slices(self):
        """`[(start, stop)]` of the seed channels of every NLF group."""
        sizes = np.bincount(self.group_of_channel, minlength=self.num_groups)
        stops = np.cumsum(sizes)
        return [(int(b - n), int(b)) for b, n in zip(stops, sizes)]


def make_deploy_form(layer):
    """The `GroupNLDeployForm` of a built GroupNL layer."""
    if not layer.built:
        raise ValueError(
            f"Layer '{layer.name}' is not built: call it on data (or build "
            "its model) before asking for its deploy form."
        )
    if layer.data_format != "channels_last":
        raise ValueError(
            f"Layer '{layer.name}': the deploy form is channels-last, as "
            "TFLite is. Received: data_format='channels_first'"
        )

    def array(variable):
        import keras

        return np.asarray(keras.ops.convert_to_numpy(variable), np.float32)

    empty = np.zeros((0, layer.num_groups), np.float32)
    pair = layer.nlf_pair_index()
    return GroupNLDeployForm(
        name=layer.name,
        kernel=array(layer.kernel),
        bias=array(layer.bias) if layer.use_bias else None,
        groups=int(layer.conv_groups),
        strides=tuple(layer.strides),
        padding=layer.padding,
        dilation_rate=tuple(layer.dilation_rate),
        periods=array(layer.nlf_period) if layer.num_copies else empty,
        shifts=array(layer.nlf_shift) if layer.num_copies else empty,
        group_of_channel=np.asarray(layer.group_of_channel, np.int64),
        source=np.asarray(layer.nlf_source_channels(), np.int64),
        copy=np.asarray(pair // layer.num_groups, np.int64),
        shuffle=bool(layer.shuffle),
    )
