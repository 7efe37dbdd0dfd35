"""A .keras model saved on one backend runs identically on the others.

The test process runs one backend. For each other backend one subprocess
(`cross_backend_worker.py`) both saves that backend's model and loads and
runs the model saved here, so the whole file costs two subprocesses.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.support import cross_backend_worker as worker
from tests.support.backend_process import backend_env

BACKENDS = ("tensorflow", "jax", "torch")
OTHER_BACKENDS = [b for b in BACKENDS if b != keras.backend.backend()]
TIMEOUT_S = 300


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Saves the model here, then runs one subprocess per other backend."""
    root = tmp_path_factory.mktemp("cross_backend")
    here = str(root / "here")
    model = worker.save_model(here)
    procs = {}
    for backend in OTHER_BACKENDS:
        out = str(root / backend)
        procs[backend] = (
            out,
            subprocess.Popen(
                [sys.executable, worker.__file__, out, here],
                env=backend_env(backend),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
    dirs = {}
    for backend, (out, proc) in procs.items():
        try:
            _, stderr = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
            pytest.fail(f"{backend} subprocess timed out:\n{stderr[-3000:]}")
        assert proc.returncode == 0, (
            f"{backend} subprocess failed:\n{stderr[-3000:]}"
        )
        dirs[backend] = out
    return {"here": here, "model": model, "dirs": dirs}


def load_npz(path):
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def assert_same_nlf(actual, expected):
    assert set(actual) == set(expected)
    assert len(expected) == 4
    for key in expected:
        np.testing.assert_array_equal(actual[key], expected[key], err_msg=key)


def test_runs_against_other_backends():
    assert len(OTHER_BACKENDS) == 2


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_subprocess_ran_requested_backend(saved, backend):
    with open(os.path.join(saved["dirs"][backend], "info.json")) as f:
        assert json.load(f)["backend"] == backend


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_model_saved_on_other_backend_loads_here(saved, backend):
    out = saved["dirs"][backend]
    model = keras.saving.load_model(os.path.join(out, "model.keras"))
    x = np.load(os.path.join(out, "x.npy"))
    y_there = np.load(os.path.join(out, "y.npy"))
    y_here = worker.run(model, x)
    assert y_here.shape == y_there.shape == (2, 4, 4, 10)
    np.testing.assert_allclose(y_here, y_there, atol=1e-5, rtol=0)
    assert_same_nlf(
        worker.nlf_params(model), load_npz(os.path.join(out, "nlf.npz"))
    )


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_model_saved_here_runs_on_other_backend(saved, backend):
    out = saved["dirs"][backend]
    y_here = np.load(os.path.join(saved["here"], "y.npy"))
    y_there = np.load(os.path.join(out, "foreign_y.npy"))
    assert y_there.shape == y_here.shape == (2, 4, 4, 10)
    np.testing.assert_allclose(y_there, y_here, atol=1e-5, rtol=0)
    assert_same_nlf(
        load_npz(os.path.join(out, "foreign_nlf.npz")),
        worker.nlf_params(saved["model"]),
    )


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_nlf_parameters_identical_across_backends(saved, backend):
    # The other backend drew its NLF parameters from the same seeds.
    there = load_npz(os.path.join(saved["dirs"][backend], "nlf.npz"))
    assert_same_nlf(there, worker.nlf_params(saved["model"]))
    # And a model built afresh here draws them again, identically.
    assert_same_nlf(worker.nlf_params(worker.build_model()), there)


def test_kernels_differ_across_backends(saved):
    """Only the NLF draw is seeded: the kernels are drawn unseeded by each
    process, so the comparisons above do compare different models (a
    loader that rebuilt the model instead of reading the file would
    fail them)."""
    outputs = [np.load(os.path.join(saved["here"], "y.npy"))]
    outputs += [
        np.load(os.path.join(d, "y.npy")) for d in saved["dirs"].values()
    ]
    assert not np.allclose(outputs[0], outputs[1], atol=1e-3)
