"""Tests of GroupNLConv2D and SparseGroupNLConv2D.

Run once per backend, e.g. `KERAS_BACKEND=jax python -m pytest tests/`.
"""

import inspect
import json
import math
import re

import keras
import numpy as np
import pytest
from keras import ops

from keras_groupnl.layers import GroupNLConv2D
from keras_groupnl.layers import SparseGroupNLConv2D
from tests.support.layer_contract import run_layer_contract
from tests.support.numpy_reference import conv2d as reference_conv2d
from tests.support.numpy_reference import groupnl_reference

LAYERS = [GroupNLConv2D, SparseGroupNLConv2D]
LAYER_IDS = ["dense", "sparse"]

parametrize_layers = pytest.mark.parametrize("cls", LAYERS, ids=LAYER_IDS)


def to_numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


class NumpyNormal(keras.initializers.Initializer):
    """Normal values drawn with NumPy, for tests.

    The same values on every backend, and cheap: Keras' random initializers
    on JAX compile a random kernel for every new weight shape, which costs
    seconds per layer on a loaded CPU.
    """

    def __init__(self, seed=0, stddev=0.5):
        self.seed = seed
        self.stddev = stddev

    def __call__(self, shape, dtype=None):
        values = np.random.default_rng(self.seed).normal(
            scale=self.stddev, size=shape
        )
        return ops.convert_to_tensor(values, dtype=dtype or "float32")

    def get_config(self):
        return {"seed": self.seed, "stddev": self.stddev}


def predict(layer, x):
    """Runs `layer` compiled (jit / tf.function), as fit and predict do."""
    inputs = keras.Input(batch_shape=(None,) + tuple(x.shape[1:]))
    model = keras.Model(inputs, layer(inputs))
    return to_numpy(model.predict_on_batch(x))


def conv_groups(cls, in_channels, seed_channels):
    """Groups of the seed conv, derived here from the method's description."""
    if cls is SparseGroupNLConv2D:
        return math.gcd(in_channels, seed_channels)
    return 1


