"""The Cortex-M cost model against the instruction counts it was fitted to.

`docs/cortex_m/measurements.json` holds, for every model measured on a
Cortex-M (TFLite Micro + CMSIS-NN or reference kernels, in QEMU), each op's
features and its measured instructions. The estimate must stay within 10 %
of every measured total, held-out models included, and the fit must be
what `benchmarks/cortex_m_costs.py fit` makes of that data.
"""

import json
import os
import sys

import pytest

from keras_groupnl.converters import _cortex_m

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEASUREMENTS = os.path.join(ROOT, "docs", "cortex_m", "measurements.json")


@pytest.fixture(scope="module")
def measured():
    with open(MEASUREMENTS) as f:
        return json.load(f)["models"]


def test_every_target_of_the_cost_file_is_measured(measured):
    targets = set(_cortex_m.costs()["targets"])
    assert {"cortex-m4f/cmsis-nn", "cortex-m4f/reference"} <= targets
    for entry in measured:
        assert set(entry["instructions"]) == targets, entry["name"]


def test_estimates_within_ten_percent_of_measurements(measured):
    for entry in measured:
        estimate = _cortex_m.estimate_features(entry["ops"])
        for target, count in entry["instructions"].items():
            got = estimate[target]["instructions"]
            assert abs(got / count - 1) < 0.10, (entry["name"], target)
            assert not estimate[target]["unmodelled"], entry["name"]


def test_outputs_matched_the_host_on_every_cortex_m(measured):
    # The firmware's outputs were compared byte for byte with the host:
    # TFLite Micro's Python interpreter, plus the fused op's reference.
    for entry in measured:
        assert all(entry["checked"].values()), entry["name"]


def test_cost_file_is_the_fit_of_the_measurements(measured):
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import cortex_m_costs

    with open(MEASUREMENTS) as f:
        fitted = cortex_m_costs.fit(json.load(f))
    stored = _cortex_m.costs()["targets"]
    assert set(fitted) == set(stored)
    for target, table in fitted.items():
        assert set(table) == set(stored[target])
        for key, coefficients in table.items():
            for name, value in coefficients.items():
                assert stored[target][key][name] == pytest.approx(
                    value, rel=1e-9, abs=1e-9
                )


def test_unknown_ops_are_listed_not_guessed():
    features = [
        ("CONV_2D/kxk", {"macs": 10, "outputs": 2, "im2col": 5, "ops": 1}),
        ("SOME_NEW_OP", {"outputs": 100, "ops": 1}),
        ("RESHAPE", {"ops": 1}),
    ]
    estimate = _cortex_m.estimate_features(features)
    for target in estimate.values():
        assert target["unmodelled"] == ["SOME_NEW_OP"]
        assert "CONV_2D" in target["by_op"]
        assert "SOME_NEW_OP" not in target["by_op"]
