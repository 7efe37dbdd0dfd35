"""The dense GroupNL convolution layer."""

import keras
from keras import ops

from keras_groupnl.layers.base_group_nl_conv import BaseGroupNLConv


@keras.saving.register_keras_serializable(package="keras_groupnl")
class GroupNLConv2D(BaseGroupNLConv):
    """2D GroupNL convolution: a seed conv plus fixed sinusoidal feature maps.

    A drop-in replacement for `keras.layers.Conv2D` from "GroupNL: Low-Resource
    and Robust CNN Design over Cloud and Device" (Xie et al., IEEE TMC 2026).
    A seed convolution makes only `ceil(filters / reduction_ratio)` maps. They
    are L2-normalised across channels and become the first output channels;
    the other channels are made from them by fixed, randomly drawn sinusoids
    `sin(T * (x - phi))`, one `(T, phi)` pair per repeated copy of each of
    `num_groups` channel groups. The cost is that of the seed conv alone, about
    `1 / reduction_ratio` of the `Conv2D` it replaces, with no second conv and
    no extra normalisation layer.

    Args:
        filters: int, the number of output channels.
        kernel_size: int or tuple of 2 ints, the seed conv window.
        strides: int or tuple of 2 ints. Defaults to `1`.
        padding: `"valid"` or `"same"` (case-insensitive). Defaults to
            `"valid"`.
        dilation_rate: int or tuple of 2 ints. Defaults to `1`.
        reduction_ratio: number >= 1, `r`: the seed conv makes
            `ceil(filters / r)` maps. Defaults to `2`.
        num_groups: int, the number of channel groups that get their own
            sinusoid per copy; at most the number of seed maps. Uneven splits
            are allowed. Defaults to `4`.
        period_range: two increasing numbers, the range `T` is drawn from.
            Defaults to `(1.0, 2.0)`.
        shift_range: two increasing numbers, the range `phi` is drawn from.
            Defaults to `(1.0, 5.0)`.
        trainable_nlf: bool, whether `T` and `phi` are trained. The method
            keeps them frozen. Defaults to `False`.
        shuffle: bool, interleave the copies of each seed map in the output
            instead of stacking whole copies. Defaults to `False`.
        use_bias: bool, add a bias to the seed maps before normalising them.
            Defaults to `False`.
        data_format: `"channels_last"` or `"channels_first"`. Defaults to
            `keras.config.image_data_format()`. TensorFlow without oneDNN
            (CPUs without AVX-512 VNNI / BF16 / AMX, or
            `TF_ENABLE_ONEDNN_OPTS=0`) has no channels_first conv on the
            CPU, where Keras' own `Conv2D` fails; this layer then transposes
            around its seed conv, at 1.1-2.0x the time of the same layer
            channels_last (batch 8, 56x56x64 to 14x14x256, r = 2 and 4;
            `TF_ENABLE_ONEDNN_OPTS=0 python benchmarks/layer_speed.py
            --backends tensorflow --channels-first`, 2-core AMD EPYC).
        kernel_initializer: initializer of the seed kernel. Defaults to
            `"glorot_uniform"`.
        bias_initializer: initializer of the bias. Defaults to `"zeros"`.
        kernel_regularizer: optional regularizer of the seed kernel.
        bias_regularizer: optional regularizer of the bias.
        kernel_constraint: optional constraint on the seed kernel.
        bias_constraint: optional constraint on the bias.
        seed: int or `None`. The NLF parameters are drawn with NumPy from this
            seed, so they are the same on every backend and every run; with
            `None` the draw follows `keras.utils.set_random_seed` (Python's
            global `random`), as Keras' initializers do. They are stored as
            weights, so saving and loading restores them exactly.
        **kwargs: base layer keyword arguments (`name`, `dtype`, ...).

    A saved model holding this layer loads after `import
    keras_groupnl.layers` (which registers the layer with Keras).

    Input shape:
        4D tensor `(batch, rows, cols, in_channels)` for channels_last or
        `(batch, in_channels, rows, cols)` for channels_first.

    Output shape:
        4D tensor `(batch, new_rows, new_cols, filters)` (channels_last) or
        `(batch, filters, new_rows, new_cols)` (channels_first), spatial
        sizes as for `Conv2D`. The first `ceil(filters / reduction_ratio)`
        channels are the normalised seed maps, the rest the generated maps.

    Example:

    >>> x = np.random.rand(2, 32, 32, 16).astype("float32")
    >>> y = GroupNLConv2D(64, 3, padding="same", reduction_ratio=4, seed=1)(x)
    >>> y.shape
    (2, 32, 32, 64)
    """

    def _seed_kernel_shape(self, in_channels):
        return self.kernel_size + (in_channels, self.seed_channels)

    def _seed_conv(self, inputs, data_format):
        return ops.conv(
            inputs,
            self.kernel,
            strides=self.strides,
            padding=self.padding,
            data_format=data_format,
            dilation_rate=self.dilation_rate,
        )