def reference_for(layer, x, cls, in_channels):
    """Runs the NumPy reference with the layer's actual weights."""
    s = math.ceil(layer.filters / layer.reduction_ratio)
    kernel = to_numpy(layer.kernel)
    groups = conv_groups(cls, in_channels, s)
    kh, kw = layer.kernel_size
    assert kernel.shape == (kh, kw, in_channels // groups, s)
    bias = to_numpy(layer.bias) if layer.use_bias else None
    if layer.filters > s:
        periods = to_numpy(layer.nlf_period)
        shifts = to_numpy(layer.nlf_shift)
    else:
        periods = shifts = None
    channels_first = layer.data_format == "channels_first"
    x_nhwc = np.transpose(x, (0, 2, 3, 1)) if channels_first else x
    ref = groupnl_reference(
        x_nhwc,
        kernel,
        bias,
        periods,
        shifts,
        filters=layer.filters,
        reduction_ratio=layer.reduction_ratio,
        num_groups=layer.num_groups,
        shuffle=layer.shuffle,
        groups=groups,
        strides=layer.strides,
        padding=layer.padding,
        dilation_rate=layer.dilation_rate,
    )
    return np.transpose(ref, (0, 3, 1, 2)) if channels_first else ref


# --------------------------------------------------------------------------
# The reference itself, checked against Keras' own (grouped) Conv2D.
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kernel_size,strides,padding,dilation,groups",
    [
        ((3, 2), (2, 1), "same", 1, 2),
        (3, 1, "same", 2, 1),
        ((2, 3), 2, "valid", 1, 2),
        (4, 2, "same", 1, 1),
    ],
)
def test_reference_conv_matches_keras_conv2d(
    kernel_size, strides, padding, dilation, groups
):
    x = np.random.default_rng(0).normal(size=(2, 9, 8, 4)).astype("float32")
    conv = keras.layers.Conv2D(
        6,
        kernel_size,
        strides=strides,
        padding=padding,
        dilation_rate=dilation,
        groups=groups,
        use_bias=True,
        kernel_initializer=NumpyNormal(seed=0),
        bias_initializer=NumpyNormal(seed=1),
    )
    y = to_numpy(conv(x))
    ref = reference_conv2d(
        x,
        to_numpy(conv.kernel),
        to_numpy(conv.bias),
        strides=strides,
        padding=padding,
        dilation_rate=dilation,
        groups=groups,
    )
    np.testing.assert_allclose(y, ref, atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------
# Correctness against the NumPy reference.
# --------------------------------------------------------------------------

# in_channels is chosen so that it shares a factor with the seed channel
# count s = ceil(filters / r), as the sparse layer requires.
CORRECTNESS_CASES = {
    # filters=8, r=2: s=4, one channel per group, sparse = depthwise.
    "basic": dict(filters=8, in_channels=4),
    "stride2_same": dict(
        filters=8, in_channels=4, strides=2, padding="same", num_groups=2
    ),
    "stride2_valid": dict(
        filters=12, reduction_ratio=4, num_groups=3, in_channels=6, strides=2
    ),
    "strides_2_1_even_kernel_same": dict(
        filters=8,
        in_channels=2,
        kernel_size=(2, 3),
        strides=(2, 1),
        padding="same",
        num_groups=2,
    ),
    # Unequal strides, channels_first, sparse seed groups of 2 channels:
    # TensorFlow without oneDNN has neither an NCHW conv nor an
    # unequal-stride depthwise conv (see `kernel_support`).
    "strides_1_2_channels_first_grouped": dict(
        filters=16,
        in_channels=16,
        strides=(1, 2),
        padding="same",
        data_format="channels_first",
    ),
    "dilation2_same": dict(
        filters=8, in_channels=4, dilation_rate=2, padding="same", num_groups=2
    ),
    "dilation2_valid": dict(
        filters=12,
        reduction_ratio=3,
        num_groups=2,
        in_channels=8,
        dilation_rate=2,
    ),
    "dilation_2_1": dict(
        filters=8, in_channels=4, dilation_rate=(2, 1), padding="same"
    ),
    "r4": dict(filters=16, reduction_ratio=4, num_groups=2, in_channels=4),
    "r3": dict(filters=9, reduction_ratio=3, num_groups=3, in_channels=6),
    # s=6: sparse has 2 conv groups, 2 inputs and 3 outputs per group.
    "s6_g4_uneven_groups": dict(filters=12, num_groups=4, in_channels=4),
    # s=3, 7 generated maps: 3 copies, the last one truncated; groups [2, 1].
    "f10_r4_g2": dict(
        filters=10, reduction_ratio=4, num_groups=2, in_channels=6
    ),
    "f10_r4_g2_shuffle": dict(
        filters=10, reduction_ratio=4, num_groups=2, in_channels=6, shuffle=True
    ),
    # s=4, 3 generated maps: 1 truncated copy; groups [2, 1, 1].
    "f7_r2_g3": dict(filters=7, num_groups=3, in_channels=4),
    "f7_r2_g3_shuffle": dict(
        filters=7, num_groups=3, in_channels=4, shuffle=True
    ),
    "shuffle_r4": dict(
        filters=16, reduction_ratio=4, num_groups=4, in_channels=8, shuffle=True
    ),
    # Sparse: 6 conv groups of 4 inputs x 3 outputs (summed in blocks).
    "s18_in24_blocks": dict(filters=36, num_groups=4, in_channels=24),
    "s18_in24_blocks_channels_first": dict(
        filters=36,
        num_groups=4,
        in_channels=24,
        data_format="channels_first",
        shuffle=True,
    ),
    # Sparse: 2 conv groups of 4 inputs x 5 outputs.
    "s10_in8_wide_groups": dict(
        filters=20, num_groups=3, in_channels=8, padding="same"
    ),
    "s10_in8_wide_groups_channels_first": dict(
        filters=20,
        num_groups=3,
        in_channels=8,
        padding="same",
        data_format="channels_first",
    ),
    "one_group": dict(
        filters=12, reduction_ratio=4, num_groups=1, in_channels=3
    ),
    "float_ratio": dict(
        filters=10, reduction_ratio=2.5, num_groups=2, in_channels=2
    ),
    # r=1: no generated channel, no NLF weights.
    "r1_seeds_only": dict(
        filters=6, reduction_ratio=1, num_groups=2, in_channels=3
    ),
    "use_bias": dict(
        filters=10,
        reduction_ratio=4,
        num_groups=2,
        in_channels=6,
        use_bias=True,
        bias_initializer=NumpyNormal(seed=1),
    ),
    "custom_ranges": dict(
        filters=12,
        reduction_ratio=3,
        num_groups=2,
        in_channels=4,
        period_range=(3.0, 6.0),
        shift_range=(-2.0, 0.5),
    ),
    "pointwise": dict(filters=8, kernel_size=1, in_channels=4),
    # Regressions: Keras' TF `ops.add` treats a vector-like operand as a
    # bias of the last axis when that axis has its length. These sizes make
    # rows (channels_last, shuffled single copy) or cols (channels_first)
    # equal to the seed channel count s.
    "regress_shuffle_one_copy_rows_eq_s": dict(
        filters=7,
        num_groups=3,
        in_channels=4,
        kernel_size=1,
        shuffle=True,
        input_hw=(4, 5),
    ),
    "regress_channels_first_one_copy_cols_eq_s": dict(
        filters=8,
        num_groups=2,
        in_channels=4,
        kernel_size=1,
        data_format="channels_first",
        input_hw=(5, 4),
    ),
    "regress_channels_first_bias_cols_eq_s": dict(
        filters=6,
        reduction_ratio=1,
        num_groups=2,
        in_channels=3,
        kernel_size=1,
        data_format="channels_first",
        use_bias=True,
        bias_initializer=NumpyNormal(seed=1),
        input_hw=(5, 6),
    ),
    "regress_channels_first_bias_one_copy_cols_eq_s": dict(
        filters=7,
        num_groups=3,
        in_channels=4,
        data_format="channels_first",
        use_bias=True,
        bias_initializer=NumpyNormal(seed=1),
        padding="same",
        input_hw=(6, 4),
    ),
    "channels_first": dict(
        filters=10,
        reduction_ratio=4,
        num_groups=2,
        in_channels=6,
        data_format="channels_first",
        strides=2,
        padding="same",
        use_bias=True,
        bias_initializer=NumpyNormal(seed=1),
    ),
    "channels_first_shuffle_dilation": dict(
        filters=7,
        num_groups=3,
        in_channels=4,
        data_format="channels_first",
        dilation_rate=2,
        shuffle=True,
    ),
}


def make_case(cls, case):
    """The layer and a random input of a CORRECTNESS_CASES entry."""
    case = dict(case)
    in_channels = case.pop("in_channels")
    rows, cols = case.pop("input_hw", (11, 10))
    case.setdefault("kernel_size", 3)
    case.setdefault("num_groups", 4)
    case.setdefault("kernel_initializer", NumpyNormal(seed=0))
    data_format = case.setdefault("data_format", "channels_last")
    layer = cls(seed=3, **case)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, rows, cols, in_channels)).astype("float32")
    if data_format == "channels_first":
        x = np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2)))
    return layer, x, in_channels


