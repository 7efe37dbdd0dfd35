"""Smoke test of the end-to-end example (`make demo`) at a tiny size.

Runs in the TensorFlow process only (like the converter tests, it converts
to TFLite). It checks that the main job still runs from data to report and
that what it writes is consistent, not what accuracy it reaches.
"""

import json
import os
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "examples")
sys.path.insert(0, EXAMPLES)

import fashion_mnist_end_to_end as example  # noqa: E402

from keras_groupnl.datasets import load_fashion_mnist  # noqa: E402


def test_end_to_end_run_writes_a_consistent_report(tmp_path):
    try:
        load_fashion_mnist(download=False)
    except Exception as error:  # noqa: BLE001
        pytest.skip(f"Fashion-MNIST not available here: {error}")
    out = tmp_path / "run"
    results = example.main(
        [
            "--out",
            str(out),
            "--train-size",
            "256",
            "--epochs",
            "1",
            "--corrupted-test-size",
            "16",
            "--test-size",
            "200",
        ]
    )
    for name in ("report.json", "report.md", *results["plots"]):
        assert (out / os.path.basename(name)).is_file(), name
    with open(out / "report.json") as f:
        saved = json.load(f)
    assert saved["int8_test_size"] == 200
    assert saved["corrupted_test_size"] == 16
    assert set(saved["models"]) == {"plain", "groupnl"}
    assert (
        saved["models"]["groupnl"]["params"]
        < saved["models"]["plain"]["params"]
    )
    for kind in ("plain", "groupnl"):
        accuracies = saved["robustness"][kind]
        assert 0.0 <= accuracies["clean"] <= 1.0
    mcu = saved["int8"]["mcu"]
    # The fused GroupNL kernel by default, with the Cortex-M estimates.
    assert mcu["float_ops"] == 0 and mcu["runtime"] == "tflm_fused"
    assert "latency_ms" not in mcu
    assert mcu["cortex_m_ratios"]["cortex-m4f/cmsis-nn"] < 1.0
    assert any('AddCustom("KERAS_GROUPNL_TAIL"' in op for op in mcu["ops"])
    assert mcu["arena_bytes"] > 0
    assert mcu["arena_ratio"] == mcu["arena_bytes"] / mcu["plain_arena_bytes"]
    assert os.path.isfile(mcu["tflite"])
    phone = saved["int8"]["phone"]
    assert os.path.isfile(phone["tflite"])
    assert phone["runtime"] == "litert" and phone["xnnpack_partitions"] == 1
    # The phone file runs in Android's clients, RGB in through the input
    # stage, the Fashion-MNIST class names out.
    assert phone["android_input_stage"][0].startswith("RGB -> gray")
    clients = phone["android_clients"]
    mediapipe = clients["MediaPipe Tasks ImageClassifier"]
    assert mediapipe["accepted"] and mediapipe["images"] >= 32
    assert mediapipe["top1_agreement"] == 1.0
    assert mediapipe["message"].startswith("named categories")
    assert clients["LiteRT CompiledModel"]["top1_agreement"] == 1.0
    for target in ("phone", "mcu"):
        figures = saved["int8"][target]
        assert 0.0 <= figures["accuracy"] <= 1.0
        assert 0.0 <= figures["top1_agreement"] <= 1.0
        assert figures["size_ratio"] < 1.0  # GroupNL is smaller, both ways.
    report = (out / "report.md").read_text()
    # A short run does not speak for the method: it says so, and shows the
    # converged study's figures when they are committed.
    assert "This run's recipe is not converged" in report
    if any(os.path.exists(path) for path in example.STUDY_RESULTS):
        assert "Claim 'GroupNL within 0.5 point of plain" in report
        assert saved["converged_study"]["variant"] == "dense_r2"
    assert "Clean accuracy: 200 test images" in report
    # The CPU the latencies came from, with TensorFlow's oneDNN state.
    assert "TensorFlow oneDNN" in saved["machine"]
    assert saved["machine"] in report
    assert "groupnl" in report
    assert "- MediaPipe Tasks ImageClassifier: accepted" in report


def _study(path, seeds):
    """A study results file with plain and dense_r2 over `seeds`."""

    def stat(mean, n):
        return {"mean": mean, "std": 0.001 if n > 1 else None, "n": n}

    n = len(seeds)
    row = {"seeds": seeds, "epochs": 10}
    row.update(clean=stat(0.92, n), mean_corrupted=stat(0.58, n))
    difference = dict(stat(-0.002, n), ci95=[-0.01, 0.006] if n > 1 else None)
    dense = dict(
        row,
        vs_plain={
            "seeds": seeds,
            "clean": difference,
            "mean_corrupted": difference,
        },
    )
    path.write_text(
        json.dumps(
            {"command": "study", "variants": {"plain": row, "dense_r2": dense}}
        )
    )
    return str(path)


def test_converged_figures_take_the_study_with_most_seeds(tmp_path):
    args = example.parse_args([])
    one = _study(tmp_path / "one.json", [0])
    three = _study(tmp_path / "three.json", [0, 1, 2])
    figures = example.converged_figures(args, paths=(one, three))
    assert figures["seeds"] == [0, 1, 2]
    assert figures["clean_within_half_point"] is True
    text = "\n".join(example.converged_markdown(figures))
    assert "(3 seeds," in text and "95 % interval" in text

    # One seed: no spread, no interval, and no verdict on the claims.
    figures = example.converged_figures(args, paths=(one,))
    assert figures["clean_within_half_point"] is None
    text = "\n".join(example.converged_markdown(figures))
    assert "(1 seed," in text and "±" not in text
    assert "interval" not in text and "not judged on one seed" in text
