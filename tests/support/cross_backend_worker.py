"""Builds, saves and runs the cross-backend test model.

Imported by `test_cross_backend.py` in the test process, and run as a script
in a subprocess with another `KERAS_BACKEND`:

    python cross_backend_worker.py OUT_DIR [FOREIGN_DIR]

saves this backend's model to `OUT_DIR` (`model.keras`, `x.npy`, `y.npy`,
`nlf.npz`, `info.json`) and, with `FOREIGN_DIR`, loads the model saved there
by another backend, runs it on that backend's input and writes
`foreign_y.npy` and `foreign_nlf.npz` to `OUT_DIR`.
"""

import json
import os
import sys

import keras
import numpy as np

from keras_groupnl.layers import GroupNLConv2D
from keras_groupnl.layers import SparseGroupNLConv2D

DENSE_SEED = 11
SPARSE_SEED = 12
LAYER_NAMES = ("dense_gnl", "sparse_gnl")


def build_model():
    inputs = keras.Input((None, None, 4))
    h = GroupNLConv2D(
        12,
        3,
        padding="same",
        reduction_ratio=3,
        num_groups=3,
        shuffle=True,
        use_bias=True,
        bias_initializer="random_normal",
        seed=DENSE_SEED,
        name="dense_gnl",
    )(inputs)
    # 12 inputs, 3 seed maps: 3 conv groups of 4 inputs.
    outputs = SparseGroupNLConv2D(
        10,
        3,
        strides=2,
        reduction_ratio=4,
        num_groups=2,
        seed=SPARSE_SEED,
        name="sparse_gnl",
    )(h)
    return keras.Model(inputs, outputs)


def make_input():
    rng = np.random.default_rng(0)
    return rng.normal(size=(2, 9, 9, 4)).astype("float32")


def nlf_params(model):
    """{"<layer>/nlf_period": array, "<layer>/nlf_shift": array}."""
    out = {}
    for name in LAYER_NAMES:
        layer = model.get_layer(name)
        out[f"{name}/nlf_period"] = np.asarray(
            keras.ops.convert_to_numpy(layer.nlf_period)
        )
        out[f"{name}/nlf_shift"] = np.asarray(
            keras.ops.convert_to_numpy(layer.nlf_shift)
        )
    return out


def run(model, x):
    return np.asarray(keras.ops.convert_to_numpy(model(x)))


def save_model(out_dir):
    """Builds and saves this backend's model, its input and output."""
    os.makedirs(out_dir, exist_ok=True)
    model = build_model()
    x = make_input()
    model.save(os.path.join(out_dir, "model.keras"))
    np.save(os.path.join(out_dir, "x.npy"), x)
    np.save(os.path.join(out_dir, "y.npy"), run(model, x))
    np.savez(os.path.join(out_dir, "nlf.npz"), **nlf_params(model))
    with open(os.path.join(out_dir, "info.json"), "w") as f:
        json.dump({"backend": keras.backend.backend()}, f)
    return model


def run_foreign(foreign_dir, out_dir):
    """Loads the model another backend saved and runs it on its input."""
    model = keras.saving.load_model(os.path.join(foreign_dir, "model.keras"))
    x = np.load(os.path.join(foreign_dir, "x.npy"))
    np.save(os.path.join(out_dir, "foreign_y.npy"), run(model, x))
    np.savez(os.path.join(out_dir, "foreign_nlf.npz"), **nlf_params(model))


def main(argv):
    out_dir = argv[1]
    save_model(out_dir)
    if len(argv) > 2:
        run_foreign(argv[2], out_dir)


if __name__ == "__main__":
    main(sys.argv)
