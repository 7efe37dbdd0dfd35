"""Tests of `keras_groupnl.to_groupnl` (every backend).

`keras.applications` models (random weights, 32x32 inputs), Sequential and
nested models go through `to_groupnl`; the tests check which layers are
replaced, that every other layer keeps its name, class and weights, the
warm start, training, `.keras` round trips and the errors. Conversion to
TFLite runs in the TensorFlow process only.
"""

import json
import math
import os

import keras
import numpy as np
import pytest

import keras_groupnl
from keras_groupnl.layers import GroupNLConv2D
from keras_groupnl.layers import SparseGroupNLConv2D
from keras_groupnl.retrofit import GroupNLReport
from keras_groupnl.retrofit import to_groupnl

CONVS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)
GROUPNL = (GroupNLConv2D, SparseGroupNLConv2D)


def _numpy(variable):
    return keras.ops.convert_to_numpy(variable)


def _leaves(model, scopes=()):
    """`{path: layer}` of the non-model layers, nested models included."""
    found = {}
    for layer in model.layers:
        path = "/".join(scopes + (layer.name,))
        if isinstance(layer, keras.Model):
            found.update(_leaves(layer, scopes + (layer.name,)))
        else:
            found[path] = layer
    return found


def _images(n=2, shape=(32, 32, 3), seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (n,) + shape).astype("float32")


def _check_copy(source, copy, replaced):
    """Replaced layers are GroupNL; all others equal the source's."""
    before, after = _leaves(source), _leaves(copy)
    added = set(after) - set(before)
    assert set(before) <= set(after)
    assert all(isinstance(after[p], keras.layers.Activation) for p in added)
    for path, layer in before.items():
        new = after[path]
        assert new is not layer
        if path in replaced:
            assert isinstance(new, GROUPNL), path
            continue
        assert type(new) is type(layer), path
        old_weights, new_weights = layer.get_weights(), new.get_weights()
        assert len(old_weights) == len(new_weights), path
        for a, b in zip(old_weights, new_weights):
            np.testing.assert_array_equal(a, b, err_msg=path)
    assert {p for p, lay in after.items() if isinstance(lay, GROUPNL)} == set(
        replaced
    )


def _fit_one_step(model, x, classes):
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    y = np.arange(len(x)) % classes
    history = model.fit(x, y, batch_size=len(x), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def _round_trip(model, tmp_path, x=None):
    """Saves and loads `model`: same layers and weights (and outputs)."""
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert [(lay.name, type(lay)) for lay in loaded.layers] == [
        (lay.name, type(lay)) for lay in model.layers
    ]
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    if x is not None:
        np.testing.assert_allclose(
            _numpy(loaded(x)), _numpy(model(x)), rtol=1e-5, atol=1e-5
        )


# Application, its stem conv, and how many convs to_groupnl replaces by
# default: every conv with a kernel above 1x1 (depthwise ones included)
# except the stem.
APPLICATIONS = {
    "ResNet50": ("conv1_conv", 16),
    "MobileNetV2": ("Conv1", 17),
    "EfficientNetB0": ("stem_conv", 16),
    "VGG16": ("block1_conv1", 12),
}


def _expected_replaced(model, stem):
    return {
        path
        for path, layer in _leaves(model).items()
        if type(layer) in CONVS
        and tuple(layer.kernel_size) != (1, 1)
        and layer.name != stem
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(APPLICATIONS))
def test_applications(name, tmp_path):
    stem, count = APPLICATIONS[name]
    kwargs = {"alpha": 0.35} if name == "MobileNetV2" else {}
    source = getattr(keras.applications, name)(
        weights=None,
        input_shape=(32, 32, 3),
        classes=10,
        classifier_activation=None,
        **kwargs,
    )
    model, report = to_groupnl(source, seed=0, return_report=True)

    replaced = _expected_replaced(source, stem)
    assert len(replaced) == count
    assert {row.path for row in report.replaced} == replaced
    assert stem in {k.path for k in report.kept}
    _check_copy(source, model, replaced)
    assert model.name == source.name
    # Symbolic shapes: an eager call costs minutes of per-op compiles on JAX.
    assert tuple(model.output.shape) == tuple(source.output.shape)
    if name in ("ResNet50", "VGG16"):
        assert report.params_after < report.params_before
        assert report.macs_after < report.macs_before
    else:  # Sparse GroupNL costs what the depthwise convs cost.
        assert report.macs_after == report.macs_before
    _fit_one_step(model, _images(), 10)
    _round_trip(model, tmp_path)


def _small_cnn():
    inputs = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", name="stem")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.Conv2D(
        16, 3, padding="same", activation="relu", name="body"
    )(x)
    x = keras.layers.Conv2D(32, 3, strides=2, use_bias=False, name="down")(x)
    x = keras.layers.BatchNormalization(name="down_bn")(x)
    x = keras.layers.ReLU(name="down_relu")(x)
    x = keras.layers.Conv2D(32, 1, name="pointwise")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(4, name="logits")(x)
    return keras.Model(inputs, outputs, name="small_cnn")


