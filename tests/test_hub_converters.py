"""Converting keras-hub GroupNL models for phones and microcontrollers.

`converters.convert` takes a keras-hub backbone or task like any model: it
converts the network (a task's preprocessor stays outside the TFLite model,
as it stays outside the task's call). Run in the TensorFlow process only
(see the Makefile), as `test_converters.py`; the last test converts from a
PyTorch process, through the TensorFlow subprocess.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import keras_groupnl
from keras_groupnl.converters import _arguments
from keras_groupnl.converters import convert
from tests.support.backend_process import backend_env
from tests.support.hub_models import SHAPE
from tests.support.hub_models import keras_hub_classifier
from tests.support.hub_models import numpy

# Mean absolute error of the int8 model, as a fraction of the mean absolute
# Keras output (measured about 0.01 for these models).
MAX_RELATIVE_ERROR = 0.05


@pytest.fixture(scope="module")
def classifier():
    """`to_groupnl` of a small keras-hub ResNet image classifier."""
    task = keras_hub_classifier()
    return keras_groupnl.to_groupnl(task, seed=1)


@pytest.fixture(scope="module")
def images(classifier):
    """`(raw, preprocessed)` images."""
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (32,) + SHAPE).astype("float32")
    return raw, numpy(classifier.preprocessor(raw))


def _check(result, keras_output, runtime):
    verification = result.report.verification[runtime]
    assert verification.mean_abs_error < MAX_RELATIVE_ERROR * np.mean(
        np.abs(keras_output)
    )
    assert len(result.report.groupnl) == 4
    assert os.path.getsize(result.tflite_path) > 0


def test_converters_take_the_network_of_a_task(classifier, images):
    raw, x = images
    view, path = _arguments.load_model(classifier)
    assert path is None
    assert not keras_groupnl._keras_hub.is_task(view)
    assert not any(
        keras_groupnl._keras_hub.is_backbone(lay) for lay in view.layers
    )
    # The view runs the network; the task's `predict` preprocesses first.
    network = view.predict(x, verbose=0)
    np.testing.assert_allclose(network, numpy(classifier(x)), atol=1e-5)
    np.testing.assert_allclose(
        network, classifier.predict(raw, verbose=0), atol=1e-5
    )


@pytest.mark.slow
@pytest.mark.parametrize("target", ["phone", "mcu"])
def test_retrofit_backbone_converts(classifier, images, target, tmp_path):
    x = images[1]
    result = convert(
        classifier.backbone,
        target,
        x,
        tmp_path / "out",
        calibration_samples=32,
        verification_samples=16,
        verbose=0,
    )
    runtime = "litert" if target == "phone" else "tflm"
    _check(result, classifier.backbone.predict(x[:16], verbose=0), runtime)
    if target == "mcu":
        assert result.report.input["dtype"] == "int8"


@pytest.mark.slow
def test_image_classifier_converts_for_the_phone(classifier, images, tmp_path):
    x = images[1]
    result = convert(
        classifier,
        "phone",
        x,
        tmp_path / "out",
        calibration_samples=32,
        verification_samples=16,
        verbose=0,
    )
    _check(result, numpy(classifier(x[:16])), "litert")
    assert result.report.verification["litert"].top1_agreement >= 0.75


_TORCH_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import keras
    from keras_groupnl import hub
    from keras_groupnl.converters import convert

    assert keras.backend.backend() == "torch"
    backbone = hub.GroupNLResNetBackbone(
        depth=8, image_shape=(32, 32, 3), seed=0
    )
    task = hub.GroupNLResNetImageClassifier(backbone=backbone, num_classes=3)
    x = np.random.default_rng(0).normal(size=(32, 32, 32, 3))
    keras_output = keras.ops.convert_to_numpy(task(x.astype("float32")))
    result = convert(
        task, "mcu", x, sys.argv[1], calibration_samples=32,
        verification_samples=16, verbose=0,
    )
    print("RESULT", json.dumps({
        "report": result.report.to_dict(),
        "mean_abs_output": float(np.mean(np.abs(keras_output[:16]))),
    }))
    """
)


@pytest.mark.slow
def test_converts_a_hub_model_from_a_torch_process(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-c", _TORCH_SCRIPT, str(tmp_path / "out")],
        env=backend_env("torch"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    line = [r for r in completed.stdout.splitlines() if r.startswith("RESULT")]
    result = json.loads(line[-1][len("RESULT ") :])
    verification = result["report"]["verification"]["tflm"]
    assert verification["mean_abs_error"] < (
        MAX_RELATIVE_ERROR * result["mean_abs_output"]
    )
    assert len(result["report"]["groupnl"]) == 6
    assert (tmp_path / "out" / "model.tflite").exists()
