"""Checks shared by the hub tests.

What the tests check of keras-hub models: weights, sinusoid tables, one
training step, configs as they read back from a preset.
"""

import json

import keras
import numpy as np

from keras_groupnl.layers import BaseGroupNLConv

SHAPE = (32, 32, 3)


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
