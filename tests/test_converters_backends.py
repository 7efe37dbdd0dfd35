"""Conversion from a process that runs the JAX (or torch) backend.

`convert` saves the model and converts it in a TensorFlow-backend subprocess;
here a model is built and trained on JAX, in a process of its own, and
converted for the microcontroller target.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

MIN_AGREEMENT = 0.95


_OTHER_BACKEND_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import keras
    from keras_groupnl.layers import SparseGroupNLConv2D
    from keras_groupnl.converters import convert

    assert keras.backend.backend() == sys.argv[1]
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 256)
    x = rng.standard_normal((256, 12, 12, 4)).astype("float32")
    x[y == 1, :6] += 1.5
    inputs = keras.Input((12, 12, 4))
    h = SparseGroupNLConv2D(8, 3, strides=2, padding="same", seed=1)(inputs)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, keras.layers.Dense(2)(h))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile("adam", loss)
    model.fit(x, y, epochs=3, verbose=0)
    result = convert(
        model, "mcu", x[:64], sys.argv[2], labels=y[:64], verbose=0
    )
    print("RESULT", json.dumps(result.report.to_dict()))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_backend_converts_in_subprocess(tmp_path, backend):
    pytest.importorskip(backend)
    for module in ("tensorflow", "ai_edge_litert", "tflite_micro"):
        pytest.importorskip(module)
    env = dict(os.environ, KERAS_BACKEND=backend)
    out = tmp_path / "out"
    completed = subprocess.run(
        [sys.executable, "-c", _OTHER_BACKEND_SCRIPT, backend, str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    line = [
        row for row in completed.stdout.splitlines() if row.startswith("RESULT")
    ]
    report = json.loads(line[0][len("RESULT ") :])
    assert report["float_ops"] == 0
    assert report["top1_agreement"] >= MIN_AGREEMENT
    assert set(os.listdir(out)) == {
        "model.tflite",
        "model_data.cc",
        "model_data.h",
        "model_ops.h",
        "model_report.json",
    }