def test_sequential_model(tmp_path):
    source = keras.Sequential(
        [
            keras.Input((16, 16, 3), name="image"),
            keras.layers.Conv2D(8, 3, activation="relu", name="stem"),
            keras.layers.Conv2D(16, 3, activation="relu", name="conv"),
            keras.layers.MaxPooling2D(name="pool"),
            keras.layers.DepthwiseConv2D(3, padding="same", name="dw"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(4, name="logits"),
        ],
        name="seq",
    )
    model = to_groupnl(source, seed=0, name="seq_groupnl")
    assert isinstance(model, keras.Sequential)
    assert model.name == "seq_groupnl"
    _check_copy(source, model, {"conv", "dw"})
    assert [layer.name for layer in model.layers] == [
        "stem",
        "conv",
        "conv_activation",
        "pool",
        "dw",
        "flatten",
        "logits",
    ]
    assert model.get_layer("conv").use_bias
    x = _images(shape=(16, 16, 3))
    assert tuple(model(x).shape) == (2, 4)
    _fit_one_step(model, x, 4)
    _round_trip(model, tmp_path, x)


def test_nested_models(tmp_path):
    block = keras.Sequential(
        [
            keras.layers.Conv2D(16, 3, padding="same", name="conv"),
            keras.layers.BatchNormalization(name="bn"),
        ],
        name="block",
    )
    inner_in = keras.Input((16, 16, 16), name="inner_in")
    y = keras.layers.Conv2D(16, 3, padding="same", name="conv")(inner_in)
    y = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(y)
    inner = keras.Model(inner_in, y, name="inner")
    inputs = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", name="stem")(inputs)
    x = block(x)
    x = inner(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    source = keras.Model(inputs, keras.layers.Dense(4, name="logits")(x))

    model, report = to_groupnl(source, return_report=True)
    replaced = {"block/conv", "inner/conv", "inner/dw"}
    _check_copy(source, model, replaced)
    assert {row.path for row in report.replaced} == replaced
    assert isinstance(model.get_layer("block"), keras.Sequential)
    assert model.get_layer("inner").name == "inner"
    x = _images(shape=(16, 16, 3))
    _fit_one_step(model, x, 4)
    _round_trip(model, tmp_path, x)
    # Names select whole nested models, or one layer by its path.
    model, report = to_groupnl(
        source, exclude=["inner/dw", "block"], return_report=True
    )
    assert [row.path for row in report.replaced] == ["inner/conv"]


def test_a_nested_stem_is_found():
    inner_in = keras.Input((16, 16, 3))
    y = keras.layers.Conv2D(8, 3, padding="same", name="first")(inner_in)
    y = keras.layers.Conv2D(8, 3, padding="same", name="second")(y)
    inner = keras.Model(inner_in, y, name="backbone")
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    source = keras.Model(inputs, inner(x))
    _, report = to_groupnl(source, return_report=True)
    assert [row.path for row in report.replaced] == ["backbone/second"]
    assert [(k.path, k.reason) for k in report.kept] == [
        ("backbone/first", "stem")
    ]


class _Backbone(keras.Model):
    """A Functional subclass with its own config, as keras-hub's models."""

    def __init__(self, filters=8, **kwargs):
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.Conv2D(filters, 3, padding="same", name="stem")(inputs)
        x = keras.layers.Conv2D(filters, 3, padding="same", name="conv")(x)
        super().__init__(inputs, x, **kwargs)
        self.filters = filters

    def get_config(self):
        return {"filters": self.filters, "name": self.name}


def test_functional_subclass_becomes_functional():
    source = _Backbone(name="backbone")
    model, report = to_groupnl(source, return_report=True)
    assert [row.path for row in report.replaced] == ["conv"]
    assert type(model) is not _Backbone and model.name == "backbone"
    _check_copy(source, model, {"conv"})
    assert tuple(model.output.shape) == tuple(source.output.shape)


def test_copy_shares_nothing_with_the_source():
    source = _small_cnn()
    model = to_groupnl(source)
    assert not {id(v) for v in model.weights} & {id(v) for v in source.weights}
    kernel = source.get_layer("pointwise").kernel
    before = _numpy(kernel).copy()
    copied = model.get_layer("pointwise").kernel
    copied.assign(_numpy(copied) + 1.0)
    np.testing.assert_array_equal(_numpy(kernel), before)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"include": []},
        {"exclude": lambda layer: True},
        {"depthwise": False, "exclude": ["body", "down"]},
    ],
    ids=["include-nothing", "exclude-everything", "exclude-by-name"],
)
def test_nothing_replaced_computes_the_same(kwargs):
    source = _small_cnn()
    model, report = to_groupnl(source, return_report=True, **kwargs)
    assert report.replaced == ()
    assert model is not source
    x = _images(3, (16, 16, 3))
    np.testing.assert_array_equal(_numpy(model(x)), _numpy(source(x)))
    assert report.params_after == report.params_before
    assert report.macs_after == report.macs_before


