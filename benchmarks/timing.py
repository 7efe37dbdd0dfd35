"""How the benchmark scripts time models.

Shared by the timing scripts in this folder (they run as
`python benchmarks/NAME.py`, so this module is importable by name):

- `compiled_forward`: a model's forward pass compiled the way each Keras
  backend runs fastest: TensorFlow `tf.function` (graph mode, or XLA with
  `mode="xla"`), JAX `jax.jit` of `model.stateless_call` (always XLA),
  torch eager under `torch.no_grad()`.
- `interleaved_median`: times several functions in rounds that interleave
  them, so that load on a shared machine hits them alike, and reports each
  one's median round.

Every function `compiled_forward` returns is synchronous (it waits for the
result), so wall time around a call measures the call, and none copies the
result to NumPy: on TensorFlow `.numpy()` of a 56x56x64x8 output measured
about 2 ms here, more than a depthwise conv of that shape, and would be
added to every layer's time alike, pulling all ratios towards 1.
"""

import time

# A run's name -> (Keras backend, `compiled_forward` mode).
RUNS = {
    "tensorflow": ("tensorflow", "graph"),
    "tensorflow-xla": ("tensorflow", "xla"),
    "jax": ("jax", "jit"),
    "torch": ("torch", "eager"),
}


def compiled_forward(model, mode):
    """A function x -> model(x) compiled the way `mode` says."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        fn = tf.function(
            lambda x: model(x, training=False), jit_compile=(mode == "xla")
        )
        if not tf.config.list_logical_devices("GPU"):
            # Eager TF returns once the function has run on the CPU.
            return fn

        def run(x):
            # GPU kernels run asynchronously; wait for them.
            y = fn(x)
            tf.test.experimental.sync_devices()
            return y

        return run
    if backend == "jax":
        import jax

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]

        @jax.jit
        def fn(trainable, non_trainable, x):
            y, _ = model.stateless_call(trainable, non_trainable, x)
            return y

        return lambda x: fn(trainable, non_trainable, x).block_until_ready()
    import torch

    def fn(x):
        with torch.no_grad():
            return model(x, training=False)

    return fn


def time_call(fn, iters):
    """Seconds per call of `fn()`, over `iters` calls."""
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - start) / iters


def interleaved_median(fns, rounds, min_seconds, min_iters=1):
    """Times zero-argument functions side by side.

    Each function gets a call count that takes about `min_seconds` (at least
    `min_iters`); then `rounds` rounds call every function that many times,
    one after the other.

    Returns:
        `({name: median seconds per call}, {name: calls per round})`.
    """
    import numpy as np

    iters = {}
    for name, fn in fns.items():
        once = time_call(fn, min_iters)
        iters[name] = max(min_iters, int(min_seconds / max(once, 1e-6)))
    samples = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            samples[name].append(time_call(fn, iters[name]))
    medians = {name: float(np.median(s)) for name, s in samples.items()}
    return medians, iters
