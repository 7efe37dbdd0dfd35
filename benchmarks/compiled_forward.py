"""A model's forward pass compiled the way each Keras backend runs fastest.

Shared by the timing scripts in this folder (they run as
`python benchmarks/NAME.py`, so this module is importable by name):

- TensorFlow: `tf.function`, graph mode, or XLA with `mode="xla"`.
- JAX: `jax.jit` of `model.stateless_call` (always XLA).
- torch: eager under `torch.no_grad()`.

Every returned function is synchronous (it waits for the result), so wall
time around a call measures the call, and none copies the result to NumPy:
on TensorFlow `.numpy()` of a 56x56x64x8 output measured about 2 ms here,
more than a depthwise conv of that shape, and would be added to every
layer's time alike, pulling all ratios towards 1.
"""

import json
import os
import tempfile


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


def write_json(path, data):
    """Writes `data` as JSON to `path` atomically (temp file + rename)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".benchmark_", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