def test_a_model_without_eligible_convs_computes_the_same():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 1, name="pointwise")(inputs)
    x = keras.layers.Conv2D(8, 3, groups=2, name="grouped")(x)
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(x))
    source = keras.Model(inputs, outputs)
    model, report = to_groupnl(source, stem=True, return_report=True)
    assert report.replaced == ()
    assert {k.reason for k in report.kept} == {
        "pointwise (1x1)",
        "grouped (groups=2)",
    }
    x = _images(2, (8, 8, 3))
    np.testing.assert_array_equal(_numpy(model(x)), _numpy(source(x)))


def _normalised(maps):
    norm = np.sqrt(np.sum(np.square(maps), axis=-1, keepdims=True))
    return maps / np.maximum(norm, 1e-12)


def test_warm_start_dense():
    source = _small_cnn()
    model, report = to_groupnl(source, return_report=True)
    row = {r.path: r for r in report.replaced}["body"]
    assert row.seed_channels == 8
    chosen = list(row.seed_filters)
    assert chosen == list(range(8))  # The first ceil(filters / r).
    conv, new = source.get_layer("body"), model.get_layer("body")
    kernel = _numpy(conv.kernel)
    np.testing.assert_array_equal(_numpy(new.kernel), kernel[..., chosen])
    np.testing.assert_array_equal(_numpy(new.bias), _numpy(conv.bias)[chosen])
    # The seed maps are the chosen filters' outputs, normalised.
    x = _images(2, (16, 16, 16))
    conv_out = np.asarray(
        _numpy(keras.ops.conv(x, kernel, padding="same"))
    ) + _numpy(conv.bias)
    np.testing.assert_allclose(
        _numpy(new(x))[..., :8],
        _normalised(conv_out[..., chosen]),
        rtol=1e-4,
        atol=1e-5,
    )


