"""Shared logic of the GroupNL convolution layers."""

import math
import random

import keras
import numpy as np
from keras import ops

from keras_groupnl import _validation
from keras_groupnl.layers import kernel_support
from keras_groupnl.layers.deploy_form import NORM_EPSILON as _NORM_EPSILON
from keras_groupnl.layers.deploy_form import make_deploy_form

# Bounds that keep a layer's bookkeeping and its float32 NLF arguments sane.
MAX_FILTERS = 2**20
MAX_NLF_RANGE = 1e4


def conv_output_length(length, kernel_size, stride, dilation, padding):
    """Spatial length after a convolution; `None` stays `None`."""
    if length is None:
        return None
    if padding == "same":
        return (length + stride - 1) // stride
    effective = dilation * (kernel_size - 1) + 1
    return max(0, (length - effective) // stride + 1)


class BaseGroupNLConv(keras.layers.Layer):
    """Base of `GroupNLConv2D` and `SparseGroupNLConv2D`.

    A seed convolution makes `seed_channels = ceil(filters / reduction_ratio)`
    maps. They are L2-normalised across channels at every pixel and form the
    first `seed_channels` output channels. The remaining
    `filters - seed_channels` channels are generated without any convolution:
    the seed maps are split into `num_groups` groups (as evenly as possible),
    every group is repeated, and every copy of every group passes through its
    own fixed sinusoid `sin(T * (x - phi))`, with `T` drawn uniformly from
    `period_range` and `phi` from `shift_range`.

    Generated channel `j` (counted from the first generated channel) comes from
    seed channel `j % seed_channels` and copy `j // seed_channels`; with
    `shuffle=True` it comes from seed channel `j // copies` and copy
    `j % copies` instead, which interleaves the copies of every seed map.

    Subclasses implement `_seed_kernel_shape` and `_seed_conv`.

    Where the backend has no channels_first convolution kernel (TensorFlow
    on a CPU without oneDNN, see `kernel_support`), a channels_first layer
    transposes its input to channels_last for the seed conv and the seed
    maps back; everything else runs channels_first.
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        dilation_rate=1,
        reduction_ratio=2,
        num_groups=4,
        period_range=(1.0, 2.0),
        shift_range=(1.0, 5.0),
        trainable_nlf=False,
        shuffle=False,
        use_bias=False,
        data_format=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = _validation.positive_int(
            filters, "filters", maximum=MAX_FILTERS
        )
        self.kernel_size = _validation.int_pair(kernel_size, "kernel_size")
        self.strides = _validation.int_pair(strides, "strides")
        self.dilation_rate = _validation.int_pair(
            dilation_rate, "dilation_rate"
        )
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                "`strides` > 1 cannot be combined with `dilation_rate` > 1. "
                f"Received: strides={strides!r}, "
                f"dilation_rate={dilation_rate!r}"
            )
        if not isinstance(padding, str) or padding.lower() not in (
            "valid",
            "same",
        ):
            raise ValueError(
                "`padding` must be 'valid' or 'same'. "
                f"Received: padding={padding!r}"
            )
        self.padding = padding.lower()
        self.data_format = _validation.data_format(data_format)
        self.reduction_ratio = self._check_ratio(reduction_ratio)
        self.seed_channels = math.ceil(self.filters / reduction_ratio)
        self.num_groups = _validation.positive_int(num_groups, "num_groups")
        if num_groups > self.seed_channels:
            raise ValueError(
                "`num_groups` cannot exceed the number of seed channels "
                f"ceil(filters / reduction_ratio) = {self.seed_channels} "
                f"(filters={self.filters}, "
                f"reduction_ratio={reduction_ratio}). "
                f"Received: num_groups={num_groups}"
            )
        self.period_range = _validation.finite_range(
            period_range, "period_range", bound=MAX_NLF_RANGE
        )
        self.shift_range = _validation.finite_range(
            shift_range, "shift_range", bound=MAX_NLF_RANGE
        )
        self.seed = _validation.non_negative_int(seed, "seed", allow_none=True)
        # With seed=None the NLF draw follows Python's global random state,
        # which `keras.utils.set_random_seed` sets, as Keras' own
        # initializers draw their default seeds: the same script gives the
        # same model, in every process of a distributed job.
        self._nlf_seed = self.seed
        if self._nlf_seed is None:
            self._nlf_seed = random.randint(1, 2**31 - 1)
        self.trainable_nlf = _validation.boolean(trainable_nlf, "trainable_nlf")
        self.shuffle = _validation.boolean(shuffle, "shuffle")
        self.use_bias = _validation.boolean(use_bias, "use_bias")
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)

        # Channel bookkeeping, all known before the input is seen.
        self.generated_channels = self.filters - self.seed_channels
        self.num_copies = -(-self.generated_channels // self.seed_channels)
        sizes = np.full(self.num_groups, self.seed_channels // self.num_groups)
        sizes[: self.seed_channels % self.num_groups] += 1
        # group_of_channel[c]: the NLF group that seed channel c belongs to.
        self.group_of_channel = np.repeat(np.arange(self.num_groups), sizes)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    @staticmethod
    def _check_ratio(reduction_ratio):
        if (
            not _validation.is_number(reduction_ratio)
            or not math.isfinite(reduction_ratio)
            or reduction_ratio <= 0
        ):
            raise ValueError(
                "`reduction_ratio` must be a positive number. "
                f"Received: reduction_ratio={reduction_ratio!r}"
            )
        if reduction_ratio < 1:
            raise ValueError(
                "`reduction_ratio` must be at least 1 (the seed conv makes "
                "`filters / reduction_ratio` maps, at most `filters`). "
                f"Received: reduction_ratio={reduction_ratio!r}"
            )
        return reduction_ratio

    @property
    def _channel_axis(self):
        return -1 if self.data_format == "channels_last" else 1

    def build(self, input_shape):
        in_channels = input_shape[self._channel_axis]
        if in_channels is None:
            raise ValueError(
                f"{self.__class__.__name__} needs a known number of input "
                f"channels. Received: input_shape={input_shape}"
            )
        in_channels = int(in_channels)
        self._check_input_channels(in_channels)
        self._check_output_size(input_shape)
        self.in_channels = in_channels
        self.kernel = self.add_weight(
            name="kernel",
            shape=self._seed_kernel_shape(in_channels),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
            trainable=True,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.seed_channels,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
                trainable=True,
            )
        else:
            self.bias = None
        if self.num_copies:
            periods, shifts = self.draw_nlf_parameters()
            self.nlf_period = self.add_weight(
                name="nlf_period",
                shape=periods.shape,
                initializer=keras.initializers.Constant(periods),
                trainable=self.trainable_nlf,
            )
            self.nlf_shift = self.add_weight(
                name="nlf_shift",
                shape=shifts.shape,
                initializer=keras.initializers.Constant(shifts),
                trainable=self.trainable_nlf,
            )
        axis = self._channel_axis % 4
        self.input_spec = keras.layers.InputSpec(
            ndim=4, axes={axis: in_channels}
        )

    def draw_nlf_parameters(self):
        """Draws the NLF periods and shifts, shape `(num_copies, num_groups)`.

        NumPy's generator makes the draw identical on every backend. With a
        `seed` it is identical from run to run; with `seed=None` it follows
        `keras.utils.set_random_seed` (through Python's `random`). Row `k`
        holds the parameters of copy `k` of every group.
        """
        rng = np.random.default_rng(self._nlf_seed)
        shape = (self.num_copies, self.num_groups)
        periods = rng.uniform(*self.period_range, size=shape)
        shifts = rng.uniform(*self.shift_range, size=shape)
        return periods.astype("float32"), shifts.astype("float32")

    def nlf_pair_index(self):
        """Index into the flattened `(num_copies, num_groups)` NLF tables.

        Returns an int32 array with one entry per generated channel, in
        output order.
        """
        copy = np.arange(self.num_copies)[:, None]
        pair = copy * self.num_groups + self.group_of_channel[None, :]
        if self.shuffle:
            pair = pair.T
        return pair.reshape(-1)[: self.generated_channels].astype("int32")

    def nlf_source_channels(self):
        """The seed channel of every generated channel, in output order.

        Returns an int32 array with one entry per generated channel.
        """
        j = np.arange(self.generated_channels)
        if self.shuffle:
            return (j // self.num_copies).astype("int32")
        return (j % self.seed_channels).astype("int32")

    def _check_input_channels(self, in_channels):
        pass

    def _check_output_size(self, input_shape):
        """Refuses an input too small for the kernel (`padding="valid"`)."""
        output_shape = self.compute_output_shape(input_shape)
        spatial = (
            output_shape[1:3]
            if self.data_format == "channels_last"
            else output_shape[2:4]
        )
        if any(size is not None and size <= 0 for size in spatial):
            raise ValueError(
                f"{self.__class__.__name__} '{self.name}': the input is too "
                f"small for a {self.kernel_size} kernel (dilation "
                f"{self.dilation_rate}) with padding='valid': the output "
                f"would have no pixels. Received: input_shape={input_shape}"
            )

    @property
    def conv_groups(self):
        """The number of groups of the seed conv (1: a full conv)."""
        return 1

    def _seed_kernel_shape(self, in_channels):
        raise NotImplementedError

    def _seed_conv(self, inputs, data_format):
        """The seed convolution of `inputs` laid out as `data_format`."""
        raise NotImplementedError

    def _has_channels_first_kernel(self):
        """Whether the backend runs this layer's seed conv channels_first."""
        return kernel_support.channels_first_conv()

    def seed_conv(self, inputs):
        """The seed maps, in the layer's data format, on any machine."""
        if (
            self.data_format == "channels_last"
            or self._has_channels_first_kernel()
        ):
            return self._seed_conv(inputs, self.data_format)
        inputs = ops.transpose(inputs, (0, 2, 3, 1))
        seed_maps = self._seed_conv(inputs, "channels_last")
        return ops.transpose(seed_maps, (0, 3, 1, 2))

    def call(self, inputs):
        axis = self._channel_axis
        seed_maps = self.seed_conv(inputs)
        if self.use_bias:
            bias = self.bias
            if self.data_format == "channels_first":
                # Not `ops.add`: on TensorFlow it turns a broadcast add of a
                # vector-like tensor into `tf.nn.bias_add` on the *last*
                # axis whenever that axis has the vector's length (here:
                # width == seed_channels), which adds along the wrong axis.
                bias = ops.reshape(bias, (-1, 1, 1))
                seed_maps = ops.subtract(seed_maps, ops.negative(bias))
            else:
                seed_maps = ops.add(seed_maps, bias)

        # L2 normalisation across channels. Half-precision inputs are
        # normalised in float32: the squared norm overflows or underflows
        # in float16.
        dtype = seed_maps.dtype
        if keras.backend.standardize_dtype(dtype) in ("float16", "bfloat16"):
            seed_maps = ops.cast(seed_maps, "float32")
        square_sum = ops.sum(ops.square(seed_maps), axis=axis, keepdims=True)
        inv_norm = ops.rsqrt(ops.maximum(square_sum, _NORM_EPSILON**2))
        seeds = ops.cast(ops.multiply(seed_maps, inv_norm), dtype)
        if not self.num_copies:
            return seeds

        # Broadcasting the seeds against a (copies, seed_channels) table does
        # the repeat in the same pass as the multiply: no tile, no gather.
        index = self.nlf_pair_index()
        full = self.num_copies * self.seed_channels
        if full != self.generated_channels:
            index = np.pad(index, (0, full - self.generated_channels))
        period = ops.take(ops.reshape(self.nlf_period, (-1,)), index)
        shift = ops.take(ops.reshape(self.nlf_shift, (-1,)), index)
        table = (
            (self.seed_channels, self.num_copies)
            if self.shuffle
            else (self.num_copies, self.seed_channels)
        )
        if self.data_format == "channels_last":
            expand_axis = -1 if self.shuffle else -2
            param_shape = table
        else:
            expand_axis = 2 if self.shuffle else 1
            param_shape = table + (1, 1)
        period = ops.cast(ops.reshape(period, param_shape), dtype)
        shift = ops.cast(ops.reshape(shift, param_shape), dtype)
        expanded = ops.expand_dims(seeds, expand_axis)
        # sin(T * (u - phi)). `ops.subtract`, not `ops.add` of -T * phi:
        # TensorFlow's `ops.add` may apply a (copies, seeds) table with one
        # copy as a bias on the wrong axis (see the bias add above).
        generated = ops.sin(ops.multiply(ops.subtract(expanded, shift), period))
        generated = self._merge_copy_axes(generated)
        if full != self.generated_channels:
            if self.data_format == "channels_last":
                generated = generated[..., : self.generated_channels]
            else:
                generated = generated[:, : self.generated_channels]
        return ops.concatenate([seeds, generated], axis=axis)

    def deploy_form(self):
        """What this layer computes, as NumPy constants, for export.

        The converters rebuild the layer from this, with the operators of
        their runtime; see `GroupNLDeployForm` for the exact function
        (`call` computes the same thing with `keras.ops`). The layer must be
        built and channels-last.

        Returns:
            A `keras_groupnl.layers.GroupNLDeployForm`.
        """
        return make_deploy_form(self)

    def _merge_copy_axes(self, tensor):
        """Merges the (copies, seed) axes of a 5D tensor into one axis."""
        shape = ops.shape(tensor)
        full = self.num_copies * self.seed_channels
        if self.data_format == "channels_last":
            new_shape = (-1, shape[1], shape[2], full)
        else:
            new_shape = (-1, full, shape[3], shape[4])
        return ops.reshape(tensor, new_shape)

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if self.data_format == "channels_last":
            spatial = input_shape[1:3]
        else:
            spatial = input_shape[2:4]
        spatial = tuple(
            conv_output_length(length, k, s, d, self.padding)
            for length, k, s, d in zip(
                spatial, self.kernel_size, self.strides, self.dilation_rate
            )
        )
        if self.data_format == "channels_last":
            return (input_shape[0],) + spatial + (self.filters,)
        return (input_shape[0], self.filters) + spatial

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "dilation_rate": self.dilation_rate,
                "reduction_ratio": self.reduction_ratio,
                "num_groups": self.num_groups,
                "period_range": self.period_range,
                "shift_range": self.shift_range,
                "trainable_nlf": self.trainable_nlf,
                "shuffle": self.shuffle,
                "use_bias": self.use_bias,
                "data_format": self.data_format,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(
                    self.bias_initializer
                ),
                "kernel_regularizer": keras.regularizers.serialize(
                    self.kernel_regularizer
                ),
                "bias_regularizer": keras.regularizers.serialize(
                    self.bias_regularizer
                ),
                "kernel_constraint": keras.constraints.serialize(
                    self.kernel_constraint
                ),
                "bias_constraint": keras.constraints.serialize(
                    self.bias_constraint
                ),
                "seed": self.seed,
            }
        )
        return config
