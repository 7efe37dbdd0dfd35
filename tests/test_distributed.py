"""Multi-device and multi-process training on simulated devices (CPU only).

Each engine runs in the pytest process of its own Keras backend (`make
test-<backend>`) and skips in the others. Simulated devices must exist
before the engine starts, so the training runs in fresh processes
(`distributed_worker.py`):

- JAX: 4 host devices (`XLA_FLAGS=--xla_force_host_platform_device_count=4`),
  `keras.distribution.DataParallel` and `ModelParallel`.
- TensorFlow: 2 logical CPU devices, `tf.distribute.MirroredStrategy`.
- PyTorch: 2 processes in a gloo process group, `DistributedDataParallel`
  with the torch training loop Keras documents.

Every engine trains a small GroupNL model a few steps and must match
single-device training, hold the same NLF tables on every replica and rank,
and save a `.keras` file that loads here, on one device, with the same
outputs. The TensorFlow runs are in float64: Keras' synchronized
BatchNormalization computes the variance as E[x^2] - E[x]^2, which loses
about 1e-3 (relative) in float32 on GroupNL feature maps (channels whose
mean is large against their spread), so float32 could only be compared
loosely; in float64 the comparison is exact to 1e-9.
"""

import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.support import distributed_worker as worker
from tests.support.backend_process import backend_env

BACKEND = keras.backend.backend()
TIMEOUT_S = 600
# float32 runs: the same math, summed in another order.
RTOL, ATOL = 1e-4, 1e-5


def only_on(backend):
    return pytest.mark.skipif(
        BACKEND != backend,
        reason=f"runs in the {backend} pytest process (make test-{backend}); "
        f"this one runs {BACKEND}",
    )


def run_processes(out, commands, env=None):
    """Runs the commands in parallel; fails with the logs of those that fail."""
    env = env or backend_env(BACKEND)
    procs = []
    for i, command in enumerate(commands):
        log = open(os.path.join(out, f"process{i}.log"), "w")
        proc = subprocess.Popen(
            list(map(str, command)),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        procs.append((proc, log))
    failures = []
    for i, (proc, log) in enumerate(procs):
        try:
            proc.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            for other, _ in procs:
                other.kill()
            proc.wait()
        log.close()
        if proc.returncode != 0:
            with open(log.name) as f:
                text = f.read()[-3000:]
            failures.append(f"process {i} ({proc.returncode}):\n{text}")
    if failures:
        pytest.fail("\n".join(failures))


def run_workers(out, *arg_lists):
    """One `distributed_worker.py` process per argument list, in parallel."""
    run_processes(
        out, [[sys.executable, worker.__file__, *args] for args in arg_lists]
    )


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load(out, name):
    with np.load(os.path.join(out, f"{name}.npz")) as data:
        return {k: data[k] for k in data.files}


def assert_same_training(actual, expected, rtol=RTOL, atol=ATOL):
    """Same losses and the same value of every variable."""
    variables = [k for k in expected if k != "losses"]
    assert "gnl1_conv/kernel" in variables or "conv1_conv/kernel" in variables
    np.testing.assert_allclose(
        actual["losses"], expected["losses"], rtol=rtol, atol=atol
    )
    for key in variables:
        np.testing.assert_allclose(
            actual[key], expected[key], rtol=rtol, atol=atol, err_msg=key
        )


def assert_copies_equal(copies, reference, suffix):
    """Every copy `<path>/<suffix>_<i>` equals `reference[<path>]` exactly."""
    tables = [k for k in reference if "/nlf_" in k]
    assert tables
    for key in tables:
        found = [k for k in copies if k.startswith(f"{key}/{suffix}_")]
        assert len(found) >= 2, (key, found)
        for copy in found:
            np.testing.assert_array_equal(copies[copy], reference[key], copy)


def assert_loads_on_one_device(out, name, atol=ATOL):
    model = keras.saving.load_model(os.path.join(out, f"{name}.keras"))
    saved = load(out, f"{name}_outputs")
    outputs = np.asarray(model.predict(saved["x"], verbose=0))
    np.testing.assert_allclose(outputs, saved["y"], rtol=0, atol=atol)


# ---------------------------------------------------------------------------
# JAX: keras.distribution on 4 simulated host devices.


@pytest.fixture(scope="module")
def jax_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("jax"))
    run_workers(out, ["jax", out])
    return out