def test_warm_start_sparse_conv():
    source = _small_cnn()
    model = to_groupnl(source, conv_type="sparse", include=["down"])
    conv, new = source.get_layer("down"), model.get_layer("down")
    assert isinstance(new, SparseGroupNLConv2D)
    assert new.conv_groups == math.gcd(16, 16)
    kernel = _numpy(conv.kernel)  # (3, 3, 16, 32)
    seed_kernel = _numpy(new.kernel)  # (3, 3, 1, 16): seed j sees input j.
    assert seed_kernel.shape == (3, 3, 1, 16)
    for j in range(16):
        np.testing.assert_array_equal(
            seed_kernel[:, :, 0, j], kernel[:, :, j, j]
        )


def test_warm_start_depthwise():
    source = _small_cnn()
    model = to_groupnl(source, include=["dw"])
    conv, new = source.get_layer("dw"), model.get_layer("dw")
    depthwise = _numpy(conv.kernel)[..., 0]  # (3, 3, 32)
    seed_kernel = _numpy(new.kernel)  # (3, 3, 2, 16): seed j sees 2j, 2j+1.
    assert seed_kernel.shape == (3, 3, 2, 16)
    for j in range(16):
        for i in range(2):
            np.testing.assert_array_equal(
                seed_kernel[:, :, i, j], depthwise[:, :, 2 * j + i]
            )
    bias = _numpy(conv.bias)
    np.testing.assert_allclose(_numpy(new.bias), bias[0::2] + bias[1::2])
    # Seed j is the sum of the depthwise outputs of channels 2j and 2j+1.
    x = _images(2, (8, 8, 32))
    out = _numpy(conv(x))
    np.testing.assert_allclose(
        _numpy(new(x))[..., :16],
        _normalised(out[..., 0::2] + out[..., 1::2]),
        rtol=1e-4,
        atol=1e-5,
    )


def test_warm_start_depthwise_several_seeds_per_group():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(10, 3, padding="same", name="stem")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    source = keras.Model(inputs, x)
    # 10 channels, r = 2.5: 4 seeds in gcd(10, 4) = 2 groups of 5 channels,
    # 2 seeds per group; the channels of a group are shared out in order.
    model = to_groupnl(source, reduction_ratio=2.5)
    channels_of_seed = {0: [0, 1, 2], 1: [3, 4], 2: [5, 6, 7], 3: [8, 9]}
    conv = source.get_layer("dw")
    depthwise = _numpy(conv.kernel)[..., 0]
    expected = np.zeros((3, 3, 5, 4), "float32")
    for seed, channels in channels_of_seed.items():
        for channel in channels:
            expected[:, :, channel % 5, seed] = depthwise[:, :, channel]
    new = model.get_layer("dw")
    np.testing.assert_array_equal(_numpy(new.kernel), expected)
    x = _images(2, (8, 8, 10))
    out = _numpy(conv(x))
    seeds = np.stack(
        [out[..., c].sum(axis=-1) for c in channels_of_seed.values()], -1
    )
    np.testing.assert_allclose(
        _numpy(new(x))[..., :4], _normalised(seeds), rtol=1e-4, atol=1e-5
    )


def test_fresh_init_does_not_copy_filters():
    source = _small_cnn()
    model, report = to_groupnl(source, init="fresh", return_report=True)
    assert all(row.seed_filters is None for row in report.replaced)
    kernel = _numpy(source.get_layer("body").kernel)[..., :8]
    assert not np.allclose(_numpy(model.get_layer("body").kernel), kernel)


def test_settings_reach_the_layers():
    source = _small_cnn()
    model, report = to_groupnl(
        source,
        reduction_ratio=4,
        num_groups=2,
        conv_type="sparse",
        seed=7,
        name="groupnl_cnn",
        return_report=True,
    )
    assert model.name == "groupnl_cnn" and report.model_name == "small_cnn"
    layers = [model.get_layer(row.path) for row in report.replaced]
    assert [layer.name for layer in layers] == ["body", "down", "dw"]
    assert [layer.seed for layer in layers] == [7, 8, 9]
    for layer in layers:
        assert isinstance(layer, SparseGroupNLConv2D)
        assert layer.reduction_ratio == 4 and layer.num_groups == 2
    down = model.get_layer("down")
    assert down.strides == (2, 2) and down.padding == "valid"
    assert not down.use_bias