@parametrize_layers
@pytest.mark.parametrize(
    "case", list(CORRECTNESS_CASES.values()), ids=list(CORRECTNESS_CASES)
)
def test_matches_numpy_reference(cls, case):
    layer, x, in_channels = make_case(cls, case)
    y = predict(layer, x)
    ref = reference_for(layer, x, cls, in_channels)
    assert y.shape == ref.shape
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, ref, atol=1e-5, rtol=1e-5)


# The same comparison, called eagerly, on a subset of the cases.
EAGER_CASES = [
    "stride2_same",
    "f10_r4_g2_shuffle",
    "s18_in24_blocks",
    "regress_shuffle_one_copy_rows_eq_s",
    "channels_first",
    "regress_channels_first_bias_cols_eq_s",
    "regress_channels_first_bias_one_copy_cols_eq_s",
]


@parametrize_layers
@pytest.mark.parametrize("name", EAGER_CASES)
def test_eager_matches_numpy_reference(cls, name):
    layer, x, in_channels = make_case(cls, CORRECTNESS_CASES[name])
    y = to_numpy(layer(x))
    ref = reference_for(layer, x, cls, in_channels)
    np.testing.assert_allclose(y, ref, atol=1e-5, rtol=1e-5)


# The routes taken where a backend lacks a kernel, forced on any machine.
FALLBACK_CASES = [
    "strides_2_1_even_kernel_same",
    "strides_1_2_channels_first_grouped",
    "channels_first",
    "channels_first_shuffle_dilation",
    "regress_channels_first_bias_cols_eq_s",
]


@parametrize_layers
@pytest.mark.parametrize("name", FALLBACK_CASES)
def test_routes_without_channels_first_or_unequal_stride_kernels(
    cls, name, monkeypatch
):
    from keras_groupnl.layers import kernel_support

    for probe in (
        "channels_first_conv",
        "channels_first_depthwise_conv",
        "unequal_stride_depthwise_conv",
    ):
        monkeypatch.setattr(kernel_support, probe, lambda: False)
    layer, x, in_channels = make_case(cls, CORRECTNESS_CASES[name])
    y = predict(layer, x)
    ref = reference_for(layer, x, cls, in_channels)
    np.testing.assert_allclose(y, ref, atol=1e-5, rtol=1e-5)


def test_kernel_probes_answer_for_this_machine():
    # Whatever the machine, each probe agrees with running the op itself.
    from keras_groupnl.layers import kernel_support

    x = np.zeros((1, 2, 6, 6), "float32")

    def runs(function):
        try:
            to_numpy(function())
        except Exception:  # noqa: BLE001 (any backend's kernel error)
            return False
        return True

    assert kernel_support.channels_first_conv() == runs(
        lambda: ops.conv(
            x, np.zeros((3, 3, 2, 2), "float32"), data_format="channels_first"
        )
    )
    assert kernel_support.unequal_stride_depthwise_conv() == runs(
        lambda: ops.depthwise_conv(
            np.transpose(x, (0, 2, 3, 1)),
            np.zeros((3, 3, 2, 1), "float32"),
            strides=(2, 1),
        )
    )
    if keras.backend.backend() != "tensorflow":
        assert kernel_support.channels_first_conv()
        assert kernel_support.unequal_stride_depthwise_conv()


@parametrize_layers
def test_output_layout(cls):
    """Seeds first (unit norm), then sin of one seed channel per output."""
    layer = cls(
        10,
        3,
        reduction_ratio=4,
        num_groups=2,
        seed=5,
        kernel_initializer=NumpyNormal(),
    )
    x = np.random.default_rng(2).normal(size=(1, 6, 6, 6)).astype("float32")
    y = to_numpy(layer(x))
    seeds = y[..., :3]
    np.testing.assert_allclose(
        np.linalg.norm(seeds, axis=-1), np.ones((1, 4, 4)), atol=1e-5
    )
    periods = to_numpy(layer.nlf_period)
    shifts = to_numpy(layer.nlf_shift)
    assert periods.shape == shifts.shape == (3, 2)
    # Seed channels [0, 1] form group 0, channel [2] group 1. Generated
    # channel 4 = seed 1, copy 1; generated channel 5 = seed 2, copy 1.
    np.testing.assert_allclose(
        y[..., 3 + 4],
        np.sin(periods[1, 0] * (seeds[..., 1] - shifts[1, 0])),
        atol=1e-5,
    )
    np.testing.assert_allclose(
        y[..., 3 + 5],
        np.sin(periods[1, 1] * (seeds[..., 2] - shifts[1, 1])),
        atol=1e-5,
    )


@parametrize_layers
@pytest.mark.parametrize("shuffle", [False, True], ids=["ordered", "shuffled"])
def test_nlf_index_helpers_describe_the_output(cls, shuffle):
    """nlf_source_channels / nlf_pair_index name each generated map's origin.

    The converters build their lookup tables from these two arrays.
    """
    layer = cls(
        11,
        3,
        reduction_ratio=3,
        num_groups=2,
        shuffle=shuffle,
        seed=2,
        kernel_initializer=NumpyNormal(),
    )
    x = np.random.default_rng(3).normal(size=(1, 6, 6, 8)).astype("float32")
    y = to_numpy(layer(x))
    s = layer.seed_channels
    source = layer.nlf_source_channels()
    pair = layer.nlf_pair_index()
    assert source.shape == pair.shape == (layer.generated_channels,)
    periods = to_numpy(layer.nlf_period).reshape(-1)[pair]
    shifts = to_numpy(layer.nlf_shift).reshape(-1)[pair]
    expected = np.sin(periods * (y[..., source] - shifts))
    np.testing.assert_allclose(y[..., s:], expected, atol=1e-5)


# --------------------------------------------------------------------------
# Config, serialization, saving.
# --------------------------------------------------------------------------


