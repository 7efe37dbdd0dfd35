"""Tests of keras_groupnl.analysis.count_macs (shape arithmetic only)."""

import keras
import pytest

from keras_groupnl.analysis import count_macs
from keras_groupnl.applications import GroupNLResNet8
from keras_groupnl.layers import GroupNLConv2D
from keras_groupnl.layers import SparseGroupNLConv2D


def model_of(layer, input_shape):
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, layer(inputs))


@pytest.mark.parametrize(
    "layer,input_shape,expected",
    [
        # 15 x 15 outputs (valid, 17 -> 15), 3 * 3 * 4 inputs each, 6 maps.
        (keras.layers.Conv2D(6, 3), (17, 17, 4), 15 * 15 * 3 * 3 * 4 * 6),
        # Stride 2, same: 9 x 9 outputs.
        (
            keras.layers.Conv2D(6, 3, strides=2, padding="same"),
            (17, 17, 4),
            9 * 9 * 3 * 3 * 4 * 6,
        ),
        # 2 groups: each output sees 2 of the 4 input channels.
        (
            keras.layers.Conv2D(6, 3, padding="same", groups=2),
            (8, 8, 4),
            8 * 8 * 3 * 3 * 2 * 6,
        ),
        (
            keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2),
            (8, 8, 4),
            8 * 8 * 3 * 3 * 4 * 2,
        ),
        (
            keras.layers.SeparableConv2D(6, 3, padding="same"),
            (8, 8, 4),
            8 * 8 * (3 * 3 * 4 + 4 * 6),
        ),
        # Transposed: every input position meets the whole kernel.
        (
            keras.layers.Conv2DTranspose(6, 3, strides=2),
            (5, 5, 4),
            5 * 5 * 3 * 3 * 6 * 4,
        ),
        (keras.layers.Conv1D(6, 3), (10, 4), 8 * 3 * 4 * 6),
        (keras.layers.Dense(7), (5,), 5 * 7),
        # Dense over a sequence: every one of the 3 steps.
        (keras.layers.Dense(7), (3, 5), 3 * 5 * 7),
        (
            keras.layers.Conv2D(6, 3, data_format="channels_first"),
            (4, 17, 10),
            15 * 8 * 3 * 3 * 4 * 6,
        ),
    ],
    ids=[
        "conv_valid",
        "conv_stride2_same",
        "conv_groups",
        "depthwise_mult2",
        "separable",
        "transpose",
        "conv1d",
        "dense",
        "dense_sequence",
        "conv_channels_first",
    ],
)
def test_keras_layers(layer, input_shape, expected):
    assert count_macs(model_of(layer, input_shape)) == expected


def test_groupnl_counts_its_seed_conv():
    # Seed conv: ceil(10 / 4) = 3 maps from 6 inputs, 8 x 8 outputs.
    dense = model_of(
        GroupNLConv2D(10, 3, padding="same", reduction_ratio=4, num_groups=2),
        (8, 8, 6),
    )
    assert count_macs(dense) == 8 * 8 * 3 * 3 * 6 * 3
    # Sparse: 64 filters, r = 2 -> 32 seed maps in gcd(64, 32) = 32 groups of
    # 2 inputs: the cost of a depthwise conv over the 64 inputs.
    sparse = model_of(SparseGroupNLConv2D(64, 3, padding="same"), (8, 8, 64))
    assert count_macs(sparse) == 8 * 8 * 3 * 3 * 2 * 32
    assert count_macs(sparse) == count_macs(
        model_of(keras.layers.DepthwiseConv2D(3, padding="same"), (8, 8, 64))
    )


def test_groupnl_matches_the_method_formula():
    """design.md: standard w*h*m*n*k^2, GroupNL w*h*(m/r)*n*k^2."""
    w = h = 14
    n, m, k, r = 32, 64, 3, 4
    conv = model_of(keras.layers.Conv2D(m, k, padding="same"), (h, w, n))
    groupnl = model_of(
        GroupNLConv2D(m, k, padding="same", reduction_ratio=r), (h, w, n)
    )
    assert count_macs(conv) == w * h * m * n * k * k
    assert count_macs(groupnl) == w * h * (m // r) * n * k * k


def test_by_layer_sums_to_the_total_and_walks_nested_models():
    inner = model_of(keras.layers.Conv2D(4, 3, name="inner_conv"), (10, 10, 2))
    inputs = keras.Input((10, 10, 2))
    x = inner(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(3, name="head")(x)
    model = keras.Model(inputs, outputs)
    per_layer = count_macs(model, by_layer=True)
    assert set(per_layer) == {"inner_conv", "head"}
    assert per_layer["inner_conv"] == 8 * 8 * 3 * 3 * 2 * 4
    assert per_layer["head"] == 8 * 8 * 4 * 3
    assert count_macs(model) == sum(per_layer.values())


def test_groupnl_resnet8_costs_about_half_of_plain():
    kwargs = dict(input_shape=(32, 32, 3), classes=10)
    plain = count_macs(GroupNLResNet8(conv_type="plain", **kwargs))
    dense = count_macs(GroupNLResNet8(conv_type="dense", **kwargs))
    sparse = count_macs(GroupNLResNet8(conv_type="sparse", **kwargs))
    assert sparse < dense < plain
    assert 0.4 < dense / plain < 0.6


def test_not_a_model():
    with pytest.raises(ValueError, match="`model` must be a Keras model"):
        count_macs(keras.layers.Dense(3))


def test_dynamic_sizes_are_refused():
    model = model_of(keras.layers.Conv2D(4, 3), (None, None, 2))
    with pytest.raises(ValueError, match=r"needs fixed sizes.*\(None, None"):
        count_macs(model)


def test_unknown_layer_with_a_kernel_is_refused():
    class Wrapper(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.conv = keras.layers.Conv2D(4, 3)

        def call(self, x):
            return self.conv(x)

    model = model_of(Wrapper(name="wrapped"), (8, 8, 2))
    with pytest.raises(ValueError, match="layer 'wrapped' of type Wrapper"):
        count_macs(model)


def test_shared_layers_and_nested_models_count_every_call():
    conv = keras.layers.Conv2D(2, 3, padding="same", name="shared")
    inputs = keras.Input((8, 8, 2))
    model = keras.Model(inputs, conv(conv(inputs)))
    once = 8 * 8 * 3 * 3 * 2 * 2
    assert count_macs(model) == 2 * once
    # A nested model called twice.
    inner = model_of(keras.layers.Conv2D(2, 3, padding="same"), (8, 8, 2))
    outer_inputs = keras.Input((8, 8, 2))
    outer = keras.Model(outer_inputs, inner(inner(outer_inputs)))
    assert count_macs(outer) == 2 * once


def test_layers_another_model_reuses_count_once():
    # keras.models.clone_model keeps layers it is not asked to replace, so
    # they gain the copy's calls too; the converters copy models this way.
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="a")(inputs)
    outputs = keras.layers.Conv2D(4, 3, padding="same", name="b")(x)
    model = keras.Model(inputs, outputs)
    before = count_macs(model)

    def replace_b(layer):
        if layer.name == "b":
            return keras.layers.Conv2D(4, 1, name="b")
        return layer

    copy = keras.models.clone_model(model, clone_function=replace_b)
    # a: 3 -> 4 channels, b: 4 -> 4, 3x3 kernels, 8x8 outputs.
    assert before == 8 * 8 * 9 * 3 * 4 + 8 * 8 * 9 * 4 * 4
    assert count_macs(model) == before
    assert count_macs(copy) == 8 * 8 * 9 * 3 * 4 + 8 * 8 * 4 * 4