@pytest.mark.parametrize(
    "kwargs, replaced",
    [
        ({}, ["body", "down", "dw"]),
        ({"stem": True}, ["stem", "body", "down", "dw"]),
        ({"strided": False}, ["body", "dw"]),
        ({"depthwise": False}, ["body", "down"]),
        ({"min_filters": 32}, ["down", "dw"]),
        ({"include": ["down", "dw"]}, ["down", "dw"]),
        ({"include": lambda layer: layer.name != "dw"}, ["body", "down"]),
        ({"exclude": "body"}, ["down", "dw"]),
        ({"num_groups": 9}, ["down", "dw"]),
    ],
)
def test_which_convs(kwargs, replaced):
    _, report = to_groupnl(_small_cnn(), return_report=True, **kwargs)
    assert [row.path for row in report.replaced] == replaced
    assert len(report.replaced) + len(report.kept) == 5


def test_activation_is_kept():
    source = _small_cnn()
    model = to_groupnl(source)
    activation = model.get_layer("body_activation")
    assert isinstance(activation, keras.layers.Activation)
    assert keras.activations.serialize(activation.activation) == "relu"
    x = _images(2, (16, 16, 16))
    out = _numpy(activation(model.get_layer("body")(x)))
    assert out.min() == 0.0


def test_shared_conv_stays_shared():
    conv = keras.layers.Conv2D(8, 3, padding="same", name="shared")
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    source = keras.Model(inputs, conv(conv(x)))
    model = to_groupnl(source)
    assert sum(layer.name == "shared" for layer in model.layers) == 1
    x = _images(2, (8, 8, 3))
    assert tuple(model(x).shape) == (2, 8, 8, 8)


def test_dtype_policy_is_kept():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, name="stem", dtype="mixed_float16")(inputs)
    x = keras.layers.Conv2D(8, 3, name="conv", dtype="mixed_float16")(x)
    model = to_groupnl(keras.Model(inputs, x))
    assert model.get_layer("conv").dtype_policy.name == "mixed_float16"


def test_report():
    source = _small_cnn()
    model, report = to_groupnl(source, return_report=True)
    assert isinstance(report, GroupNLReport)
    assert report.params_before == source.count_params()
    assert report.params_after == model.count_params()
    assert report.macs_before == keras_groupnl.analysis.count_macs(source)
    assert report.macs_after == keras_groupnl.analysis.count_macs(model)
    body = {row.path: row for row in report.replaced}["body"]
    assert body.params_before == 16 * 9 * 16 + 16
    assert body.params_after == model.get_layer("body").count_params()
    assert body.macs_after * 2 == body.macs_before
    saved = json.loads(json.dumps(report.to_dict()))
    assert saved["replaced"][0]["path"] == "body"
    text = report.summary()
    for expected in ("body", "replaced layers", "whole model", "stem (1)"):
        assert expected in text
    assert f"{body.macs_before:,}" in text


def test_verbose_prints_the_report(capsys):
    model = to_groupnl(_small_cnn(), verbose=True)
    assert isinstance(model, keras.Model)
    assert "GroupNLConv2D" in capsys.readouterr().out


def test_unknown_sizes_leave_macs_out():
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, name="stem")(inputs)
    x = keras.layers.Conv2D(8, 3, name="conv")(x)
    _, report = to_groupnl(keras.Model(inputs, x), return_report=True)
    assert report.macs_before is None and "fixed sizes" in report.macs_note
    assert report.replaced[0].macs_before is None
    assert "MACs not counted" in report.summary()


