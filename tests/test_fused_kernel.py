"""The fused GroupNL tail: its C kernel against its NumPy reference.

`keras_groupnl/converters/kernels/keras_groupnl_tail.c` is what a
microcontroller runs; `_fused.evaluate` is what the converter verifies
with. Compiled here with the host's C compiler, the kernel must give the
same bytes as the reference, for both table modes, on tails built from real
GroupNL layers and on adversarial inputs. NumPy only: no backend needed.
"""

import ctypes
import os
import shutil
import subprocess

import numpy as np
import pytest

from keras_groupnl.converters import _deploy
from keras_groupnl.converters import _fused
from keras_groupnl.layers import GroupNLConv2D
from keras_groupnl.layers.deploy_form import make_deploy_form

KERNELS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "keras_groupnl",
    "converters",
    "kernels",
)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """The C kernel as a shared library, built with the strict flags."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    assert compiler, "a C compiler is needed to test the fused kernel"
    library = tmp_path_factory.mktemp("kernel") / "tail.so"
    subprocess.run(
        [
            compiler,
            "-std=c99",
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-fPIC",
            "-shared",
            os.path.join(KERNELS, "keras_groupnl_tail.c"),
            "-o",
            str(library),
            "-lm",
        ],
        check=True,
    )
    lib = ctypes.CDLL(str(library))
    lib.keras_groupnl_tail_s8.restype = ctypes.c_int
    return lib


def run_kernel(lib, tail, x):
    x = np.ascontiguousarray(x, np.int8)
    channels = x.shape[-1]
    pixels = x.size // channels
    tables = np.ascontiguousarray(tail.tables, np.int8)
    plan = np.ascontiguousarray(tail.plan, np.int32)
    header = tail.header()
    out = np.zeros(x.shape[:-1] + (tail.filters,), np.int8)
    seeds = channels // tail.group_in
    diff = np.zeros(seeds, np.int16)
    unit = np.zeros(seeds, np.uint8)

    def pointer(array):
        return ctypes.c_void_p(array.ctypes.data)

    status = lib.keras_groupnl_tail_s8(
        pointer(x),
        ctypes.c_int32(pixels),
        ctypes.c_int32(channels),
        pointer(tables),
        pointer(plan),
        ctypes.c_int32(tail.filters),
        pointer(header),
        pointer(diff),
        pointer(unit),
        pointer(out),
    )
    return status, out


def layer_form(filters, ratio, groups, seed=0, shuffle=False):
    rng = np.random.default_rng(seed)
    layer = GroupNLConv2D(
        filters,
        3,
        reduction_ratio=ratio,
        num_groups=groups,
        shuffle=shuffle,
        period_range=(0.5, 4.0),
        seed=seed,
    )
    layer(rng.standard_normal((1, 5, 5, 6)).astype("float32"))
    return make_deploy_form(layer)


def random_fold(filters, activation, seed=0):
    rng = np.random.default_rng(seed)
    return _deploy.Fold(
        scale=rng.uniform(-3, 3, filters).astype(np.float32),
        shift=rng.uniform(-1, 1, filters).astype(np.float32),
        activation=activation,
        layers=("bn",),
    )


def seed_maps(pixels, seeds, zero_point, seed=0):
    """Random int8 seed maps with the hard cases: all at the zero point
    (a zero vector), one non-zero channel, extremes of the int8 range."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (pixels, seeds))
    x[0] = zero_point
    x[1] = zero_point
    x[1, 0] = zero_point + 1 if zero_point < 127 else zero_point - 1
    x[2] = -128
    x[3] = 127
    x[4, ::2] = -128
    x[4, 1::2] = 127
    small = rng.integers(-2, 3, (pixels // 4, seeds)) + zero_point
    x[-len(small) :] = np.clip(small, -128, 127)
    return x.astype(np.int8)


CASES = {
    "r2_relu": dict(filters=16, ratio=2, groups=4, activation="relu"),
    "r4_relu6": dict(filters=24, ratio=4, groups=3, activation="relu6"),
    "r3_uneven_shuffle": dict(
        filters=20, ratio=3, groups=2, activation=None, shuffle=True
    ),
    "r1_norm_only": dict(filters=8, ratio=1, groups=1, activation="relu"),
    "no_fold": dict(filters=16, ratio=2, groups=4, activation="none"),
}


@pytest.mark.parametrize("mode", _fused.MODES)
@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("zero_point", [-128, -7, 90])
def test_kernel_matches_reference(kernel, mode, name, zero_point):
    case = dict(CASES[name])
    activation = case.pop("activation")
    form = layer_form(
        case["filters"],
        case["ratio"],
        case["groups"],
        shuffle=case.get("shuffle", False),
    )
    fold = (
        None
        if activation == "none"
        else random_fold(form.filters, activation, seed=len(name))
    )
    tail = _fused.build(form, fold, zero_point, 0.05, -20, mode)
    x = seed_maps(257, form.seed_channels, zero_point).reshape(
        1, 257, 1, form.seed_channels
    )
    status, out = run_kernel(kernel, tail, x)
    assert status == 0
    np.testing.assert_array_equal(out, _fused.evaluate(tail, x))


@pytest.mark.parametrize("mode", _fused.MODES)
@pytest.mark.parametrize(
    "in_channels,filters,ratio", [(16, 16, 2), (24, 32, 2), (12, 8, 1)]
)
def test_kernel_sums_sparse_depthwise_outputs(
    kernel, mode, in_channels, filters, ratio
):
    # A sparse seed conv exported as depthwise outputs: the op sums each
    # seed map's group_in of them (channel (g * group_in + i) * m + o).
    from keras_groupnl.layers import SparseGroupNLConv2D

    layer = SparseGroupNLConv2D(
        filters, 3, reduction_ratio=ratio, seed=1, num_groups=2
    )
    layer(np.zeros((1, 5, 5, in_channels), "float32"))
    form = make_deploy_form(layer)
    group_in = form.kernel.shape[2]
    multiplier = form.seed_channels // form.groups
    assert group_in > 1
    tail = _fused.build(
        form,
        random_fold(filters, "relu", 3),
        5,
        0.05,
        -30,
        mode,
        summed=True,
    )
    assert (tail.group_in, tail.multiplier) == (group_in, multiplier)
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (300, form.groups * group_in * multiplier))
    x = x.astype(np.int8)
    status, out = run_kernel(kernel, tail, x)
    assert status == 0
    np.testing.assert_array_equal(out, _fused.evaluate(tail, x))
    # The sum is the seed maps': the same as feeding the summed maps.
    d = x.astype(np.int32).reshape(300, form.groups, group_in, multiplier)
    summed = d.sum(2).reshape(300, -1) - 5 * group_in
    np.testing.assert_array_equal(
        _fused.seed_differences(x, 5, group_in, multiplier), summed
    )


def test_channel_tables_equal_nlf_tables(kernel):
    form = layer_form(32, 2, 4, seed=1)
    fold = random_fold(form.filters, "relu6", seed=2)
    x = seed_maps(300, form.seed_channels, 3, seed=3)
    per_nlf = _fused.build(form, fold, 3, 0.03, -128, "nlf_tables")
    per_channel = _fused.build(form, fold, 3, 0.03, -128, "channel_tables")
    assert per_nlf.tables.shape == (4, 256)
    assert per_channel.tables.shape == (form.filters, 256)
    np.testing.assert_array_equal(
        _fused.evaluate(per_nlf, x), _fused.evaluate(per_channel, x)
    )
    np.testing.assert_array_equal(
        run_kernel(kernel, per_channel, x)[1], run_kernel(kernel, per_nlf, x)[1]
    )


def check_plan(lib, tail, seeds):
    plan = np.ascontiguousarray(tail.plan, np.int32)
    return lib.keras_groupnl_tail_check_plan(
        ctypes.c_void_p(plan.ctypes.data),
        ctypes.c_int32(plan.shape[1]),
        ctypes.c_int32(seeds),
        ctypes.c_int32(len(tail.tables)),
        ctypes.c_int32(tail.mode),
    )


@pytest.mark.parametrize("mode", _fused.MODES)
def test_plan_check_accepts_built_plans_and_refuses_broken_ones(kernel, mode):
    # The TFLite Micro op checks the plan once (Prepare) with this, so
    # that the kernel may rely on its layout.
    form = layer_form(24, 4, 3, seed=2)
    tail = _fused.build(form, random_fold(24, "relu", 1), 0, 0.1, 0, mode)
    seeds = form.seed_channels
    assert check_plan(kernel, tail, seeds) == 0

    def broken(channel, field, value):
        plan = tail.plan.copy()
        plan[field, channel] = value
        return _fused.FusedTail(
            tail.layer, 0, tail.tables, plan, -128, 127, tail.mode
        )

    assert check_plan(kernel, broken(seeds + 1, 0, seeds), seeds) == -1
    assert check_plan(kernel, broken(seeds + 1, 1, 99), seeds) == -1
    if mode == "nlf_tables":
        assert check_plan(kernel, broken(0, 1, 0), seeds) == -1
        assert check_plan(kernel, broken(1, 0, 0), seeds) == -1
        # A requantisation that would leave int32: 128 * A + B >= 2^31.
        assert check_plan(kernel, broken(1, 2, 2**24), seeds) == -1
        assert check_plan(kernel, broken(1, 4, 32), seeds) == -1
    else:
        assert check_plan(kernel, broken(2, 1, 3), seeds) == -1


def check_header(lib, header, in_channels):
    header = np.ascontiguousarray(header, np.int32)
    return lib.keras_groupnl_tail_check_header(
        ctypes.c_void_p(header.ctypes.data), ctypes.c_int32(in_channels)
    )


def test_header_check_accepts_built_headers_and_refuses_broken_ones(kernel):
    form = layer_form(16, 2, 4)
    tail = _fused.build(form, None, 3, 1 / 128, 0, "nlf_tables")
    header = tail.header()
    assert check_header(kernel, header, form.seed_channels) == 0
    # Summed sparse inputs: 8 seed maps of 16 channels each, multiplier 2.
    assert check_header(kernel, [0, -128, 127, 0, 16, 2], 128) == 0
    for field, value in ((0, 200), (1, -129), (2, 128), (3, 7), (4, 0)):
        bad = header.copy()
        bad[field] = value
        assert check_header(kernel, bad, form.seed_channels) == -1, field
    low_above_high = header.copy()
    low_above_high[1:3] = (10, 0)
    assert check_header(kernel, low_above_high, form.seed_channels) == -1
    # Channels the grouping does not divide; too many seed maps; sums of
    # squares beyond int32.
    assert check_header(kernel, [0, -128, 127, 0, 16, 2], 120) == -1
    too_many = _fused.MAX_SEEDS + 1
    assert check_header(kernel, [0, -128, 127, 0, 1, 1], too_many) == -1
    assert check_header(kernel, [0, -128, 127, 0, 128, 1], 128 * 2) == 0
    assert check_header(kernel, [0, -128, 127, 0, 128, 1], 128 * 3) == -1
    # Differences beyond int16 (129 * 255), though n would fit.
    assert check_header(kernel, [0, -128, 127, 0, 129, 1], 129) == -1


def test_unknown_mode_is_refused(kernel):
    form = layer_form(16, 2, 4)
    tail = _fused.build(form, None, 0, 1 / 128, 0, "nlf_tables")
    broken = _fused.FusedTail(
        tail.layer, 0, tail.tables, tail.plan, -128, 127, mode=7
    )
    status, _ = run_kernel(kernel, broken, np.zeros((2, 8), np.int8))
    assert status == -1


def test_unit_vectors_are_the_l2_normalised_seed_maps():
    rng = np.random.default_rng(0)
    d = rng.integers(-100, 100, (500, 12))
    u = _fused.unit_vectors(d.astype(np.int8), 0).astype(np.float64) / 128
    norm = np.linalg.norm(d, axis=-1, keepdims=True)
    expected = np.clip(d / np.maximum(norm, 1), -1, 127 / 128)
    # int8 rounding (half a step) plus the truncated float32 multiplier.
    assert np.max(np.abs(u - expected)) <= 0.5 / 128 + 1e-6
    zero = _fused.unit_vectors(np.full((1, 4), 5, np.int8), 5)
    assert not zero.any()


def test_fold_and_activation_match_the_float_layer():
    # Mode 0's requantization is the folded BatchNorm (and ReLU6) in
    # output units, to half a step.
    form = layer_form(16, 2, 4, seed=4)
    fold = random_fold(form.filters, "relu6", seed=5)
    scale, zero_point = 0.04, -10
    tail = _fused.build(form, fold, 0, scale, zero_point, "nlf_tables")
    x = seed_maps(200, form.seed_channels, 0, seed=6)
    out = _fused.evaluate(tail, x).astype(np.float64)
    u = _fused.unit_vectors(x, 0).astype(np.float64) / 128
    table = tail.tables.astype(np.float64) / 128
    v = np.concatenate(
        [
            u,
            table[
                tail.plan[1, form.seed_channels :],
                (u[:, form.source] * 128).astype(int) + 128,
            ],
        ],
        axis=1,
    )
    real = np.clip(v * fold.scale + fold.shift, 0, 6)
    want = np.clip(np.round(real / scale) + zero_point, -128, 127)
    assert np.max(np.abs(out - want)) <= 1
    assert out.min() >= zero_point  # ReLU: nothing below real 0.
    assert out.max() <= zero_point + round(6 / scale)


def test_too_many_seed_maps_is_refused():
    form = layer_form(16, 2, 4)
    wide = _fused.MAX_SEEDS + 1
    big = form.__class__(
        **{
            **form.__dict__,
            "kernel": np.zeros((1, 1, 1, wide), np.float32),
            "group_of_channel": np.zeros(wide, np.int64),
            "source": np.zeros(0, np.int64),
            "copy": np.zeros(0, np.int64),
        }
    )
    with pytest.raises(ValueError, match="at most 1024 seed maps"):
        _fused.build(big, None, 0, 1 / 128, 0, "nlf_tables")


def test_a_fold_beyond_int32_is_refused_naming_layer_and_channel():
    form = layer_form(16, 2, 4)
    fold = random_fold(16, None)
    fold.scale[5] = 1e12
    with pytest.raises(
        ValueError, match=r"Layer '.*', channel 5: .*scale 1e\+12"
    ):
        _fused.build(form, fold, 0, 1 / 128, 0, "nlf_tables")