@only_on("jax")
@pytest.mark.parametrize("name", ["data_parallel", "model_parallel"])
def test_jax_matches_single_device(jax_run, name):
    assert_same_training(load(jax_run, name), load(jax_run, "single"))


@only_on("jax")
@pytest.mark.parametrize("name", ["data_parallel", "model_parallel"])
def test_jax_nlf_tables_identical_on_every_device(jax_run, name):
    assert_copies_equal(load(jax_run, name), load(jax_run, "single"), "shard")


@only_on("jax")
def test_jax_model_parallel_shards_groupnl_kernels(jax_run):
    # gnl1_conv has 8 seed maps: all on every device with DataParallel,
    # half of them on each device of the 2-way "model" axis.
    assert load(jax_run, "data_parallel")["seed_maps_per_device"] == 8
    assert load(jax_run, "model_parallel")["seed_maps_per_device"] == 4


@only_on("jax")
@pytest.mark.parametrize("name", ["data_parallel", "model_parallel"])
def test_jax_saved_model_loads_on_one_device(jax_run, name):
    assert_loads_on_one_device(jax_run, name)


# ---------------------------------------------------------------------------
# TensorFlow: MirroredStrategy on 2 logical CPU devices (float64).


@pytest.fixture(scope="module")
def tf_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("tensorflow"))
    run_workers(out, ["tensorflow", out])
    return out


@only_on("tensorflow")
def test_mirrored_synchronized_batchnorm_matches_single_device(tf_run):
    assert_same_training(
        load(tf_run, "mirrored_sync"),
        load(tf_run, "single"),
        rtol=1e-9,
        atol=1e-9,
    )


@only_on("tensorflow")
def test_mirrored_per_replica_batchnorm_differs(tf_run):
    # Why `synchronized_batchnorm` exists: each replica normalises with the
    # statistics of its half of the batch, so even the first loss differs.
    local = load(tf_run, "mirrored_local")["losses"]
    single = load(tf_run, "single")["losses"]
    assert abs(local[0] - single[0]) > 1e-3


@only_on("tensorflow")
@pytest.mark.parametrize("name", ["mirrored_sync", "mirrored_local"])
def test_mirrored_nlf_tables_identical_on_every_replica(tf_run, name):
    assert_copies_equal(load(tf_run, name), load(tf_run, "single"), "replica")


@only_on("tensorflow")
def test_mirrored_saved_model_loads_on_one_device(tf_run):
    assert_loads_on_one_device(tf_run, "mirrored_sync", atol=1e-9)


# ---------------------------------------------------------------------------
# PyTorch: DistributedDataParallel, 2 gloo processes.


@pytest.fixture(scope="module")
def torch_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("torch"))
    port = free_port()
    run_workers(
        out,
        ["torch", out, 0, 2, port],
        ["torch", out, 1, 2, port],
    )
    return out


@pytest.fixture(scope="module")
def torch_single():
    """Single-device training here, a third process, on the whole batches."""
    model = worker.small_model(batchnorm=False)
    nlf = worker.nlf_tables(model)
    x, y = worker.data()
    losses = worker.train_with_torch(model, x, y)
    return {"losses": np.asarray(losses), **worker.weights(model)}, nlf


@only_on("torch")
@pytest.mark.parametrize("rank", [0, 1])
def test_ddp_matches_single_device(torch_run, torch_single, rank):
    out, single = torch_run, torch_single[0]
    result = load(out, f"rank{rank}")
    # Each rank's loss is that of its half of the batch; their mean is the
    # loss of the whole batch.
    halves = np.mean([load(out, f"rank{r}")["losses"] for r in (0, 1)], 0)
    np.testing.assert_allclose(halves, single["losses"], rtol=RTOL, atol=ATOL)
    result["losses"] = halves
    assert_same_training(result, single)


@only_on("torch")
def test_ddp_ranks_hold_identical_weights(torch_run):
    out = torch_run
    rank0, rank1 = load(out, "rank0"), load(out, "rank1")
    for key in rank0:
        if key != "losses":
            np.testing.assert_array_equal(rank0[key], rank1[key], key)


