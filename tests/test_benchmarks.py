"""Smoke tests of the benchmark scripts (`layer_speed.py`, the Ghost twins
of `deploy_benchmark.py`, `phone_tail_candidates.py`) on the current backend.

The benchmark's figures are not asserted (timings belong in the benchmark,
not in tests); this checks that every timed model still builds, runs and
computes what its row claims, so the script does not rot between runs.
"""

import os
import sys

import keras
import numpy as np
import pytest

sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks")
)

import layer_speed  # noqa: E402
from timing import RUNS  # noqa: E402


def test_worker_times_every_layer_and_ratios_use_their_baselines():
    mode = RUNS[keras.backend.backend()][1]
    rows = layer_speed.worker(
        mode, shapes=[7], batch=1, rounds=1, min_seconds=0.001
    )
    assert [r["layer"] for r in rows] == list(layer_speed.LAYERS)
    assert all(r["shape"] == "7x7x512" and r["ms"] > 0 for r in rows)
    rows = layer_speed.add_ratios(rows)
    ms = {r["layer"]: r["ms"] for r in rows}
    for r in rows:
        base = layer_speed.BASELINE[r["layer"]]
        if base is None:
            assert r["ratio"] is None
        else:
            assert r["ratio"] == pytest.approx(ms[r["layer"]] / ms[base])


def test_floor_model_is_seed_conv_sin_and_concat():
    model, shapes = layer_speed.make_model("floor_r4", 5, 5, 8, 2)
    assert shapes == [(2, 5, 5, 8), (2, 5, 5, 6)]
    rng = np.random.default_rng(0)
    x, g = (rng.random(s, "float32") for s in shapes)
    y = keras.ops.convert_to_numpy(model([x, g]))
    assert y.shape == (2, 5, 5, 8)
    np.testing.assert_allclose(y[..., 2:], np.sin(g), atol=1e-6)
    conv = next(
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D)
    )
    assert conv.filters == 2


def test_groupnl_rows_time_the_layers_they_name():
    from keras_groupnl.layers import GroupNLConv2D
    from keras_groupnl.layers import SparseGroupNLConv2D

    expected = {
        "groupnl_r4": (GroupNLConv2D, 4),
        "groupnl_r2": (GroupNLConv2D, 2),
        "sparse_groupnl_r2": (SparseGroupNLConv2D, 2),
    }
    for kind, (cls, ratio) in expected.items():
        model, _ = layer_speed.make_model(kind, 7, 7, 16, 1)
        layer = model.layers[-1]
        assert type(layer) is cls
        assert layer.reduction_ratio == ratio
        assert layer.filters == 16
    for kind in layer_speed.CHANNELS_FIRST:
        model, shapes = layer_speed.make_model(kind, 7, 6, 16, 1)
        layer = model.layers[-1]
        assert shapes == [(1, 16, 7, 6)]
        assert layer.data_format == "channels_first"
        baseline = layer_speed.BASELINE[kind]
        assert layer.reduction_ratio == int(baseline[-1])


def test_ghost_twin_replaces_exactly_the_groupnl_convs():
    import deploy_benchmark
    import ghost

    from keras_groupnl.layers import BaseGroupNLConv

    groupnl = deploy_benchmark.build("GroupNLResNet8", 32, "dense", 4)
    twin = deploy_benchmark.build("GroupNLResNet8", 32, "ghost", 4)
    plain = deploy_benchmark.build("GroupNLResNet8", 32, "plain", 4)
    ghosts = {
        layer.name: layer
        for layer in twin.layers
        if isinstance(layer, ghost.GhostConv2D)
    }
    assert set(ghosts) == {
        layer.name
        for layer in groupnl.layers
        if isinstance(layer, BaseGroupNLConv)
    }
    for name, layer in ghosts.items():
        conv = plain.get_layer(name)
        primary = -(-conv.filters // 4)
        k = conv.kernel_size[0] * conv.kernel_size[1]
        in_channels = conv.kernel.shape[2]
        # Primary conv with m/r filters, then a 3x3 depthwise making the
        # rest (3 per intrinsic map at r = 4), each with its BatchNorm (4
        # values per channel, m/r + 3 m/r channels); the
        # BatchNorm after the replaced conv is gone.
        assert layer.count_params() == (
            k * in_channels * primary + 9 * primary * 3 + 4 * primary * 4
        )
        stem = name[: -len("_conv")]
        assert isinstance(twin.get_layer(stem + "_bn"), ghost.Absorbed)
        # A ReLU after the BatchNorm moves into both branches.
        has_relu = stem + "_relu" in {lay.name for lay in plain.layers}
        assert layer.relu == has_relu
        if has_relu:
            assert isinstance(twin.get_layer(stem + "_relu"), ghost.Absorbed)
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32")
    assert twin.predict(x, verbose=0).shape == plain.predict(x, verbose=0).shape


tf_only = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the phone converter runs in process on the TensorFlow backend",
)


@tf_only
def test_phone_tail_candidates_compute_the_layer_and_the_floor_does_not():
    import phone_tail_candidates as candidates

    x = np.random.default_rng(0).normal(0, 1, (16, 8, 8, 16))
    x = np.maximum(x, 0).astype("float32")
    model = candidates.layer_model("groupnl", 8, 16, 2)
    calls = candidates.candidate_calls()
    _, shipped = candidates.convert(model, x)
    reports = {
        name: candidates.convert(model, x, calls[name])[1]
        for name in ("int8_u", "poly5", "strips4", "seed_floor")
    }

    def error(report):
        return report.verification["litert"].mean_abs_error

    for name in ("int8_u", "poly5", "strips4"):
        # Each exact candidate computes the layer within int8 rounding.
        assert error(reports[name]) < 0.01, name
    assert error(reports["seed_floor"]) > 0.05
    # The polynomial has no SIN; int8_u keeps it, and its argument is an
    # int8 op (one more DEQUANTIZE, before the SIN).
    assert "SIN" not in reports["poly5"].op_histogram
    assert reports["int8_u"].op_histogram["SIN"] == 1
    dequantize = shipped.op_histogram["DEQUANTIZE"]
    assert reports["int8_u"].op_histogram["DEQUANTIZE"] == dequantize + 1
    assert reports["strips4"].op_histogram["SIN"] == 4


@tf_only
def test_tail_class_is_restored_after_a_failed_conversion():
    import phone_tail_candidates as candidates

    from keras_groupnl.converters import _phone

    shipped = _phone.FloatTailGroupNL

    def broken(self, x):
        raise RuntimeError("candidate failed")

    with pytest.raises(RuntimeError, match="candidate failed"):
        with candidates.tail_class(broken):
            assert _phone.FloatTailGroupNL is not shipped
            _phone.FloatTailGroupNL.call(None, None)
    assert _phone.FloatTailGroupNL is shipped


def test_chebyshev_coefficients_fit_every_nlf():
    import types

    import phone_tail_candidates as candidates

    form = types.SimpleNamespace(
        period=np.array([1.0, 2.0, 1.5], np.float32),
        shift=np.array([1.0, 5.0, 3.0], np.float32),
    )
    u = np.linspace(-1.0, 1.0, 101)
    for degree, tolerance in ((3, 0.1), (5, 0.005)):
        c = candidates.chebyshev_coefficients(form, degree)
        assert c.shape == (degree + 1, 3)
        for j in range(3):
            fitted = np.polyval(c[:, j], u)
            exact = np.sin(form.period[j] * (u - form.shift[j]))
            assert np.max(np.abs(fitted - exact)) < tolerance
