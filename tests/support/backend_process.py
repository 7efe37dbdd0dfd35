"""The environment of a test subprocess that runs one Keras backend."""

import os

import keras_groupnl


def backend_env(backend):
    """`os.environ` for a subprocess on `backend`, CPU only, quiet, that
    imports the same `keras_groupnl` as this process."""
    env = dict(os.environ)
    env["KERAS_BACKEND"] = backend
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["JAX_PLATFORMS"] = "cpu"
    package_root = os.path.dirname(os.path.dirname(keras_groupnl.__file__))
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (package_root, env.get("PYTHONPATH")) if p
    )
    return env