def full_kwargs():
    """Every constructor argument, none at its default."""
    return dict(
        filters=12,
        kernel_size=(3, 2),
        strides=(2, 1),
        padding="same",
        dilation_rate=1,
        reduction_ratio=3,
        num_groups=2,
        period_range=(0.5, 1.5),
        shift_range=(-1.0, 2.0),
        trainable_nlf=True,
        shuffle=True,
        use_bias=True,
        data_format="channels_first",
        kernel_initializer="he_normal",
        bias_initializer="ones",
        kernel_regularizer=keras.regularizers.L2(0.01),
        bias_regularizer=keras.regularizers.L1(0.02),
        kernel_constraint=keras.constraints.NonNeg(),
        bias_constraint=keras.constraints.MaxNorm(2.0),
        seed=7,
    )


def constructor_arguments(cls):
    params = inspect.signature(cls.__init__).parameters
    return [
        name
        for name, p in params.items()
        if name != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD
    ]


@parametrize_layers
def test_config_lists_every_constructor_argument(cls):
    kwargs = full_kwargs()
    assert set(constructor_arguments(cls)) == set(kwargs)
    config = cls(name="gnl", **kwargs).get_config()
    for name in constructor_arguments(cls):
        assert name in config, name
    assert config["name"] == "gnl"
    assert config["filters"] == 12
    assert tuple(config["kernel_size"]) == (3, 2)
    assert tuple(config["strides"]) == (2, 1)
    assert config["padding"] == "same"
    assert tuple(config["dilation_rate"]) == (1, 1)
    assert config["reduction_ratio"] == 3
    assert config["num_groups"] == 2
    assert tuple(config["period_range"]) == (0.5, 1.5)
    assert tuple(config["shift_range"]) == (-1.0, 2.0)
    assert config["trainable_nlf"] is True
    assert config["shuffle"] is True
    assert config["use_bias"] is True
    assert config["data_format"] == "channels_first"
    assert config["seed"] == 7


@parametrize_layers
@pytest.mark.parametrize("defaults", [False, True], ids=["full", "defaults"])
def test_config_round_trip(cls, defaults):
    kwargs = dict(filters=8, kernel_size=3) if defaults else full_kwargs()
    layer = cls(**kwargs)
    config = layer.get_config()
    revived = cls.from_config(config)
    assert revived.get_config() == config
    # Through JSON, as in a .keras file: lists come back as tuples.
    serialized = json.loads(
        json.dumps(keras.saving.serialize_keras_object(layer))
    )
    revived = keras.saving.deserialize_keras_object(serialized)
    assert type(revived) is cls
    assert revived.get_config() == config
    if not defaults:
        assert isinstance(revived.kernel_regularizer, keras.regularizers.L2)
        assert isinstance(revived.bias_regularizer, keras.regularizers.L1)
        assert isinstance(revived.kernel_constraint, keras.constraints.NonNeg)
        assert isinstance(revived.bias_constraint, keras.constraints.MaxNorm)
        assert isinstance(
            revived.kernel_initializer, keras.initializers.HeNormal
        )


def nlf_arrays(model):
    out = {}
    for layer in model.layers:
        if isinstance(layer, (GroupNLConv2D, SparseGroupNLConv2D)):
            out[layer.name] = (
                to_numpy(layer.nlf_period),
                to_numpy(layer.nlf_shift),
            )
    return out


def test_keras_save_and_load(tmp_path):
    # seed=None: a layer rebuilt on load would draw other NLF values, so
    # equal values after loading prove they were restored from the file.
    inputs = keras.Input((None, None, 4))
    h = GroupNLConv2D(
        12,
        3,
        padding="same",
        reduction_ratio=3,
        num_groups=2,
        shuffle=True,
        use_bias=True,
        bias_initializer="random_normal",
        period_range=(2.0, 3.0),
        shift_range=(-1.0, 1.0),
        name="dense_gnl",
    )(inputs)
    outputs = SparseGroupNLConv2D(
        10, 3, strides=2, reduction_ratio=4, num_groups=2, name="sparse_gnl"
    )(h)
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(3).normal(size=(2, 9, 9, 4)).astype("float32")
    y = to_numpy(model(x))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)

    assert isinstance(loaded.get_layer("dense_gnl"), GroupNLConv2D)
    assert isinstance(loaded.get_layer("sparse_gnl"), SparseGroupNLConv2D)
    for name in ("dense_gnl", "sparse_gnl"):
        assert (
            loaded.get_layer(name).get_config()
            == model.get_layer(name).get_config()
        )
    before, after = nlf_arrays(model), nlf_arrays(loaded)
    assert set(before) == set(after) == {"dense_gnl", "sparse_gnl"}
    for name in before:
        np.testing.assert_array_equal(after[name][0], before[name][0])
        np.testing.assert_array_equal(after[name][1], before[name][1])
    for w_before, w_after in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(to_numpy(w_after), to_numpy(w_before))
    np.testing.assert_allclose(to_numpy(loaded(x)), y, atol=1e-6, rtol=0)

    # A fresh layer with the same config (seed=None) draws different
    # values: the loaded ones did come from the file.
    fresh = GroupNLConv2D.from_config(model.get_layer("dense_gnl").get_config())
    fresh.build((None, 9, 9, 4))
    assert not np.array_equal(
        to_numpy(fresh.nlf_period), before["dense_gnl"][0]
    )


# --------------------------------------------------------------------------
# Shapes.
# --------------------------------------------------------------------------

