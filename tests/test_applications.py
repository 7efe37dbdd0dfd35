"""Tests of `keras_groupnl.applications` (run once per Keras backend).

Big models (ResNet-50/101/152, MobileNetV3Large, EfficientNet-ES) are only
built symbolically and a few times; numerical checks and training use
ResNet-8, MobileNetV3Small and small inputs (32x32x3, 28x28x1).
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_groupnl import applications
from keras_groupnl.applications import efficientnet_edgetpu
from keras_groupnl.applications import mobilenet_v3
from keras_groupnl.applications import resnet
from keras_groupnl.layers import GroupNLConv2D
from keras_groupnl.layers import SparseGroupNLConv2D
from tests.support.application_contract import run_application_contract

GROUPNL_LAYERS = (GroupNLConv2D, SparseGroupNLConv2D)

# name: (function, family, default input side, default classes)
MODELS = {
    "resnet8": (applications.GroupNLResNet8, "resnet", 32, 10),
    "resnet18": (applications.GroupNLResNet18, "resnet", 224, 1000),
    "resnet34": (applications.GroupNLResNet34, "resnet", 224, 1000),
    "resnet50": (applications.GroupNLResNet50, "resnet", 224, 1000),
    "resnet101": (applications.GroupNLResNet101, "resnet", 224, 1000),
    "resnet152": (applications.GroupNLResNet152, "resnet", 224, 1000),
    "mobilenet_v3_small": (
        applications.GroupNLMobileNetV3Small,
        "inverted",
        224,
        1000,
    ),
    "mobilenet_v3_large": (
        applications.GroupNLMobileNetV3Large,
        "inverted",
        224,
        1000,
    ),
    "efficientnet_es": (
        applications.GroupNLEfficientNetES,
        "inverted",
        224,
        1000,
    ),
}
ALL = list(MODELS)
# Models run numerically in every contract case (the others are checked
# symbolically there and numerically in the save / fit tests).
CHEAP = ("resnet8",)

# Channels of the last feature map.
FEATURES = {
    "resnet8": 64,
    "resnet18": 512,
    "resnet34": 512,
    "resnet50": 2048,
    "resnet101": 2048,
    "resnet152": 2048,
    "mobilenet_v3_small": 576,
    "mobilenet_v3_large": 960,
    "efficientnet_es": 1280,
}
# Replaced convs: (with groupnl_strided=True, with groupnl_strided=False).
REPLACED = {
    "resnet8": (6, 4),
    "resnet18": (16, 13),
    "resnet34": (32, 29),
    "resnet50": (16, 13),
    "resnet101": (33, 30),
    "resnet152": (50, 47),
    "mobilenet_v3_small": (11, 7),
    "mobilenet_v3_large": (15, 11),
    "efficientnet_es": (11, 9),
}
# Parameter counts of the plain models, from their references.
PLAIN_REFERENCE = {
    # MLPerf Tiny resnet_v1_eembc, Keras total (BatchNorm statistics included).
    "resnet8": ("total", 78_666),
    # torchvision resnet*, trainable parameters.
    "resnet18": ("trainable", 11_689_512),
    "resnet34": ("trainable", 21_797_672),
    "resnet50": ("trainable", 25_557_032),
    "resnet101": ("trainable", 44_549_160),
    "resnet152": ("trainable", 60_192_808),
    # keras.applications.MobileNetV3Small / Large(weights=None), total.
    "mobilenet_v3_small": ("total", 2_554_968),
    "mobilenet_v3_large": ("total", 5_507_432),
    # timm efficientnet_es, trainable parameters.
    "efficientnet_es": ("trainable", 5_438_392),
}


def _trainable_count(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def _numpy(weights):
    return [keras.ops.convert_to_numpy(w).copy() for w in weights]


def _fashion_mnist(count):
    """`count` training images (N, 28, 28, 1) uint8 and labels."""
    try:
        from keras_groupnl.datasets import load_fashion_mnist

        (x, y), _ = load_fashion_mnist(download=False)
    except ImportError:
        import gzip

        root = "/usr/share/datasets/fashion-mnist"
        with gzip.open(f"{root}/train-images-idx3-ubyte.gz") as f:
            x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
        with gzip.open(f"{root}/train-labels-idx1-ubyte.gz") as f:
            y = np.frombuffer(f.read(), np.uint8, offset=8)
    return x[:count, :, :, None], y[:count].astype("int32")


@pytest.fixture(scope="module")
def fashion():
    try:
        return _fashion_mnist(512)
    except (OSError, ValueError) as error:
        pytest.skip(f"Fashion-MNIST not available here: {error}")


# ---------------------------------------------------------------------------
# Argument validation: every bad argument raises before anything is built.

COMMON_BAD = [
    (dict(weights="imagenet"), "No pretrained ImageNet weights exist"),
    (dict(weights="missing.weights.h5"), "file does not exist"),
    (dict(weights="model.h5"), r"must be a path ending in `\.weights\.h5`"),
    (dict(weights=3), "`weights` must be None or the path"),
    (dict(pooling="mean"), "`pooling` must be None, 'avg' or 'max'"),
    (dict(classes=0), "`classes` must be a positive integer"),
    (dict(classes=2.5), "`classes` must be a positive integer"),
    (dict(classes=True), "`classes` must be a positive integer"),
    (
        dict(classifier_activation="softmaxx"),
        "`classifier_activation` must be None, a callable",
    ),
    (dict(include_top="yes"), "`include_top` must be True or False"),
    (dict(input_shape=(32, 32)), "`input_shape` must be a tuple of 3"),
    (dict(input_shape=(4, 4, 3)), "`input_shape` must be a tuple of 3"),
    (dict(input_shape=(32, 32, 0)), "`input_shape` must be a tuple of 3"),
    (dict(input_shape="32x32"), "`input_shape` must be a tuple of 3"),
    (
        dict(input_tensor=np.zeros((1, 32, 32, 3), "float32")),
        "`input_tensor` must be a Keras tensor",
    ),
    (dict(conv_type="ghost"), "`conv_type` must be one of"),
    (dict(reduction_ratio=0.5), "`reduction_ratio` must be a number >= 1"),
    (dict(num_groups=0), "`num_groups` must be a positive integer"),
    (dict(num_groups=1000), "`num_groups` cannot exceed the number of seed"),
    (dict(seed=-1), "`seed` must be None or a non-negative integer"),
    (dict(groupnl_strided="no"), "`groupnl_strided` must be True or False"),
    (dict(period_range=(2.0, 1.0)), "`period_range` must be two finite"),
    (dict(shift_range=(0.0,)), "`shift_range` must be two finite"),
    (dict(trainable_nlf="yes"), "`trainable_nlf` must be True or False"),
    (
        dict(synchronized_batchnorm="yes"),
        "`synchronized_batchnorm` must be True or False",
    ),
    (dict(name=""), "`name` must be None or a non-empty string"),
]
FAMILY_BAD = {
    "resnet": [
        # 16 filters / 3.2 -> 5 seed maps, gcd(16, 5) = 1.
        (
            dict(conv_type="sparse", reduction_ratio=3.2),
            "must exceed 1",
        ),
    ],
    "inverted": [
        (dict(conv_type="dense"), "only have a sparse GroupNL counterpart"),
        (
            dict(dropout_rate=1.0),
            r"`dropout_rate` must be a number in \[0, 1\)",
        ),
        (dict(include_preprocessing=1), "`include_preprocessing` must be True"),
    ],
}


def _bad_cases():
    for key in ALL:
        function, family, _, _ = MODELS[key]
        cases = list(COMMON_BAD) + FAMILY_BAD[family]
        if key != "resnet8":
            cases.append((dict(stem="tiny"), "`stem` must be 'auto'"))
        if key.startswith("mobilenet"):
            cases.append((dict(alpha=0), "`alpha` must be a positive number"))
        if key == "efficientnet_es":
            cases.append(
                (dict(drop_connect_rate=-0.1), "`drop_connect_rate` must be")
            )
        if family == "resnet" and key != "resnet8":
            # The gcd case is specific to ResNet-8's 16-filter convs.
            cases = [c for c in cases if "must exceed 1" not in c[1]]
        for kwargs, message in cases:
            label = ",".join(f"{k}={v!r}"[:24] for k, v in kwargs.items())
            yield pytest.param(key, kwargs, message, id=f"{key}-{label}")


@pytest.mark.parametrize("key,kwargs,message", list(_bad_cases()))
def test_bad_arguments(key, kwargs, message):
    function = MODELS[key][0]
    with pytest.raises(ValueError, match=message):
        function(**kwargs)


def test_input_tensor_and_shape_must_agree():
    tensor = keras.Input((28, 28, 1))
    with pytest.raises(ValueError, match="`input_shape` and `input_tensor`"):
        applications.GroupNLResNet8(
            input_tensor=tensor, input_shape=(32, 32, 3)
        )


def test_input_tensor_must_be_4d():
    with pytest.raises(ValueError, match="must be a 4D image batch"):
        applications.GroupNLResNet8(input_tensor=keras.Input((32, 32)))


# ---------------------------------------------------------------------------
# The keras.applications contract, for every model.

CONTRACT = {
    "top_logits": dict(
        include_top=True,
        input_shape=(32, 32, 3),
        classes=7,
        classifier_activation=None,
    ),
    "top_max_sigmoid": dict(
        include_top=True,
        input_shape=(32, 32, 3),
        pooling="max",
        classes=3,
        classifier_activation="sigmoid",
    ),
    "avg_unknown_size": dict(include_top=False, pooling="avg"),
    "features_input_tensor": dict(include_top=False, input_tensor=True),
}


# ResNet-101/152 build slowly (500+ layers); they run the two cases that
# cover every argument, the others all four.
BIG = ("resnet101", "resnet152")
CONTRACT_CASES = [
    pytest.param(key, case, id=f"{key}-{case}")
    for key in ALL
    for case in CONTRACT
    if key not in BIG or case in ("top_max_sigmoid", "features_input_tensor")
]


@pytest.mark.parametrize("key,case", CONTRACT_CASES)
def test_contract(key, case):
    function = MODELS[key][0]
    kwargs = dict(CONTRACT[case])
    source = None
    if kwargs.pop("input_tensor", False):
        # A layer output, not an Input: the model must start from its source.
        source = keras.Input((28, 28, 1), name="gray_image")
        kwargs["input_tensor"] = keras.layers.Rescaling(1.0, name="identity")(
            source
        )
    model = function(seed=0, **kwargs)
    width = FEATURES[key]

    if case == "top_logits":
        assert model.output.shape == (None, 7)
        assert model.input.shape == (None, 32, 32, 3)
        assert (
            model.get_layer("predictions").activation
            is keras.activations.linear
        )
    elif case == "top_max_sigmoid":
        assert model.output.shape == (None, 3)
        model.get_layer("max_pool")
    elif case == "avg_unknown_size":
        assert model.input.shape == (None, None, None, 3)
        assert model.output.shape == (None, width)
        model.get_layer("avg_pool")
    else:
        assert model.input is source
        assert len(model.output.shape) == 4
        assert model.output.shape[-1] == width
        assert "avg_pool" not in [lay.name for lay in model.layers]

    if key in CHEAP:
        batch = 2
        shape = (batch,) + tuple(
            s if s is not None else 32 for s in model.input.shape[1:]
        )
        x = np.random.default_rng(0).uniform(0, 255, shape).astype("float32")
        y = keras.ops.convert_to_numpy(model(x, training=False))
        assert np.all(np.isfinite(y))
        if case == "top_max_sigmoid":
            assert np.all((y >= 0) & (y <= 1))


def test_softmax_rows_sum_to_one():
    model = applications.GroupNLResNet8(
        input_shape=(32, 32, 3), classes=7, seed=0
    )
    x = (
        np.random.default_rng(1)
        .uniform(0, 255, (2, 32, 32, 3))
        .astype("float32")
    )
    y = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-5)


# ---------------------------------------------------------------------------
# Which convs become GroupNL, stable names, stems, seeds.


@pytest.mark.parametrize(
    "key",
    [
        "resnet8",
        "resnet18",
        "resnet50",
        "mobilenet_v3_small",
        "mobilenet_v3_large",
        "efficientnet_es",
    ],
)
def test_replaced_convs_and_stable_names(key):
    function, family, _, _ = MODELS[key]
    kwargs = dict(include_top=False, input_shape=(32, 32, 3))
    groupnl = function(seed=0, **kwargs)
    unstrided = function(seed=0, groupnl_strided=False, **kwargs)
    plain = function(conv_type="plain", **kwargs)
    replaced = [
        lay for lay in groupnl.layers if isinstance(lay, GROUPNL_LAYERS)
    ]
    kept_strided = [
        lay for lay in unstrided.layers if isinstance(lay, GROUPNL_LAYERS)
    ]
    assert (len(replaced), len(kept_strided)) == REPLACED[key]
    assert not any(isinstance(lay, GROUPNL_LAYERS) for lay in plain.layers)
    # Like for like: the same layer names in the same order.
    assert [lay.name for lay in groupnl.layers] == [
        lay.name for lay in plain.layers
    ]
    assert plain.name == groupnl.name[len("groupnl_") :]
    if family == "inverted":
        assert all(isinstance(lay, SparseGroupNLConv2D) for lay in replaced)
        assert all(
            lay.filters == lay.in_channels
            and lay.seed_channels == lay.filters // 2
            for lay in replaced
        )
        assert {lay.name for lay in replaced} == {
            lay.name
            for lay in plain.layers
            if isinstance(lay, keras.layers.DepthwiseConv2D)
        }
    else:
        assert all(type(lay) is GroupNLConv2D for lay in replaced)
        assert all(lay.kernel_size == (3, 3) for lay in replaced)
    # Layer k gets the NLF seed seed + k.
    assert [lay.seed for lay in replaced] == list(range(len(replaced)))


def test_stem_choice():
    small = applications.GroupNLResNet18(
        include_top=False, input_shape=(32, 32, 3)
    )
    assert small.get_layer("conv1_conv").kernel_size == (3, 3)
    assert "pool1_pool" not in [lay.name for lay in small.layers]
    assert small.output.shape == (None, 4, 4, 512)
    forced = applications.GroupNLResNet18(
        include_top=False, input_shape=(32, 32, 3), stem="imagenet"
    )
    assert forced.get_layer("conv1_conv").kernel_size == (7, 7)
    assert forced.output.shape == (None, 1, 1, 512)
    big = applications.GroupNLResNet18(
        include_top=False, input_shape=(96, 96, 3)
    )
    assert big.get_layer("conv1_conv").strides == (2, 2)
    mobile = applications.GroupNLMobileNetV3Small(
        include_top=False, input_shape=(28, 28, 1)
    )
    assert mobile.get_layer("conv").strides == (1, 1)
    assert mobile.output.shape == (None, 2, 2, 576)


def test_seed_reproducible_nlf_parameters():
    first = applications.GroupNLResNet8(seed=5)
    second = applications.GroupNLResNet8(seed=5)
    other = applications.GroupNLResNet8(seed=6)

    def nlf(model):
        return [
            keras.ops.convert_to_numpy(w)
            for lay in model.layers
            if isinstance(lay, GROUPNL_LAYERS)
            for w in (lay.nlf_period, lay.nlf_shift)
        ]

    for a, b in zip(nlf(first), nlf(second)):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(nlf(first), nlf(other)))


@pytest.mark.parametrize("key", ["resnet8", "mobilenet_v3_small"])
def test_nlf_settings_reach_every_groupnl_layer(key):
    function = MODELS[key][0]
    model = function(
        input_shape=(32, 32, 3),
        period_range=(0.5, 4.0),
        shift_range=(-3.0, 3.0),
        trainable_nlf=True,
        seed=0,
    )
    layers = [lay for lay in model.layers if isinstance(lay, GROUPNL_LAYERS)]
    assert layers
    for lay in layers:
        assert lay.period_range == (0.5, 4.0)
        assert lay.shift_range == (-3.0, 3.0)
        assert lay.trainable_nlf
        period = keras.ops.convert_to_numpy(lay.nlf_period)
        shift = keras.ops.convert_to_numpy(lay.nlf_shift)
        assert np.all((period >= 0.5) & (period <= 4.0))
        assert np.all((shift >= -3.0) & (shift <= 3.0))
        # Trainable NLFs are trainable weights of the layer.
        trainable = {id(w) for w in lay.trainable_weights}
        assert id(lay.nlf_period) in trainable


def test_channels_first_builds_symbolically():
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    try:
        model = applications.GroupNLResNet8(
            input_shape=(1, 28, 28), include_top=False
        )
        assert model.output.shape == (None, 64, 7, 7)
        mobile = applications.GroupNLMobileNetV3Small(
            input_shape=(3, 32, 32), include_top=False, pooling="avg"
        )
        assert mobile.output.shape == (None, 576)
    finally:
        keras.config.set_image_data_format(previous)


# ---------------------------------------------------------------------------
# synchronized_batchnorm: BatchNormalization(synchronized=True), which Keras
# offers on TensorFlow only (for tf.distribute strategies).

ON_TENSORFLOW = keras.backend.backend() == "tensorflow"
# One model per family module.
SYNC_FAMILIES = ["resnet8", "resnet18", "mobilenet_v3_small", "efficientnet_es"]


def _batch_norms(model):
    layers = [
        lay
        for lay in model.layers
        if isinstance(lay, keras.layers.BatchNormalization)
    ]
    assert layers
    return layers


@pytest.mark.skipif(
    not ON_TENSORFLOW,
    reason="BatchNormalization(synchronized=True) exists on TensorFlow "
    "only; the other backends check that it is refused",
)
@pytest.mark.parametrize("key", SYNC_FAMILIES)
def test_synchronized_batchnorm_on_every_batchnorm(key):
    function = MODELS[key][0]
    kwargs = dict(input_shape=(32, 32, 3), include_top=False)
    with keras.StatelessScope(initialize_variables=False):
        synced = function(synchronized_batchnorm=True, **kwargs)
        default = function(**kwargs)
    assert all(lay.synchronized for lay in _batch_norms(synced))
    assert not any(lay.synchronized for lay in _batch_norms(default))
    assert [lay.name for lay in synced.layers] == [
        lay.name for lay in default.layers
    ]


@pytest.mark.skipif(
    ON_TENSORFLOW, reason="refused on the backends other than TensorFlow"
)
@pytest.mark.parametrize("key", SYNC_FAMILIES)
def test_synchronized_batchnorm_refused_off_tensorflow(key):
    function = MODELS[key][0]
    with pytest.raises(ValueError, match="needs the TensorFlow backend"):
        function(input_shape=(32, 32, 3), synchronized_batchnorm=True)


@pytest.mark.skipif(
    not ON_TENSORFLOW,
    reason="a synchronized model can only be built on TensorFlow",
)
def test_synchronized_weights_load_into_the_default_model(tmp_path):
    # What docs/distributed.md tells users who move a model trained with
    # MirroredStrategy to another backend: same variables, same outputs.
    model = applications.GroupNLResNet8(
        input_shape=(28, 28, 1), seed=3, synchronized_batchnorm=True
    )
    path = str(tmp_path / "synced.keras")
    model.save(path)
    restored = applications.GroupNLResNet8(
        input_shape=(28, 28, 1), weights=path
    )
    assert not any(lay.synchronized for lay in _batch_norms(restored))
    x = np.random.default_rng(3).normal(size=(2, 28, 28, 1)).astype("float32")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(restored(x, training=False)),
        keras.ops.convert_to_numpy(model(x, training=False)),
    )


# ---------------------------------------------------------------------------
# Parameter counts: GroupNL against the plain counterpart.


@pytest.mark.parametrize("key", ALL)
def test_parameter_counts(key):
    function, family, side, classes = MODELS[key]
    plain = function(conv_type="plain")
    kind, reference = PLAIN_REFERENCE[key]
    counted = (
        plain.count_params() if kind == "total" else _trainable_count(plain)
    )
    assert counted == reference

    # The defaults: the reference input size and a softmax head.
    function_defaults = function()
    assert function_defaults.input.shape == (None, side, side, 3)
    assert function_defaults.output.shape == (None, classes)
    head = function_defaults.get_layer("predictions")
    assert head.activation is keras.activations.softmax
    assert function_defaults.name == "groupnl_" + plain.name

    if family != "resnet":
        conv_types = ("sparse",)
    elif key in BIG:
        conv_types = (
            "dense",
        )  # sparse: same code as ResNet-50's, tested there
    else:
        conv_types = ("dense", "sparse")
    for conv_type in conv_types:
        if conv_type == conv_types[0]:
            model = function_defaults
        else:
            model = function(conv_type=conv_type)
        replaced = [
            lay for lay in model.layers if isinstance(lay, GROUPNL_LAYERS)
        ]
        assert len(replaced) == REPLACED[key][0]
        layer_class = (
            GroupNLConv2D if conv_type == "dense" else SparseGroupNLConv2D
        )
        assert all(type(lay) is layer_class for lay in replaced)
        if family == "resnet":
            assert model.count_params() < plain.count_params()
            assert _trainable_count(model) < _trainable_count(plain)
        else:
            # A sparse GroupNL conv with r = 2 has exactly the weights of the
            # depthwise conv it replaces, plus 2 * num_groups frozen NLF values.
            assert _trainable_count(model) == _trainable_count(plain)
            replaced = REPLACED[key][0]
            assert model.count_params() == plain.count_params() + 8 * replaced


def test_resnet8_parameter_counts():
    plain = applications.GroupNLResNet8(conv_type="plain")
    dense = applications.GroupNLResNet8()
    sparse = applications.GroupNLResNet8(conv_type="sparse")
    assert plain.count_params() == 78_666
    assert sparse.count_params() < dense.count_params() < plain.count_params()
    # The reference topology: 32x32x3 in, 10 classes out.
    assert plain.input.shape == (None, 32, 32, 3)
    assert plain.output.shape == (None, 10)


# ---------------------------------------------------------------------------
# Saving and loading.


@pytest.mark.parametrize(
    "key,conv_type", [("resnet8", "dense"), ("resnet8", "sparse")]
)
def test_keras_save_load_same_outputs(key, conv_type, tmp_path):
    function = MODELS[key][0]
    model = function(
        input_shape=(32, 32, 3), classes=4, conv_type=conv_type, seed=2
    )
    x = (
        np.random.default_rng(2)
        .uniform(0, 255, (2, 32, 32, 3))
        .astype("float32")
    )
    if key == "resnet8":
        x = resnet.preprocess_input(x)
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    got = keras.ops.convert_to_numpy(loaded(x, training=False))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert [lay.name for lay in loaded.layers] == [
        lay.name for lay in model.layers
    ]


@pytest.mark.parametrize("key", ["mobilenet_v3_small", "efficientnet_es"])
def test_keras_save_load_same_weights_and_config(key, tmp_path):
    """The inverted-residual models round-trip exactly through `.keras`.

    Same layers, configs and weight values (NLF tables included) make the
    same outputs; the forward pass itself is compared on ResNet-8 above and
    after training in the fit test, which keeps this test cheap on JAX.
    """
    function = MODELS[key][0]
    model = function(input_shape=(32, 32, 3), classes=4, seed=2)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.name == model.name
    assert [lay.get_config() for lay in loaded.layers] == [
        lay.get_config() for lay in model.layers
    ]
    for a, b in zip(_numpy(model.weights), _numpy(loaded.weights)):
        np.testing.assert_array_equal(a, b)
    assert (
        sum(isinstance(lay, SparseGroupNLConv2D) for lay in loaded.layers)
        == (REPLACED[key][0])
    )


@pytest.mark.parametrize("suffix", [".weights.h5", ".keras"])
def test_weights_argument_loads_saved_weights(suffix, tmp_path):
    model = applications.GroupNLResNet8(input_shape=(28, 28, 1), seed=3)
    path = str(tmp_path / f"resnet8{suffix}")
    if suffix == ".keras":
        model.save(path)
    else:
        model.save_weights(path)
    x = np.random.default_rng(3).normal(size=(2, 28, 28, 1)).astype("float32")
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    # Another seed: the NLF parameters come from the file, not the seed.
    restored = applications.GroupNLResNet8(
        input_shape=(28, 28, 1), seed=99, weights=path
    )
    got = keras.ops.convert_to_numpy(restored(x, training=False))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "function,kwargs",
    [
        (applications.GroupNLResNet8, dict(conv_type="sparse")),
        (applications.GroupNLResNet8, dict(conv_type="plain")),
        (applications.GroupNLResNet8, dict(classes=5)),
        (applications.GroupNLResNet8, dict(input_shape=(28, 28, 3))),
        (applications.GroupNLResNet8, dict(include_top=False)),
        (applications.GroupNLMobileNetV3Small, dict(classes=10)),
    ],
    ids=["sparse", "plain", "classes", "channels", "no_top", "mobilenet"],
)
def test_weights_of_another_architecture(function, kwargs, tmp_path):
    source = applications.GroupNLResNet8(input_shape=(28, 28, 1), seed=0)
    path = str(tmp_path / "resnet8.weights.h5")
    source.save_weights(path)
    kwargs.setdefault("input_shape", (28, 28, 1))
    with pytest.raises(ValueError, match="weights of a different architecture"):
        function(weights=path, **kwargs)


def test_weights_file_that_is_not_hdf5(tmp_path):
    path = tmp_path / "broken.weights.h5"
    path.write_bytes(b"not an hdf5 file")
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        applications.GroupNLResNet8(weights=str(path))


def test_truncated_keras_file_as_weights(tmp_path):
    model = applications.GroupNLResNet8()
    path = tmp_path / "model.keras"
    model.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"not a complete Keras v3 `.keras`"):
        applications.GroupNLResNet8(weights=str(path))


# ---------------------------------------------------------------------------
# Preprocessing.


def test_mobilenet_preprocess_input_checks_data_format():
    from keras_groupnl.applications import mobilenet_v3

    x = np.zeros((1, 4, 4, 3), "float32")
    assert mobilenet_v3.preprocess_input(x, data_format="channels_last") is x
    with pytest.raises(ValueError, match="Received: data_format='bogus'"):
        mobilenet_v3.preprocess_input(x, data_format="bogus")


def test_resnet_preprocess_input():
    image = np.full((2, 4, 4, 3), 255.0, "float32")
    out = resnet.preprocess_input(image)
    expected = (1.0 - np.array([0.485, 0.456, 0.406])) / np.array(
        [0.229, 0.224, 0.225]
    )
    np.testing.assert_allclose(out[0, 0, 0], expected, rtol=1e-5)
    assert image[0, 0, 0, 0] == 255.0  # not modified in place
    gray = resnet.preprocess_input(np.zeros((4, 4, 1), "uint8"))
    np.testing.assert_allclose(gray, -0.449 / 0.226, rtol=1e-4)
    tensor = resnet.preprocess_input(keras.ops.convert_to_tensor(image))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(tensor), out, rtol=1e-5
    )
    first = resnet.preprocess_input(
        np.transpose(image, (0, 3, 1, 2)), data_format="channels_first"
    )
    np.testing.assert_allclose(
        np.transpose(first, (0, 2, 3, 1)), out, rtol=1e-6
    )
    with pytest.raises(ValueError, match="handles 1 or 3 channels"):
        resnet.preprocess_input(np.zeros((1, 4, 4, 2)))
    with pytest.raises(ValueError, match="`data_format` must be"):
        resnet.preprocess_input(image, data_format="nhwc")


@pytest.mark.parametrize("module", [mobilenet_v3, efficientnet_edgetpu])
def test_in_model_preprocessing_families(module):
    x = np.arange(12, dtype="float32").reshape(1, 2, 2, 3)
    assert module.preprocess_input(x) is x


# ---------------------------------------------------------------------------
# Fine-tuning with model.fit on real data (Fashion-MNIST).


def _fit_losses(model, x, y, epochs=3, learning_rate=2e-3):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
    )
    history = model.fit(
        x, y, batch_size=64, epochs=epochs, verbose=0, shuffle=False
    )
    return history.history["loss"]


@pytest.mark.parametrize(
    "key,conv_type",
    [
        ("resnet8", "dense"),
        ("resnet8", "sparse"),
        ("mobilenet_v3_small", "sparse"),
    ],
)
def test_fit_lowers_loss_on_fashion_mnist(key, conv_type, fashion):
    x, y = fashion
    function = MODELS[key][0]
    keras.utils.set_random_seed(0)
    model = function(
        input_shape=(28, 28, 1), classes=10, conv_type=conv_type, seed=0
    )
    if key == "resnet8":
        x = resnet.preprocess_input(x)
    else:
        x = mobilenet_v3.preprocess_input(x.astype("float32"))
    losses = _fit_losses(model, x, y)
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.9 * losses[0], losses


def test_freeze_backbone_train_head(fashion):
    x, y = fashion
    x = resnet.preprocess_input(x)
    keras.utils.set_random_seed(0)
    backbone = applications.GroupNLResNet8(
        include_top=False, pooling="avg", input_shape=(28, 28, 1), seed=0
    )
    backbone.trainable = False
    inputs = keras.Input((28, 28, 1))
    features = backbone(inputs, training=False)
    outputs = keras.layers.Dense(10, activation="softmax", name="head")(
        features
    )
    model = keras.Model(inputs, outputs)
    assert len(model.trainable_weights) == 2
    frozen = _numpy(backbone.weights)
    head = _numpy(model.get_layer("head").weights)
    losses = _fit_losses(model, x, y, epochs=3, learning_rate=1e-2)
    assert losses[-1] < losses[0], losses
    for before, after in zip(frozen, _numpy(backbone.weights)):
        np.testing.assert_array_equal(before, after)
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(head, _numpy(model.get_layer("head").weights))
    )


def test_freeze_all_but_classifier(fashion):
    x, y = fashion
    x = resnet.preprocess_input(x[:128])
    model = applications.GroupNLResNet8(input_shape=(28, 28, 1), seed=0)
    for layer in model.layers:
        layer.trainable = layer.name == "predictions"
    frozen = _numpy(
        [
            w
            for lay in model.layers
            if lay.name != "predictions"
            for w in lay.weights
        ]
    )
    _fit_losses(model, x, y[:128], epochs=1)
    after = _numpy(
        [
            w
            for lay in model.layers
            if lay.name != "predictions"
            for w in lay.weights
        ]
    )
    for a, b in zip(frozen, after):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_trained_model_loads_on_another_backend(fashion, tmp_path):
    """A `.keras` file trained here gives the same outputs elsewhere."""
    other = {"tensorflow": "jax", "jax": "torch", "torch": "tensorflow"}[
        keras.backend.backend()
    ]
    x, y = fashion
    x = resnet.preprocess_input(x[:128])
    model = applications.GroupNLResNet8(input_shape=(28, 28, 1), seed=0)
    _fit_losses(model, x, y[:128], epochs=1)
    expected = keras.ops.convert_to_numpy(model(x[:8], training=False))
    np.save(tmp_path / "x.npy", x[:8])
    np.save(tmp_path / "expected.npy", expected)
    model.save(tmp_path / "model.keras")
    script = (
        "import numpy as np, keras, keras_groupnl\n"
        f"m = keras.saving.load_model({str(tmp_path / 'model.keras')!r})\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
        f"e = np.load({str(tmp_path / 'expected.npy')!r})\n"
        "y = keras.ops.convert_to_numpy(m(x, training=False))\n"
        "np.testing.assert_allclose(y, e, rtol=1e-4, atol=1e-5)\n"
    )
    env = dict(os.environ, KERAS_BACKEND=other)
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]


# ---------------------------------------------------------------------------
# The whole application contract, through the one entry point.


@pytest.mark.parametrize(
    "key,kwargs,numeric",
    [
        ("resnet8", dict(conv_type="dense"), True),
        ("resnet8", dict(conv_type="sparse", reduction_ratio=4), True),
        ("resnet18", dict(conv_type="dense"), False),
        ("resnet50", dict(conv_type="sparse"), False),
        ("mobilenet_v3_small", dict(), True),
        ("efficientnet_es", dict(), False),
    ],
    ids=[
        "resnet8",
        "resnet8_sparse_r4",
        "resnet18",
        "resnet50_sparse",
        "mobilenet_v3_small",
        "efficientnet_es",
    ],
)
def test_application_contract(key, kwargs, numeric, tmp_path):
    run_application_contract(
        MODELS[key][0], (32, 32, 3), 5, tmp_path, numeric=numeric, **kwargs
    )
