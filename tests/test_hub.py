"""Tests of `keras_groupnl.hub`: GroupNL families as keras-hub models
(every backend).

The ResNet, MobileNetV3 and EfficientNet-ES backbones are keras-hub
`Backbone`s with the GroupNL settings in their config; their image
classifiers train one `fit` step and round-trip as presets with identical
outputs; keras-hub stays optional. `to_groupnl` on keras-hub models:
`test_hub_to_groupnl.py`; conversion: `test_hub_converters.py`.
"""

import os
import subprocess
import sys
import textwrap

import keras
import keras_hub
import numpy as np
import pytest

import keras_groupnl
from keras_groupnl import hub
from keras_groupnl.applications import resnet
from tests.support.backend_process import backend_env
from tests.support.hub_models import SHAPE
from tests.support.hub_models import assert_same_weights
from tests.support.hub_models import fit_one_step
from tests.support.hub_models import groupnl_layers
from tests.support.hub_models import images
from tests.support.hub_models import json_config
from tests.support.hub_models import nlf_tables
from tests.support.hub_models import numpy


def _resnet8(**kwargs):
    return hub.GroupNLResNetBackbone(
        depth=8, image_shape=SHAPE, seed=0, **kwargs
    )


def _resnet8_classifier():
    converter = hub.GroupNLResNetImageConverter(image_size=SHAPE[:2])
    return hub.GroupNLResNetImageClassifier(
        backbone=_resnet8(),
        num_classes=3,
        preprocessor=hub.GroupNLResNetImageClassifierPreprocessor(converter),
    )


def test_resnet_backbone_is_a_keras_hub_backbone():
    backbone = _resnet8(reduction_ratio=4, num_groups=2)
    assert isinstance(backbone, keras_hub.models.Backbone)
    assert tuple(backbone.output.shape) == (None, 8, 8, 64)
    plain = resnet.GroupNLResNet8(
        include_top=False,
        input_shape=SHAPE,
        seed=0,
        reduction_ratio=4,
        num_groups=2,
    )
    assert [lay.name for lay in backbone.layers] == [
        lay.name for lay in plain.layers
    ]
    assert {lay.reduction_ratio for lay in groupnl_layers(backbone)} == {4}
    config = backbone.get_config()
    for key, value in {
        "depth": 8,
        "image_shape": SHAPE,
        "conv_type": "dense",
        "reduction_ratio": 4,
        "num_groups": 2,
        "seed": 0,
        "groupnl_strided": True,
        "trainable_nlf": False,
    }.items():
        assert config[key] == value, key
    rebuilt = hub.GroupNLResNetBackbone.from_config(config)
    assert rebuilt.get_config() == config
    assert len(groupnl_layers(rebuilt)) == 6
    for (p1, s1), (p2, s2) in zip(nlf_tables(rebuilt), nlf_tables(plain)):
        np.testing.assert_array_equal(p1, p2)
        np.testing.assert_array_equal(s1, s2)


def test_seed_none_is_drawn_once_and_kept_in_the_config():
    backbone = hub.GroupNLResNetBackbone(depth=8, image_shape=SHAPE)
    seed = backbone.get_config()["seed"]
    assert isinstance(seed, int) and seed >= 0
    rebuilt = hub.GroupNLResNetBackbone.from_config(backbone.get_config())
    for (p1, s1), (p2, s2) in zip(nlf_tables(backbone), nlf_tables(rebuilt)):
        np.testing.assert_array_equal(p1, p2)
        np.testing.assert_array_equal(s1, s2)


def test_classifier_fits_and_round_trips_as_a_preset(tmp_path):
    classifier = _resnet8_classifier()
    x = images()
    fit_one_step(classifier, x)
    classifier.save_to_preset(str(tmp_path))
    for filename in ("config.json", "task.json", "preprocessor.json"):
        assert (tmp_path / filename).exists()

    loaded = keras_hub.models.ImageClassifier.from_preset(str(tmp_path))
    assert type(loaded) is hub.GroupNLResNetImageClassifier
    assert type(loaded.backbone) is hub.GroupNLResNetBackbone
    assert loaded.backbone.get_config() == classifier.backbone.get_config()
    assert json_config(
        loaded.preprocessor.image_converter.get_config()
    ) == json_config(classifier.preprocessor.image_converter.get_config())
    assert_same_weights(loaded, classifier)
    np.testing.assert_array_equal(
        loaded.predict(x, verbose=0), classifier.predict(x, verbose=0)
    )
    backbone = keras_hub.models.Backbone.from_preset(str(tmp_path))
    assert type(backbone) is hub.GroupNLResNetBackbone
    np.testing.assert_array_equal(
        numpy(backbone(x)), numpy(classifier.backbone(x))
    )