SHAPE_CASES = {
    "same_stride2": (
        dict(filters=8, kernel_size=3, strides=2, padding="same"),
        (None, 9, 9, 4),
        (None, 5, 5, 8),
        (2, 9, 9, 4),
        (2, 5, 5, 8),
    ),
    "valid_stride2": (
        dict(filters=8, kernel_size=3, strides=2),
        (None, 9, 8, 4),
        (None, 4, 3, 8),
        (1, 9, 8, 4),
        (1, 4, 3, 8),
    ),
    "none_spatial_same": (
        dict(
            filters=10,
            kernel_size=3,
            padding="same",
            reduction_ratio=4,
            num_groups=2,
        ),
        (None, None, None, 6),
        (None, None, None, 10),
        (2, 7, 6, 6),
        (2, 7, 6, 10),
    ),
    "none_rows_dilation": (
        dict(filters=7, kernel_size=3, dilation_rate=2, num_groups=3),
        (None, None, 10, 4),
        (None, None, 6, 7),
        (3, 9, 10, 4),
        (3, 5, 6, 7),
    ),
    "fixed_batch": (
        dict(
            filters=12,
            kernel_size=(1, 3),
            strides=(1, 2),
            reduction_ratio=3,
            num_groups=2,
        ),
        (4, 6, 9, 4),
        (4, 6, 4, 12),
        (4, 6, 9, 4),
        (4, 6, 4, 12),
    ),
    "channels_first": (
        dict(
            filters=8,
            kernel_size=(3, 2),
            strides=(1, 2),
            data_format="channels_first",
            num_groups=2,
        ),
        (None, 4, None, 9),
        (None, 8, None, 4),
        (2, 4, 7, 9),
        (2, 8, 5, 4),
    ),
    "seeds_only": (
        dict(
            filters=4,
            kernel_size=3,
            reduction_ratio=1,
            padding="same",
            num_groups=1,
        ),
        (None, None, None, 2),
        (None, None, None, 4),
        (1, 5, 4, 2),
        (1, 5, 4, 4),
    ),
}


@parametrize_layers
@pytest.mark.parametrize(
    "kwargs,sym_in,sym_out,eager_in,eager_out",
    list(SHAPE_CASES.values()),
    ids=list(SHAPE_CASES),
)
def test_symbolic_and_eager_shapes(
    cls, kwargs, sym_in, sym_out, eager_in, eager_out
):
    kwargs = dict(kwargs, seed=0, kernel_initializer=NumpyNormal())
    layer = cls(**kwargs)
    assert tuple(layer.compute_output_shape(sym_in)) == sym_out
    assert tuple(layer.compute_output_shape(eager_in)) == eager_out
    symbolic = layer(keras.Input(batch_shape=sym_in))
    assert tuple(symbolic.shape) == sym_out
    x = np.random.default_rng(0).normal(size=eager_in).astype("float32")
    y = layer(x)
    assert tuple(y.shape) == eager_out
    # A fresh layer in a functional model with the unknown dims.
    inputs = keras.Input(batch_shape=sym_in)
    model = keras.Model(inputs, cls(**kwargs)(inputs))
    assert tuple(model.output.shape) == sym_out
    assert tuple(model.predict_on_batch(x).shape) == eager_out


# --------------------------------------------------------------------------
# Weights and training.
# --------------------------------------------------------------------------


@parametrize_layers
@pytest.mark.parametrize("use_bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize(
    "trainable_nlf", [False, True], ids=["frozen", "trainable_nlf"]
)
def test_weight_counts(cls, use_bias, trainable_nlf):
    layer = cls(
        10,
        3,
        reduction_ratio=4,
        num_groups=2,
        use_bias=use_bias,
        trainable_nlf=trainable_nlf,
        kernel_initializer=NumpyNormal(),
    )
    layer.build((None, 8, 8, 6))
    kernel_shape = (3, 3, 2, 3) if cls is SparseGroupNLConv2D else (3, 3, 6, 3)
    assert tuple(layer.kernel.shape) == kernel_shape
    assert tuple(layer.nlf_period.shape) == (3, 2)
    assert tuple(layer.nlf_shift.shape) == (3, 2)
    trainable = {w.path.split("/")[-1] for w in layer.trainable_weights}
    frozen = {w.path.split("/")[-1] for w in layer.non_trainable_weights}
    expected_trainable = {"kernel"} | ({"bias"} if use_bias else set())
    nlf = {"nlf_period", "nlf_shift"}
    if trainable_nlf:
        assert trainable == expected_trainable | nlf
        assert frozen == set()
    else:
        assert trainable == expected_trainable
        assert frozen == nlf
    assert len(layer.weights) == len(expected_trainable) + 2
    n_kernel = int(np.prod(kernel_shape))
    assert layer.count_params() == n_kernel + 3 * use_bias + 12


@parametrize_layers
def test_no_nlf_weights_without_generated_channels(cls):
    layer = cls(
        6, 3, reduction_ratio=1, num_groups=2, kernel_initializer=NumpyNormal()
    )
    layer.build((None, 8, 8, 3))
    assert len(layer.trainable_weights) == 1
    assert len(layer.non_trainable_weights) == 0