def test_top_level_export_is_lazy_and_the_same():
    assert keras_groupnl.to_groupnl is to_groupnl
    assert "to_groupnl" in dir(keras_groupnl)
    assert "to_groupnl" in keras_groupnl.__all__


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"reduction_ratio": 0.5}, "reduction_ratio"),
        ({"reduction_ratio": "2"}, "reduction_ratio"),
        ({"num_groups": 0}, "num_groups"),
        ({"conv_type": "plain"}, "conv_type"),
        ({"depthwise": "yes"}, "depthwise"),
        ({"strided": 1}, "strided"),
        ({"stem": None}, "stem"),
        ({"min_filters": -1}, "min_filters"),
        ({"include": 3}, "include"),
        ({"exclude": [""]}, "exclude"),
        ({"init": "pretrained"}, "init"),
        ({"seed": -1}, "seed"),
        ({"verbose": 1}, "verbose"),
        ({"return_report": "no"}, "return_report"),
        ({"name": ""}, "name"),
        ({"include": ["body"], "exclude": ["body"]}, "both included and"),
        ({"include": ["bdy"]}, "'bdy', which is no layer.*body"),
        ({"exclude": ["nothing"]}, "'nothing', which is no layer"),
        ({"include": lambda layer: 1}, "must return True or False"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        to_groupnl(_small_cnn(), **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"include": ["stem"]}, "'stem'.*stem conv.*stem=True"),
        ({"include": ["pointwise"]}, "'pointwise'.*1x1 kernel"),
        ({"include": ["down"], "strided": False}, "'down'.*strided=True"),
        ({"include": ["dw"], "depthwise": False}, "'dw'.*depthwise=True"),
        ({"include": ["body"], "min_filters": 20}, "'body'.*min_filters=20"),
        ({"include": ["body"], "num_groups": 9}, "'body'.*num_groups=9"),
        (
            {
                "include": ["body"],
                "conv_type": "sparse",
                "reduction_ratio": 2.5,
            },
            r"'body'.*gcd\(16, 7\) = 1.*conv_type='dense'",
        ),
    ],
)
def test_included_convs_that_cannot_be_replaced(kwargs, match):
    with pytest.raises(ValueError, match=match):
        to_groupnl(_small_cnn(), **kwargs)


def test_sparse_without_common_factor_is_kept_or_refused():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(15, 3, name="stem")(inputs)
    x = keras.layers.DepthwiseConv2D(3, name="dw")(x)  # 15 channels, 8 seeds
    source = keras.Model(inputs, x)
    _, report = to_groupnl(source, return_report=True)
    assert report.kept[-1].reason == "no sparse grouping"
    with pytest.raises(ValueError, match=r"gcd\(15, 8\) = 1"):
        to_groupnl(source, include="dw")


def test_conv_with_weights_beyond_kernel_and_bias():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, name="stem")(inputs)
    x = keras.layers.Conv2D(8, 3, lora_rank=2, name="tuned")(x)
    source = keras.Model(inputs, x)
    with pytest.raises(ValueError, match=r"'tuned' has weights.*LoRA.*exclude"):
        to_groupnl(source)
    model, report = to_groupnl(source, exclude="tuned", return_report=True)
    assert report.replaced == ()
    x = _images(1, (8, 8, 3))
    np.testing.assert_array_equal(_numpy(model(x)), _numpy(source(x)))