def test_base_image_classifier_fits_on_a_groupnl_backbone():
    classifier = keras_hub.models.ImageClassifier(
        backbone=_resnet8(), num_classes=2
    )
    fit_one_step(classifier, images() / 255.0)


def test_image_converters_match_the_applications_preprocessing():
    x = images(2)
    np.testing.assert_allclose(
        numpy(hub.GroupNLResNetImageConverter()(x)),
        resnet.preprocess_input(x),
        rtol=1e-5,
        atol=1e-5,
    )
    np.testing.assert_allclose(
        numpy(hub.GroupNLMobileNetV3ImageConverter()(x)),
        x / 127.5 - 1,
        rtol=1e-5,
        atol=1e-5,
    )
    np.testing.assert_allclose(
        numpy(hub.GroupNLEfficientNetESImageConverter()(x)),
        (x - 127) / 128,
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda: hub.GroupNLMobileNetV3Backbone(
            size="small", alpha=0.5, image_shape=SHAPE, seed=0
        ),
        lambda: hub.GroupNLEfficientNetESBackbone(image_shape=SHAPE, seed=0),
    ],
    ids=["mobilenet_v3_small", "efficientnet_es"],
)
def test_inverted_residual_backbones_round_trip_as_presets(make, tmp_path):
    backbone = make()
    assert isinstance(backbone, keras_hub.models.Backbone)
    assert groupnl_layers(backbone)
    assert not any(lay.name == "rescaling" for lay in backbone.layers)
    backbone.save_to_preset(str(tmp_path))
    loaded = keras_hub.models.Backbone.from_preset(str(tmp_path))
    assert type(loaded) is type(backbone)
    assert loaded.get_config() == backbone.get_config()
    x = images(2) / 127.5 - 1
    np.testing.assert_array_equal(numpy(loaded(x)), numpy(backbone(x)))


def test_dtype_policy_reaches_every_layer():
    before = keras.config.dtype_policy().name
    backbone = _resnet8(dtype="mixed_bfloat16")
    assert keras.config.dtype_policy().name == before
    names = {lay.dtype_policy.name for lay in backbone.layers[1:]}
    assert names == {"mixed_bfloat16"}
    assert groupnl_layers(backbone)
    assert backbone.get_config()["dtype"]["config"]["name"] == "mixed_bfloat16"


def test_family_arguments_are_checked():
    with pytest.raises(ValueError, match=r"`depth` must be one of .*depth=7"):
        hub.GroupNLResNetBackbone(depth=7)
    with pytest.raises(ValueError, match=r"`size` must be .*size='medium'"):
        hub.GroupNLMobileNetV3Backbone(size="medium")
    with pytest.raises(ValueError, match=r"seed=-1"):
        hub.GroupNLResNetBackbone(depth=8, image_shape=SHAPE, seed=-1)
    with pytest.raises(ValueError, match=r"stem"):
        hub.GroupNLResNetBackbone(depth=8, stem="small")


_WITHOUT_HUB = textwrap.dedent(
    """
    import sys
    import keras_groupnl
    import keras_groupnl.applications, keras_groupnl.converters
    keras_groupnl.to_groupnl
    assert "keras_hub" not in sys.modules, "keras_hub was imported"
    sys.modules["keras_hub"] = None  # as if keras-hub were not installed
    try:
        import keras_groupnl.hub
    except ImportError as error:
        print("ERROR", error)
    """
)


def test_keras_hub_is_optional():
    completed = subprocess.run(
        [sys.executable, "-c", _WITHOUT_HUB],
        env=backend_env(keras.backend.backend()),
        cwd=os.path.dirname(os.path.dirname(keras_groupnl.__file__)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "pip install 'keras-groupnl[hub]'" in completed.stdout
