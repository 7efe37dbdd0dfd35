"""An interrupted conversion stops, writes nothing and leaves nothing behind.

Each test starts `keras-groupnl convert` in a process of its own (its
temporary files under a private TMPDIR), waits until the conversion is
under way, signals it, and checks the exit status, the output folder, the
temporary folder, and that no conversion worker outlives it. The JAX
process converts in a TensorFlow worker (`keras_groupnl.converters
._subprocess`); the TensorFlow process converts in-process.
"""

import glob
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tflite_micro")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        keras.backend.backend() != "tensorflow" or not os.path.isdir("/proc"),
        reason="runs once, from the TensorFlow test process, on Linux",
    ),
]

WORKER = "keras_groupnl.converters._worker"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A small GroupNL model and enough calibration data to take a while."""
    from keras_groupnl import applications

    folder = tmp_path_factory.mktemp("inputs")
    model = applications.GroupNLResNet8(input_shape=(32, 32, 3), seed=0)
    model.save(folder / "model.keras")
    x = np.random.default_rng(0).random((400, 32, 32, 3), dtype="float32")
    np.savez(folder / "calibration.npz", x=x)
    return folder


def _start(inputs, tmp_path, backend):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, KERAS_BACKEND=backend, TMPDIR=str(tmp))
    command = [
        sys.executable,
        "-m",
        "keras_groupnl.cli",
        "convert",
        str(inputs / "model.keras"),
        "--target",
        "mcu",
        "--calibration",
        str(inputs / "calibration.npz"),
        "--calibration-samples",
        "400",
        "--out",
        str(tmp_path / "out"),
        "--quiet",
    ]
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    return process, tmp


def _wait_for(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def _ours(tmp):
    return glob.glob(str(tmp / "keras_groupnl_*"))


def _workers(tmp):
    """PIDs of conversion workers whose files are under `tmp`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        if WORKER in args and str(tmp) in args:
            found.append(int(entry))
    return found


def _assert_nothing_left(tmp_path, tmp):
    _wait_for(lambda: not _workers(tmp), 60, "the worker to stop")
    _wait_for(lambda: not _ours(tmp), 60, "the temporary folder to go")
    assert not (tmp_path / "out").exists()


def test_ctrl_c_stops_an_in_process_conversion(inputs, tmp_path):
    process, tmp = _start(inputs, tmp_path, "tensorflow")
    _wait_for(lambda: _ours(tmp), 120, "the conversion to start")
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err.decode()[-2000:]
    assert b"interrupted; nothing was written" in err
    _assert_nothing_left(tmp_path, tmp)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_a_subprocess_conversion(inputs, tmp_path, sig):
    pytest.importorskip("jax")
    process, tmp = _start(inputs, tmp_path, "jax")
    _wait_for(lambda: _workers(tmp), 180, "the TensorFlow worker to start")
    time.sleep(2)  # Well into the conversion.
    process.send_signal(sig)
    _, err = process.communicate(timeout=120)
    expected = 130 if sig == signal.SIGINT else 143
    assert process.returncode == expected, err.decode()[-2000:]
    _assert_nothing_left(tmp_path, tmp)


def test_killed_parent_takes_its_worker_and_data_along(inputs, tmp_path):
    """SIGKILL of the parent: the worker stops by itself, removes the copy
    of the calibration data, and never writes the output."""
    pytest.importorskip("jax")
    process, tmp = _start(inputs, tmp_path, "jax")
    _wait_for(lambda: _workers(tmp), 180, "the TensorFlow worker to start")
    time.sleep(2)
    process.kill()
    process.communicate(timeout=60)
    _assert_nothing_left(tmp_path, tmp)
    time.sleep(3)  # Nothing appears later either.
    assert not (tmp_path / "out").exists()
