"""Tests of `to_groupnl` on keras-hub models (every backend).

A keras-hub `ResNetBackbone` and `ResNetImageClassifier` (basic blocks,
random weights, 32x32 images) through `to_groupnl`: the classes kept, the
config (the source's plus the settings), the preset round trips, the
errors for what it cannot keep.
"""

import keras
import keras_hub
import numpy as np
import pytest

import keras_groupnl
from keras_groupnl import hub
from keras_groupnl.layers import BaseGroupNLConv
from tests.support.hub_models import assert_same_weights
from tests.support.hub_models import fit_one_step
from tests.support.hub_models import groupnl_layers
from tests.support.hub_models import images
from tests.support.hub_models import json_config
from tests.support.hub_models import keras_hub_classifier
from tests.support.hub_models import keras_hub_resnet
from tests.support.hub_models import nlf_tables
from tests.support.hub_models import numpy


@pytest.fixture(scope="module")
def source():
    return keras_hub_resnet()


@pytest.fixture(scope="module")
def converted(source):
    return keras_groupnl.to_groupnl(source, seed=3, return_report=True)


def test_to_groupnl_keeps_a_backbone_a_backbone(source, converted):
    backbone, report = converted
    assert type(backbone) is hub.RetrofitBackbone
    assert isinstance(backbone, keras_hub.models.Backbone)
    assert backbone.name == source.name
    assert backbone.data_format == source.data_format
    assert backbone.groupnl_report is report
    assert [r.path for r in report.replaced] == [
        "stack0_block0_1_conv",
        "stack0_block0_2_conv",
        "stack1_block0_1_conv",
        "stack1_block0_2_conv",
    ]
    assert {k.path for k in report.kept} == {
        "conv1_conv",
        "stack1_block0_0_conv",
    }
    replaced = {r.path for r in report.replaced}
    for layer in source.layers:
        new = backbone.get_layer(layer.name)
        if layer.name in replaced:
            assert isinstance(new, BaseGroupNLConv)
        else:
            assert type(new) is type(layer)
            for a, b in zip(layer.get_weights(), new.get_weights()):
                np.testing.assert_array_equal(a, b, err_msg=layer.name)
    assert tuple(backbone.output.shape) == tuple(source.output.shape)


def test_retrofit_config_is_the_source_config_plus_the_settings(
    source, converted
):
    config = converted[0].get_config()
    assert config["source"]["class_name"] == "ResNetBackbone"
    assert config["source"]["registered_name"] == "keras_hub>ResNetBackbone"
    rebuilt_source = keras.saving.deserialize_keras_object(config["source"])
    assert rebuilt_source.get_config() == source.get_config()
    for key, value in {
        "reduction_ratio": 2,
        "num_groups": 4,
        "conv_type": "dense",
        "depthwise": True,
        "strided": True,
        "stem": False,
        "min_filters": 1,
        "include": None,
        "exclude": None,
        "init": "from_conv",
        "seed": 3,
    }.items():
        assert config[key] == value, key


def test_retrofit_backbone_round_trips_as_a_preset(converted, tmp_path):
    backbone = converted[0]
    backbone.save_to_preset(str(tmp_path))
    loaded = keras_hub.models.Backbone.from_preset(str(tmp_path))
    assert type(loaded) is hub.RetrofitBackbone
    assert json_config(loaded.get_config()) == json_config(
        backbone.get_config()
    )
    assert_same_weights(loaded, backbone)
    x = images() / 255.0
    np.testing.assert_array_equal(numpy(loaded(x)), numpy(backbone(x)))
    # Without the saved weights, the sinusoids still come from the seed.
    fresh = keras_hub.models.Backbone.from_preset(
        str(tmp_path), load_weights=False
    )
    assert len(nlf_tables(fresh)) == 4
    for (p1, s1), (p2, s2) in zip(nlf_tables(fresh), nlf_tables(backbone)):
        np.testing.assert_array_equal(p1, p2)
        np.testing.assert_array_equal(s1, s2)


def test_to_groupnl_keeps_an_image_classifier(tmp_path):
    task = keras_hub_classifier()
    task.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    source_weights = [numpy(w) for w in task.weights]
    new, report = keras_groupnl.to_groupnl(task, seed=1, return_report=True)
    assert type(new) is hub.RetrofitImageClassifier
    assert isinstance(new, keras_hub.models.ImageClassifier)
    assert type(new.backbone) is hub.RetrofitBackbone
    assert len(report.replaced) == 4
    assert type(new.preprocessor) is type(task.preprocessor)
    assert new.preprocessor is not task.preprocessor
    assert json_config(new.preprocessor.get_config()) == json_config(
        task.preprocessor.get_config()
    )
    assert (new.num_classes, new.pooling, new.activation) == (3, "avg", None)
    for name in ("predictions",):
        for a, b in zip(
            new.get_layer(name).get_weights(),
            task.get_layer(name).get_weights(),
        ):
            np.testing.assert_array_equal(a, b)
    assert isinstance(new.optimizer, keras.optimizers.SGD)
    assert new.loss == "mse"

    new.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x = images()
    fit_one_step(new, x)
    for before, after in zip(source_weights, task.weights):
        np.testing.assert_array_equal(before, numpy(after))

    new.save_to_preset(str(tmp_path))
    loaded = keras_hub.models.ImageClassifier.from_preset(str(tmp_path))
    assert type(loaded) is hub.RetrofitImageClassifier
    assert type(loaded.preprocessor) is type(task.preprocessor)
    assert_same_weights(loaded, new)
    np.testing.assert_array_equal(
        loaded.predict(x, verbose=0), new.predict(x, verbose=0)
    )


def test_to_groupnl_names_what_it_cannot_keep(source):
    with pytest.raises(ValueError, match=r"`include` must be None or layer"):
        keras_groupnl.to_groupnl(source, include=lambda layer: True)
    with pytest.raises(ValueError, match=r"`exclude` must be None or layer"):
        hub.RetrofitBackbone(source, exclude=lambda layer: False)
    with pytest.raises(ValueError, match=r"`source` must be .*source='x'"):
        hub.RetrofitBackbone("x")

    class Embedder(keras_hub.models.Task):
        def __init__(self, backbone, **kwargs):
            self.backbone = backbone
            self.preprocessor = None
            inputs = backbone.input
            pooled = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
            super().__init__(inputs=inputs, outputs=pooled, **kwargs)

    with pytest.raises(ValueError, match=r"a Embedder is another kind of"):
        keras_groupnl.to_groupnl(Embedder(source))

    class PooledClassifier(keras_hub.models.ImageClassifier):
        def get_config(self):
            return super().get_config()

    task = PooledClassifier(backbone=source, num_classes=2)
    with pytest.raises(ValueError, match=r"defines get_config beyond"):
        keras_groupnl.to_groupnl(task)


def test_to_groupnl_on_a_groupnl_family_backbone():
    plain = hub.GroupNLResNetBackbone(
        depth=8, image_shape=(32, 32, 3), seed=0, conv_type="plain"
    )
    converted = keras_groupnl.to_groupnl(plain, seed=0)
    assert type(converted) is hub.RetrofitBackbone
    assert converted.get_config()["source"]["class_name"] == (
        "GroupNLResNetBackbone"
    )
    assert len(groupnl_layers(converted)) == 6