@only_on("torch")
def test_ddp_model_fit_does_not_average_gradients(torch_run):
    # What docs/distributed.md warns about: `model.fit` in a DDP job runs,
    # but every rank trains on its own share alone and the copies drift.
    rank0, rank1 = (load(torch_run, f"rank{r}_fit") for r in (0, 1))
    drift = max(np.max(np.abs(rank0[k] - rank1[k])) for k in rank0)
    assert drift > 1e-3


@only_on("torch")
def test_seed_none_draws_the_same_tables_in_every_rank(torch_run, torch_single):
    # Read before DistributedDataParallel, which would copy rank 0's.
    out, nlf = torch_run, torch_single[1]
    for rank in (0, 1):
        tables = load(out, f"rank{rank}_nlf_before_ddp")
        assert set(tables) == set(nlf)
        for key in nlf:
            np.testing.assert_array_equal(tables[key], nlf[key], key)
    # Ranks seeded differently draw different tables.
    own = [load(out, f"rank{r}_own_seed_nlf") for r in (0, 1)]
    key = "gnl1_conv/nlf_period"
    assert not np.array_equal(own[0][key], own[1][key])


@only_on("torch")
def test_ddp_saved_model_loads_on_one_device(torch_run):
    assert_loads_on_one_device(torch_run, "ddp")


# ---------------------------------------------------------------------------
# seed=None in other processes, on every backend.


@pytest.fixture
def engine_run(request):
    """The output folder of this backend's worker processes."""
    name = {"jax": "jax_run", "tensorflow": "tf_run", "torch": "torch_run"}
    return request.getfixturevalue(name[BACKEND])


def test_seed_none_draws_the_same_tables_in_other_processes(engine_run):
    # GroupNLResNet8(seed=None) after keras.utils.set_random_seed(NLF_SEED),
    # drawn here and in every worker process of this backend.
    here = worker.resnet8_nlf(worker.NLF_SEED)
    assert len(here) == 12
    names = [n for n in os.listdir(engine_run) if n.endswith("resnet8_nlf.npz")]
    assert len(names) == (2 if BACKEND == "torch" else 1), names
    for name in names:
        there = load(engine_run, name[: -len(".npz")])
        assert set(there) == set(here)
        for key in here:
            np.testing.assert_array_equal(there[key], here[key], key)
    # Another seed, other tables: the comparison can fail.
    other = worker.resnet8_nlf(worker.NLF_SEED + 1)
    assert not any(np.array_equal(other[k], here[k]) for k in here)


# ---------------------------------------------------------------------------
# The recipes of docs/distributed.md, at a tiny size.

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = {
    "jax": ("distributed_jax.py", ["--model-parallel"]),
    "tensorflow": ("distributed_tensorflow.py", ["--simulate-cpu-devices", 2]),
    "torch": ("distributed_torch.py", ["--processes", 2]),
}


@pytest.mark.slow
def test_recipe_trains_saves_and_loads_on_one_device(tmp_path):
    # This backend's recipe; it checks the reloaded model's outputs itself.
    from keras_groupnl.datasets import load_fashion_mnist

    try:
        load_fashion_mnist(download=False)
    except (OSError, ValueError) as error:
        pytest.skip(f"Fashion-MNIST not available here: {error}")
    script, args = RECIPES[BACKEND]
    if BACKEND == "torch":
        args = args + ["--port", free_port()]
    env = backend_env(BACKEND)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    out = tmp_path / "run"
    command = [sys.executable, os.path.join(ROOT, "examples", script), *args]
    command += ["--train-size", 256, "--test-size", 64, "--epochs", 1]
    command += ["--batch-size", 32, "--out", out]
    run_processes(str(tmp_path), [command], env)
    assert (out / "groupnl_resnet8.keras").is_file()
    with open(tmp_path / "process0.log") as f:
        assert "on one device: test accuracy" in f.read()


def test_docs_show_the_recipes_as_they_are():
    with open(os.path.join(ROOT, "docs", "distributed.md")) as f:
        docs = f.read()
    for script, _ in RECIPES.values():
        with open(os.path.join(ROOT, "examples", script)) as f:
            code = f.read()
        block = f"<!-- recipe: examples/{script} -->\n\n```python\n{code}```"
        assert block in docs, f"docs/distributed.md shows another {script}"
