"""`to_groupnl` for keras-hub models: a Backbone stays a Backbone.

A keras-hub backbone becomes a `RetrofitBackbone`; an `ImageClassifier`
becomes a `RetrofitImageClassifier` around the converted backbone, with a
copy of the source's preprocessor, its head weights, its config
(`num_classes`, `pooling`, `activation`, `dropout`) and its compile config.
Other tasks, and image classifier classes that add behaviour of their own,
raise a `ValueError`: rebuilding them as an `ImageClassifier` would lose it.
"""

import keras
from keras_hub.models import ImageClassifier

from keras_groupnl import _keras_hub
from keras_groupnl.hub.retrofit import RetrofitBackbone
from keras_groupnl.hub.retrofit import RetrofitImageClassifier
from keras_groupnl.hub.retrofit import settings_config

# Class attributes that tie a task to its backbone: not behaviour.
_TASK_TIES = ("backbone_cls", "preprocessor_cls")


def to_groupnl(model, settings):
    """`(converted, report)` for a keras-hub Backbone or ImageClassifier."""
    if _keras_hub.is_task(model):
        return _image_classifier(model, settings)
    backbone = _backbone(model, settings, settings.name or model.name)
    return backbone, backbone.groupnl_report


def _backbone(model, settings, name):
    return RetrofitBackbone(model, name=name, **settings_config(settings))


def _image_classifier(task, settings):
    _check_task(task)
    backbone = _backbone(task.backbone, settings, task.backbone.name)
    config = task.get_config()
    config["backbone"] = backbone
    config["preprocessor"] = _copy(task.preprocessor)
    config["name"] = settings.name or task.name
    converted = RetrofitImageClassifier.from_config(config)
    for layer in task.layers:
        if layer is not task.backbone and layer.weights:
            converted.get_layer(layer.name).set_weights(layer.get_weights())
    if task.compiled:
        # What `Model.compile_from_config` does; a Task overrides
        # `compile`, so Keras' own method declines to.
        compile_config = task.get_compile_config()
        converted.compile(
            **keras.saving.deserialize_keras_object(compile_config)
        )
    return converted, backbone.groupnl_report


def _check_task(task):
    cls = type(task)
    if not isinstance(task, ImageClassifier):
        raise ValueError(
            "to_groupnl converts keras-hub backbones and ImageClassifier "
            f"tasks; a {cls.__name__} is another kind of task, which it "
            "cannot rebuild. Convert its backbone instead "
            f"(to_groupnl(task.backbone)) and build the {cls.__name__} "
            "around it. Received: model of class " + cls.__name__
        )
    own = sorted(
        name
        for klass in cls.__mro__[: cls.__mro__.index(ImageClassifier)]
        for name, value in vars(klass).items()
        if name not in _TASK_TIES
        and (callable(value) or isinstance(value, (property, classmethod)))
    )
    if own:
        raise ValueError(
            f"{cls.__name__} defines {', '.join(own)} beyond "
            "keras_hub.models.ImageClassifier; to_groupnl rebuilds an image "
            "classifier as a RetrofitImageClassifier (an ImageClassifier), "
            "which would lose that. Convert its backbone instead "
            "(to_groupnl(task.backbone)) and build the task around it. "
            f"Received: model of class {cls.__name__}"
        )


def _copy(preprocessor):
    """A new preprocessor from `preprocessor`'s config; `None` stays."""
    if preprocessor is None:
        return None
    return keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(preprocessor)
    )
