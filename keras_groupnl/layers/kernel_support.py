"""Which convolution kernels the backend has on this machine.

TensorFlow's CPU kernels differ with the CPU: TensorFlow turns oneDNN on by
default only on CPUs with AVX-512 (VNNI, BF16 or AMX), or where
`TF_ENABLE_ONEDNN_OPTS=1`. Without oneDNN, TensorFlow has no channels_first
(NCHW) `Conv2D` kernel on the CPU and no depthwise convolution with unequal
row and column strides, in either data format. Keras' own `Conv2D` then
fails with channels_first; `DepthwiseConv2D(strides=(2, 1))` fails
everywhere. The GroupNL layers run on either machine: they ask this module
once per process and take another route where a kernel is missing (see
`BaseGroupNLConv.seed_conv`).

Each question is answered by running the op once on a tiny input, eagerly
(lifted out of any `tf.function` being traced by `tf.init_scope`, the one
TensorFlow call of the layers package): a probe sees exactly what the
layer would see, whatever decided TensorFlow's set-up. JAX and PyTorch have
every kernel.
"""

import functools

import keras
import numpy as np
from keras import ops


def _runs(function):
    """Whether `function()` runs on this backend's kernels, eagerly."""
    if keras.backend.backend() != "tensorflow":
        return True
    import tensorflow as tf

    with tf.init_scope():
        try:
            function()
        except tf.errors.OpError:
            return False
    return True


@functools.cache
def channels_first_conv():
    """Whether `ops.conv` runs with `data_format="channels_first"`."""
    return _runs(
        lambda: ops.conv(
            np.zeros((1, 2, 4, 4), "float32"),
            np.zeros((3, 3, 2, 2), "float32"),
            data_format="channels_first",
        )
    )


@functools.cache
def channels_first_depthwise_conv():
    """Whether `ops.depthwise_conv` runs with `data_format="channels_first"`."""
    return _runs(
        lambda: ops.depthwise_conv(
            np.zeros((1, 2, 4, 4), "float32"),
            np.zeros((3, 3, 2, 1), "float32"),
            data_format="channels_first",
        )
    )


@functools.cache
def unequal_stride_depthwise_conv():
    """Whether `ops.depthwise_conv` runs with row stride != column stride."""
    return _runs(
        lambda: ops.depthwise_conv(
            np.zeros((1, 4, 4, 2), "float32"),
            np.zeros((3, 3, 2, 1), "float32"),
            strides=(2, 1),
            data_format="channels_last",
        )
    )
