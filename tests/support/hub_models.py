"""keras-hub models and checks shared by the hub tests.

Small models with random weights (32x32 images), and the checks the
tests make of them: weights, sinusoid tables, one training step, configs
as they read back from a preset.
"""

import json

import keras
import keras_hub
import numpy as np

from keras_groupnl.layers import BaseGroupNLConv

SHAPE = (32, 32, 3)


def keras_hub_resnet():
    """A keras-hub ResNet backbone: basic blocks, 32x32 images, 2 stacks."""
    keras.utils.set_random_seed(0)
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 32],
        stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2],
        block_type="basic_block",
        image_shape=SHAPE,
    )


def keras_hub_classifier():
    """A keras-hub `ResNetImageClassifier` (3 classes) with a preprocessor
    that scales pixels to [0, 1]."""
    converter = keras_hub.layers.ResNetImageConverter(
        image_size=SHAPE[:2], scale=1 / 255.0
    )
    return keras_hub.models.ResNetImageClassifier(
        backbone=keras_hub_resnet(),
        num_classes=3,
        preprocessor=keras_hub.models.ResNetImageClassifierPreprocessor(
            converter
        ),
    )


def numpy(x):
    """A tensor or variable as a NumPy array."""
    return np.asarray(keras.ops.convert_to_numpy(x))


def images(n=4, seed=0):
    """`n` random images, pixels in [0, 255]."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n,) + SHAPE).astype("float32")


def json_config(config):
    """`config` as it reads back from a preset's JSON (lists for tuples)."""
    return json.loads(json.dumps(config))


def groupnl_layers(model):
    """The GroupNL layers of `model` (not nested)."""
    return [lay for lay in model.layers if isinstance(lay, BaseGroupNLConv)]


def nlf_tables(model):
    """`(period, shift)` arrays of every GroupNL layer of `model`."""
    return [
        (numpy(lay.nlf_period), numpy(lay.nlf_shift))
        for lay in groupnl_layers(model)
    ]


def assert_same_weights(a, b):
    """Same weights, same paths, bit for bit."""
    assert len(a.weights) == len(b.weights)
    for x, y in zip(a.weights, b.weights):
        assert x.path == y.path
        np.testing.assert_array_equal(numpy(x), numpy(y), err_msg=x.path)


def fit_one_step(task, x):
    """One `fit` step: a finite loss, and the backbone's weights move."""
    y = np.arange(len(x)) % task.num_classes
    before = [numpy(w) for w in task.backbone.trainable_weights]
    history = task.fit(x, y, batch_size=len(x), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = [numpy(w) for w in task.backbone.trainable_weights]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))
