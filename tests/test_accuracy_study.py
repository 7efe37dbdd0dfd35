"""Smoke test of `benchmarks/accuracy_study.py` at a tiny size.

Checks the machinery, not accuracy: a run writes its tables and plots, an
interrupted run resumes from its last finished epoch, and finished runs are
not trained again. Runs in the TensorFlow test process only.
"""

import json
import os
import sys

import keras
import pytest

BENCHMARKS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"
)
sys.path.insert(0, BENCHMARKS)

import accuracy_study  # noqa: E402
import study_report  # noqa: E402

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the study trains on one backend; its machinery is tested once",
)


@pytest.fixture
def tiny(tmp_path):
    from keras_groupnl.datasets import load_fashion_mnist

    try:
        load_fashion_mnist(download=False)
    except Exception as error:  # noqa: BLE001
        pytest.skip(f"Fashion-MNIST not available here: {error}")
    out, results = tmp_path / "out", tmp_path / "results"
    args = [
        "--out",
        str(out),
        "--results",
        str(results),
        "--variants",
        "plain",
        "dense_r2",
        "--seeds",
        "0",
        "1",
        "--epochs",
        "2",
        "--train-size",
        "64",
        "--test-size",
        "20",
    ]
    return args, out, results


def test_interrupted_study_resumes_and_reports(tiny, monkeypatch):
    args, out, results = tiny
    saved = {"n": 0}
    real_save = accuracy_study.save_keras

    def save_then_stop(model, path):
        real_save(model, path)
        saved["n"] += 1
        if saved["n"] in (1, 3):  # Ctrl-C right after saving an epoch.
            raise KeyboardInterrupt

    monkeypatch.setattr(accuracy_study, "save_keras", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        accuracy_study.main(args)
    # Stopped between saving the checkpoint and the state naming it: the
    # run restarts from the last consistent pair (none yet), and the stray
    # checkpoint goes.
    assert not (out / "checkpoints" / "plain_seed0.json").exists()
    assert not list(out.glob("**/.*partial*"))

    # Second try: epoch 1 is saved with its state, epoch 2's save stops.
    with pytest.raises(KeyboardInterrupt):
        accuracy_study.main(args)
    state = json.loads((out / "checkpoints" / "plain_seed0.json").read_text())
    assert len(state["history"]) == 1
    assert state["checkpoint"] == "plain_seed0.epoch1.keras"

    accuracy_study.main(args)
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert runs == [
        "dense_r2_seed0.json",
        "dense_r2_seed1.json",
        "plain_seed0.json",
        "plain_seed1.json",
    ]
    resumed = json.loads((out / "runs" / "plain_seed0.json").read_text())
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    assert not list((out / "checkpoints").iterdir())

    table = json.loads((results / "results.json").read_text())["variants"]
    vs = table["dense_r2"]["vs_plain"]
    assert vs["seeds"] == [0, 1] and vs["clean"]["ci95"] is not None
    assert len(table["plain"]["per_corruption"]) == 9
    for name in (
        "results.md",
        "accuracy_vs_severity.png",
        "per_corruption_difference.png",
        "training_curves.png",
    ):
        assert (results / name).is_file(), name

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(accuracy_study.Run, "train", no_training)
    accuracy_study.main(args)

    # An invocation for some variants reports every finished run.
    accuracy_study.main(args + ["--variants", "dense_r2"])
    table = json.loads((results / "results.json").read_text())["variants"]
    assert set(table) == {"plain", "dense_r2"}


def test_paired_interval_uses_student_t():
    assert study_report.t_quantile(2) == pytest.approx(4.303, abs=1e-3)
    assert study_report.t_quantile(10) == pytest.approx(2.228, abs=1e-3)
    d = study_report.paired([0.91, 0.92, 0.93], [0.90, 0.90, 0.90])
    assert d["mean"] == pytest.approx(0.02)
    half = 4.3027 * 0.01 / 3**0.5
    assert d["ci95"] == pytest.approx([0.02 - half, 0.02 + half], abs=1e-4)


def test_speed_column_is_the_fastest_run_and_names_its_machine():
    # A run paused or sharing the cores runs slower: the table shows each
    # variant's fastest run, and where that run was measured.
    def machine(cpu):
        return {
            "cpu": cpu,
            "architecture": "x86_64",
            "vector_isa": [],
            "cores": 2,
        }

    slow = {"seconds_per_epoch": 250.0, "machine": machine("AMD EPYC")}
    fast = {"seconds_per_epoch": 40.0, "machine": machine("Intel Xeon")}
    entry = study_report._fastest({0: slow, 1: fast})
    assert entry["fastest"] == 40.0
    assert entry["machine"].startswith("Intel Xeon")
    table = {
        "plain": {"seconds_per_epoch": entry},
        "dense_r2": {"seconds_per_epoch": study_report._fastest({0: slow})},
    }
    text = study_report.machines(table)
    assert "(plain)" in text and "(dense_r2)" in text
    assert text.index("Intel Xeon") < text.index("(plain)")


def test_report_names_the_command_that_trains_the_study():
    # A report rebuilt by --report-only or a subset of variants still names
    # the command that trains the study, with the recipe options it used.
    command = accuracy_study.study_command(
        accuracy_study.parse_args(["--report-only", "--variants", "plain"])
    )
    backend = f"KERAS_BACKEND={keras.backend.backend()} "
    assert command == backend + "python benchmarks/accuracy_study.py"
    args = accuracy_study.parse_args(["--epochs", "3", "--seeds", "0"])
    assert accuracy_study.study_command(args) == (
        backend + "python benchmarks/accuracy_study.py --epochs 3"
    )


def test_report_keeps_runs_in_full_and_refuses_mixed_recipes(tiny):
    args, out, results = tiny
    accuracy_study.main(args)
    # A fresh clone has no runs folder: the report rebuilds from the runs
    # that results.json keeps, and pairs them as before.
    before = json.loads((results / "results.json").read_text())["variants"]
    for path in (out / "runs").iterdir():
        path.unlink()
    accuracy_study.main(args + ["--report-only"])
    after = json.loads((results / "results.json").read_text())["variants"]
    assert after == before

    # A run with another recipe (here: epochs) cannot be pooled or paired.
    kept = json.loads((results / "results.json").read_text())["runs"]
    odd = dict(kept["plain"]["0"])
    odd["settings"] = dict(odd["settings"], epochs=3)
    with pytest.raises(ValueError, match="different recipes"):
        study_report.aggregate(
            {"plain": {0: odd}, "dense_r2": {0: kept["dense_r2"]["0"]}},
            ["plain", "dense_r2"],
        )


def test_epochs_must_leave_room_for_the_decay(capsys):
    with pytest.raises(SystemExit):
        accuracy_study.parse_args(["--epochs", "1"])
    assert "--epochs must exceed the 1 warm-up" in capsys.readouterr().err


def test_estimate_times_the_study_without_running_it(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--out", str(out), "--results", str(tmp_path / "results")]
    args += ["--variants", "plain", "dense_r2", "--seeds", "0", "1"]
    total = accuracy_study.main(args + ["--epochs", "2", "--estimate"])
    printed = capsys.readouterr().out
    assert "plain: " in printed and "dense_r2: " in printed
    assert total > 0 and not os.path.exists(out)
    assert not (tmp_path / "results").exists()
    # Hours scale with the epochs asked for (the test passes take less).
    longer = accuracy_study.main(args + ["--epochs", "20", "--estimate"])
    assert longer > 2 * total


def test_wider_model_is_its_own_study(tiny):
    args, out, results = tiny
    wide = accuracy_study.parse_args(["--model", "resnet18"])
    assert (wide.out, wide.results) == (
        "runs/accuracy_study_resnet18",
        os.path.join("docs", "accuracy_study", "resnet18"),
    )
    assert accuracy_study.study_command(wide).endswith(
        "accuracy_study.py --model resnet18"
    )
    accuracy_study.main(args + ["--seeds", "0"])
    wide_args = [
        "--model",
        "resnet18",
        "--out",
        str(out / "resnet18"),
        "--results",
        str(results / "resnet18"),
    ]
    accuracy_study.main(args + ["--seeds", "0"] + wide_args)

    def runs(folder):
        return json.loads((folder / "results.json").read_text())["runs"]

    narrow, wide_runs = runs(results), runs(results / "resnet18")
    for variant in ("plain", "dense_r2"):
        run = wide_runs[variant]["0"]
        assert run["settings"]["model"] == "resnet18"
        # ResNet-18 (64-512 channels) against ResNet-8 (16-64).
        assert run["macs"] > 40 * narrow[variant]["0"]["macs"]
        assert "model" not in narrow[variant]["0"]["settings"]
    assert (
        "vs_plain"
        in json.loads((results / "resnet18" / "results.json").read_text())[
            "variants"
        ]["dense_r2"]
    )
    # The two models' runs are never paired with each other.
    with pytest.raises(ValueError, match="different recipes"):
        study_report.aggregate(
            {
                "plain": {0: narrow["plain"]["0"]},
                "dense_r2": {0: wide_runs["dense_r2"]["0"]},
            },
            ["plain", "dense_r2"],
        )