@parametrize_layers
@pytest.mark.parametrize(
    "trainable_nlf", [False, True], ids=["frozen", "trainable_nlf"]
)
def test_one_training_step(cls, trainable_nlf):
    rng = np.random.default_rng(4)
    layer = cls(
        8,
        3,
        padding="same",
        num_groups=2,
        use_bias=True,
        trainable_nlf=trainable_nlf,
        kernel_initializer=NumpyNormal(),
        seed=1,
    )
    inputs = keras.Input((6, 6, 4))
    model = keras.Model(inputs, layer(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    before = {w.path: to_numpy(w).copy() for w in layer.weights}
    x = rng.normal(size=(4, 6, 6, 4)).astype("float32")
    y = rng.normal(size=(4, 6, 6, 8)).astype("float32")
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    after = {w.path: to_numpy(w) for w in layer.weights}
    assert not np.allclose(after[layer.kernel.path], before[layer.kernel.path])
    assert not np.allclose(after[layer.bias.path], before[layer.bias.path])
    for w in (layer.nlf_period, layer.nlf_shift):
        if trainable_nlf:
            assert not np.allclose(after[w.path], before[w.path])
        else:
            np.testing.assert_array_equal(after[w.path], before[w.path])


# --------------------------------------------------------------------------
# Precision and numerical safety.
# --------------------------------------------------------------------------


@pytest.fixture
def dtype_policy(request):
    policy = request.param
    previous = keras.config.dtype_policy()
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        yield policy
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


# Half-precision tolerances against the float64 reference: the sine
# argument T * (u - phi) reaches ~12, where a bfloat16 ulp is 0.0625.
HALF_ATOL = {"float16": 2e-2, "bfloat16": 1.5e-1}


@parametrize_layers
@pytest.mark.parametrize(
    "dtype_policy", ["mixed_float16", "mixed_bfloat16"], indirect=True
)
def test_mixed_precision(cls, dtype_policy):
    compute = dtype_policy.split("_")[1]
    layer = cls(
        10,
        3,
        reduction_ratio=4,
        num_groups=2,
        use_bias=True,
        kernel_initializer=NumpyNormal(seed=0),
        bias_initializer=NumpyNormal(seed=1),
        seed=2,
    )
    assert layer.compute_dtype == compute
    assert layer.variable_dtype == "float32"
    x = np.random.default_rng(5).normal(size=(2, 7, 7, 6)).astype("float32")
    y = layer(x)
    assert keras.backend.standardize_dtype(y.dtype) == compute
    for w in layer.weights:
        assert keras.backend.standardize_dtype(w.dtype) == "float32"
    y = to_numpy(ops.cast(y, "float32"))
    assert np.all(np.isfinite(y))
    ref = reference_for(layer, x, cls, 6)
    np.testing.assert_allclose(y, ref, atol=HALF_ATOL[compute], rtol=0)
    # Symbolic dtype agrees with the eager one.
    symbolic = layer(keras.Input((7, 7, 6)))
    assert keras.backend.standardize_dtype(symbolic.dtype) == compute


def test_dtype_policy_fixture_restores_float32():
    assert keras.config.dtype_policy().name == "float32"


@parametrize_layers
@pytest.mark.parametrize(
    "dtype", ["float32", "float16", "mixed_float16", "mixed_bfloat16"]
)
def test_zero_input_is_finite(cls, dtype):
    layer = cls(
        10,
        3,
        reduction_ratio=4,
        num_groups=2,
        dtype=dtype,
        seed=6,
        kernel_initializer=NumpyNormal(),
    )
    x = np.zeros((2, 5, 5, 6), dtype="float32")
    y = to_numpy(ops.cast(layer(x), "float32"))
    assert y.shape == (2, 3, 3, 10)
    assert np.all(np.isfinite(y))
    # Zero seeds stay zero; every generated map is sin(-T * phi).
    np.testing.assert_array_equal(y[..., :3], 0.0)
    ref = reference_for(layer, x, cls, 6)
    atol = {"float32": 1e-6, "mixed_float16": 1e-2, "float16": 1e-2}.get(
        dtype, 1e-1
    )
    np.testing.assert_allclose(y, ref, atol=atol, rtol=0)


@parametrize_layers
def test_norm_floor(cls):
    """x / max(||x||, 1e-12): unit norm above the floor, x / 1e-12 below."""
    layer = cls(8, 1, num_groups=2, seed=1, kernel_initializer="ones")
    # Dense: every seed map is the sum of the 4 inputs (4 * value), their
    # norm 8 * value. Sparse (depthwise here): seed = value, norm 2 * value.
    x = np.stack([np.full((2, 2, 4), 1e-9), np.full((2, 2, 4), 1e-20)]).astype(
        "float32"
    )
    y = to_numpy(layer(x))
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y[0, ..., :4], 0.5, rtol=1e-5)
    seed_value = 4e-20 if cls is GroupNLConv2D else 1e-20
    np.testing.assert_allclose(y[1, ..., :4], seed_value / 1e-12, rtol=1e-5)
    ref = reference_for(layer, x, cls, 4)
    np.testing.assert_allclose(y[..., :4], ref[..., :4], rtol=1e-5, atol=0)
    np.testing.assert_allclose(y, ref, atol=1e-6)


# --------------------------------------------------------------------------
# NLF parameters.
# --------------------------------------------------------------------------


def built_nlf(cls, **kwargs):
    layer = cls(kernel_initializer="zeros", **kwargs)
    layer.build((None, 8, 8, 8))
    return to_numpy(layer.nlf_period), to_numpy(layer.nlf_shift)


@parametrize_layers
def test_nlf_draw_reproducible_from_seed(cls):
    kwargs = dict(filters=32, kernel_size=3, reduction_ratio=4, num_groups=4)
    p1, s1 = built_nlf(cls, seed=123, **kwargs)
    p2, s2 = built_nlf(cls, seed=123, **kwargs)
    assert p1.shape == s1.shape == (3, 4)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(s1, s2)
    # Both layer classes draw the same values from the same seed.
    other = SparseGroupNLConv2D if cls is GroupNLConv2D else GroupNLConv2D
    p3, s3 = built_nlf(other, seed=123, **kwargs)
    np.testing.assert_array_equal(p1, p3)
    np.testing.assert_array_equal(s1, s3)
    # Another seed, other values; no seed, other values.
    p4, s4 = built_nlf(cls, seed=124, **kwargs)
    assert not np.array_equal(p1, p4)
    assert not np.array_equal(s1, s4)
    p5, _ = built_nlf(cls, seed=None, **kwargs)
    p6, _ = built_nlf(cls, seed=None, **kwargs)
    assert not np.array_equal(p5, p6)
    # All (T, phi) pairs are distinct draws.
    assert len(np.unique(p1)) == p1.size
    assert len(np.unique(s1)) == s1.size


@parametrize_layers
def test_nlf_values_within_ranges(cls):
    # Disjoint ranges: shifts drawn from the period range would fail.
    p, s = built_nlf(
        cls,
        filters=32,
        kernel_size=3,
        reduction_ratio=4,
        num_groups=4,
        period_range=(1.0, 2.0),
        shift_range=(10.0, 20.0),
        seed=9,
    )
    assert np.all((p >= 1.0) & (p <= 2.0))
    assert np.all((s >= 10.0) & (s <= 20.0))
    # Default ranges: T in [1, 2], phi in [1, 5]; 12 uniform shifts all
    # below 2 would mean they came from the period range.
    p, s = built_nlf(
        cls, filters=32, kernel_size=3, reduction_ratio=4, num_groups=4, seed=9
    )
    assert np.all((p >= 1.0) & (p <= 2.0))
    assert np.all((s >= 1.0) & (s <= 5.0))
    assert s.max() > 2.0
    # The draw uses the whole range, not a corner of it.
    p, s = built_nlf(
        cls,
        filters=256,
        kernel_size=1,
        reduction_ratio=2,
        num_groups=64,
        period_range=(-3.0, 3.0),
        shift_range=(100.0, 101.0),
        seed=0,
    )
    assert p.min() < -2.0 and p.max() > 2.0
    assert s.min() < 100.2 and s.max() > 100.8


# --------------------------------------------------------------------------
# Argument validation.
# --------------------------------------------------------------------------


def received(name, value):
    return re.escape(f"Received: {name}={value!r}")


BAD_ARGUMENTS = [
    (dict(filters=0), received("filters", 0)),
    (dict(filters=-4), received("filters", -4)),
    (dict(filters=2.5), received("filters", 2.5)),
    (dict(filters=True), received("filters", True)),
    (dict(filters="8"), received("filters", "8")),
    (
        dict(reduction_ratio=0),
        r"positive number\. " + received("reduction_ratio", 0),
    ),
    (
        dict(reduction_ratio=-2),
        r"positive number\. " + received("reduction_ratio", -2),
    ),
    (
        dict(reduction_ratio=0.5),
        r"at least 1.*" + received("reduction_ratio", 0.5),
    ),
    (
        dict(reduction_ratio=float("inf")),
        received("reduction_ratio", float("inf")),
    ),
    (dict(reduction_ratio="2"), received("reduction_ratio", "2")),
    (dict(num_groups=0), r"positive integer\. " + received("num_groups", 0)),
    (dict(num_groups=-1), received("num_groups", -1)),
    (dict(num_groups=2.0), received("num_groups", 2.0)),
    # filters=8, r=2: 4 seed channels.
    (
        dict(num_groups=5),
        r"cannot exceed .* = 4 .*" + received("num_groups", 5),
    ),
    (
        dict(filters=10, reduction_ratio=4, num_groups=4),
        r"= 3 .*" + received("num_groups", 4),
    ),
    (dict(period_range=(1.0,)), received("period_range", (1.0,))),
    (
        dict(period_range=(1.0, 2.0, 3.0)),
        received("period_range", (1.0, 2.0, 3.0)),
    ),
    (dict(period_range=(2.0, 1.0)), received("period_range", (2.0, 1.0))),
    (dict(period_range=(1.5, 1.5)), received("period_range", (1.5, 1.5))),
    (dict(period_range="12"), received("period_range", "12")),
    (dict(period_range=("1", "2")), received("period_range", ("1", "2"))),
    (dict(period_range=1.0), received("period_range", 1.0)),
    (dict(period_range=None), received("period_range", None)),
    (
        dict(period_range=(0.0, float("inf"))),
        received("period_range", (0.0, float("inf"))),
    ),
    (dict(shift_range=(5.0,)), received("shift_range", (5.0,))),
    (dict(shift_range=(5.0, 1.0)), received("shift_range", (5.0, 1.0))),
    (dict(shift_range=(3, 3)), received("shift_range", (3, 3))),
    (dict(shift_range=("a", "b")), received("shift_range", ("a", "b"))),
    (dict(shift_range="15"), received("shift_range", "15")),
    (dict(shift_range=(1, 2, 5)), received("shift_range", (1, 2, 5))),
    (dict(padding="causal"), received("padding", "causal")),
    (dict(padding="full"), received("padding", "full")),
    (dict(padding=None), received("padding", None)),
    (
        dict(data_format="channels_middle"),
        received("data_format", "channels_middle"),
    ),
    (dict(data_format="NHWC"), received("data_format", "NHWC")),
    (dict(kernel_size=0), received("kernel_size", 0)),
    (dict(kernel_size=(3,)), received("kernel_size", (3,))),
    (dict(kernel_size=(3, 0)), received("kernel_size", (3, 0))),
    (dict(kernel_size=(3, 3, 3)), received("kernel_size", (3, 3, 3))),
    (dict(kernel_size="3"), received("kernel_size", "3")),
    (dict(kernel_size=2.5), received("kernel_size", 2.5)),
    (dict(strides=0), received("strides", 0)),
    (dict(strides=(1, -1)), received("strides", (1, -1))),
    (dict(strides=None), received("strides", None)),
    (dict(dilation_rate=0), received("dilation_rate", 0)),
    (
        dict(strides=2, dilation_rate=2),
        r"cannot be combined.*Received: strides=2, dilation_rate=2",
    ),
    (dict(seed=-1), received("seed", -1)),
    (dict(seed=1.5), received("seed", 1.5)),
    # Flags take booleans only: "False" is truthy.
    (dict(trainable_nlf="False"), received("trainable_nlf", "False")),
    (dict(shuffle="no"), received("shuffle", "no")),
    (dict(use_bias="false"), received("use_bias", "false")),
    (dict(use_bias=1), received("use_bias", 1)),
    # Huge ranges make float32 NLF arguments meaningless.
    (
        dict(period_range=(-1e30, 1e30)),
        r"within \[-10000, 10000\].*" + received("period_range", (-1e30, 1e30)),
    ),
    (dict(shift_range=(0, 1e5)), received("shift_range", (0, 1e5))),
    # Absurd widths fail clearly, not with a MemoryError.
    (dict(filters=2**40), r"at most 1,048,576.*" + received("filters", 2**40)),
]


@parametrize_layers
@pytest.mark.parametrize(
    "kwargs,match",
    BAD_ARGUMENTS,
    ids=[
        "-".join(f"{k}={v!r}" for k, v in kwargs.items())
        for kwargs, _ in BAD_ARGUMENTS
    ],
)
def test_bad_arguments(cls, kwargs, match):
    arguments = dict(filters=8, kernel_size=3)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        cls(**arguments)


def test_sparse_needs_common_factor():
    # 3 input channels and 16 seed maps share no factor.
    layer = SparseGroupNLConv2D(32, 3, reduction_ratio=2)
    with pytest.raises(
        ValueError,
        match=r"gcd\(in_channels, seed_channels\).*Received: in_channels=3 "
        r"with seed_channels=16",
    ):
        layer(np.zeros((1, 8, 8, 3), dtype="float32"))
    with pytest.raises(ValueError, match=r"Received: in_channels=5"):
        SparseGroupNLConv2D(12, 3, reduction_ratio=2)(keras.Input((8, 8, 5)))
    # The dense layer accepts the same input.
    y = GroupNLConv2D(
        32, 3, reduction_ratio=2, kernel_initializer=NumpyNormal()
    )(keras.Input((8, 8, 3)))
    assert tuple(y.shape) == (None, 6, 6, 32)


@parametrize_layers
def test_unknown_input_channels(cls):
    with pytest.raises(ValueError, match="known number of input channels"):
        cls(8, 3)(keras.Input((8, 8, None)))


@parametrize_layers
def test_input_spec(cls):
    layer = cls(8, 3, kernel_initializer=NumpyNormal())
    with pytest.raises(ValueError, match="expected ndim=4"):
        layer(np.zeros((2, 8, 4), dtype="float32"))
    layer(np.zeros((1, 8, 8, 4), dtype="float32"))
    with pytest.raises(ValueError, match="to have value 4"):
        layer(np.zeros((1, 8, 8, 2), dtype="float32"))


@parametrize_layers
@pytest.mark.parametrize("size", [1, 2])
def test_input_smaller_than_the_kernel_is_refused(cls, size):
    """With padding="valid" a 3x3 kernel has no output on a 2x2 (or 1x1)
    input: a clear error, not a tensor of zeros or a backend failure."""
    layer = cls(16, 3, seed=0)
    x = np.zeros((2, size, size, 16), "float32")
    with pytest.raises(ValueError, match=r"too small for a \(3, 3\) kernel"):
        layer(x)
    assert cls(16, 3, padding="same", seed=0)(x).shape == (2, size, size, 16)


@parametrize_layers
def test_seed_none_follows_keras_global_seed(cls):
    """`seed=None` draws from Keras' global seeding: the same script (after
    `keras.utils.set_random_seed`) gives the same NLF tables."""

    def tables():
        keras.utils.set_random_seed(7)
        layer = cls(16, 3, reduction_ratio=4)
        layer.build((None, 8, 8, 16))
        return [
            keras.ops.convert_to_numpy(w) for w in layer.non_trainable_weights
        ]

    first, second = tables(), tables()
    assert len(first) == 2
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    keras.utils.set_random_seed(8)
    other = cls(16, 3, reduction_ratio=4)
    other.build((None, 8, 8, 16))
    assert not np.array_equal(
        keras.ops.convert_to_numpy(other.nlf_period), first[0]
    )


# --------------------------------------------------------------------------
# The whole layer contract, through the one entry point.
# --------------------------------------------------------------------------

CONTRACT_CASES = {
    "defaults": (dict(filters=8, kernel_size=3, seed=0), (2, 7, 7, 6), 1, 2),
    "bias_shuffle_r3": (
        dict(
            filters=12,
            kernel_size=3,
            padding="same",
            reduction_ratio=3,
            num_groups=2,
            shuffle=True,
            use_bias=True,
            seed=1,
        ),
        (2, 6, 6, 6),
        2,
        2,
    ),
    "strided_trainable_nlf": (
        dict(filters=8, kernel_size=3, strides=2, trainable_nlf=True, seed=2),
        (2, 9, 9, 4),
        3,
        0,
    ),
}


@parametrize_layers
@pytest.mark.parametrize(
    "kwargs,input_shape,trainable,non_trainable",
    list(CONTRACT_CASES.values()),
    ids=list(CONTRACT_CASES),
)
def test_layer_contract(
    cls, kwargs, input_shape, trainable, non_trainable, tmp_path
):
    run_layer_contract(
        cls,
        kwargs,
        input_shape,
        tmp_path,
        expected_trainable_weights=trainable,
        expected_non_trainable_weights=non_trainable,
    )