class _SubclassedModel(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(8, 3)

    def call(self, inputs):
        return self.conv(inputs)


class _Block(keras.layers.Layer):
    """A custom layer holding a conv."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(8, 3, padding="same")

    def build(self, input_shape):
        self.conv.build(input_shape)

    def call(self, inputs):
        return self.conv(inputs)


class _NoConfig(keras.layers.Layer):
    def call(self, inputs):
        return inputs

    def get_config(self):
        raise NotImplementedError("no config")


class _WideConv(keras.layers.Conv2D):
    pass


def _wrap(layer):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    return keras.Model(inputs, layer(x), name="wrapper")


def _time_distributed():
    inputs = keras.Input((4, 8, 8, 3))
    layer = keras.layers.TimeDistributed(keras.layers.Conv2D(8, 3), name="td")
    return keras.Model(inputs, layer(inputs), name="wrapper")


def test_unsupported_models():
    with pytest.raises(ValueError, match="`model` must be a Keras model"):
        to_groupnl(keras.layers.Conv2D(8, 3))
    subclassed = _SubclassedModel(name="mine")
    subclassed(_images(1, (8, 8, 3)))
    with pytest.raises(
        ValueError, match="'mine' is a subclassed model.*_SubclassedModel"
    ):
        to_groupnl(subclassed)
    unbuilt = keras.Sequential([keras.layers.Conv2D(8, 3)], name="lazy")
    with pytest.raises(ValueError, match="'lazy' is not built"):
        to_groupnl(unbuilt)


@pytest.mark.parametrize(
    "make_model, name, match",
    [
        (lambda: _wrap(_Block(name="blk")), "blk", r"\(_Block\) is a layer"),
        (_time_distributed, "td", r"\(TimeDistributed\) is a layer"),
        (
            lambda: _wrap(_WideConv(8, 3, name="wide")),
            "wide",
            r"\(_WideConv\) is a subclass of Conv2D",
        ),
    ],
    ids=["custom-layer", "wrapper", "conv-subclass"],
)
def test_layers_holding_unreachable_convs(make_model, name, match):
    model = make_model()
    with pytest.raises(ValueError, match=f"'{name}' {match}.*exclude="):
        to_groupnl(model)
    # Excluded, the layer is kept as it is: a copy with equal weights.
    copy = to_groupnl(model, exclude=[name])
    shape = (1,) + tuple(model.input.shape[1:])
    x = np.random.default_rng(0).uniform(size=shape).astype("float32")
    np.testing.assert_array_equal(_numpy(copy(x)), _numpy(model(x)))


def test_nested_subclassed_model_with_convs():
    inner = _SubclassedModel(name="custom")
    with pytest.raises(ValueError, match="'custom'.*is a subclassed model"):
        to_groupnl(_wrap(inner))


def test_layer_without_config():
    with pytest.raises(
        ValueError, match="'opaque' \\(_NoConfig\\).*get_config"
    ):
        to_groupnl(_wrap(_NoConfig(name="opaque")))


requires_tf_backend = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="converters.convert runs in this process on the TensorFlow "
    "backend; on the others it starts a TensorFlow subprocess per target, "
    "which tests/test_converters_backends.py covers",
)


@pytest.mark.slow
@requires_tf_backend
@pytest.mark.parametrize("target", ["phone", "mcu"])
def test_converts_to_both_targets(target, tmp_path):
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("tflite_micro")
    from keras_groupnl import converters

    source = _small_cnn()
    x = _images(64, (16, 16, 3))
    model = to_groupnl(source, seed=0)
    _fit_one_step(model, x[:16], 4)
    result = converters.convert(
        model, target, x, str(tmp_path), verbose=0, calibration_samples=64
    )
    names = {layer.layer for layer in result.report.groupnl}
    assert names == {"body", "down", "dw"}
    assert result.report.top1_agreement >= 0.8


@pytest.mark.slow
@requires_tf_backend
def test_example_runs(tmp_path, monkeypatch):
    pytest.importorskip("ai_edge_litert")
    from keras_groupnl.datasets import load_fashion_mnist

    try:
        load_fashion_mnist(download=False)
    except Exception as error:  # noqa: BLE001
        pytest.skip(f"Fashion-MNIST not available here: {error}")
    examples = os.path.join(
        os.path.dirname(os.path.dirname(__file__)), "examples"
    )
    monkeypatch.syspath_prepend(examples)
    import groupnl_your_model

    results = groupnl_your_model.main(
        [
            "--train-size",
            "256",
            "--test-size",
            "128",
            "--epochs",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    assert results["groupnl_macs"] < results["plain_macs"]
    assert results["groupnl_params"] < results["plain_params"]
    for accuracy in (
        results["plain"],
        results["before_finetune"]["from_conv"],
        results["after_finetune"]["from_conv"],
    ):
        assert 0.0 <= accuracy <= 1.0
    assert len(results["report"].replaced) == 4
    phone = results["phone"]
    assert phone.comparison is not None and phone.delegation.partitions == 1
