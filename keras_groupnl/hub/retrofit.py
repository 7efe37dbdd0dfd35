"""`RetrofitBackbone`: a keras-hub backbone made GroupNL by `to_groupnl`.

Its config is the source backbone's config (serialized, with its class)
plus the `to_groupnl` settings; building it from that config builds the
source backbone and converts it again, so a preset rebuilds the same
graph and the same sinusoids (they come from `seed`) before its weights
load. The converter, preprocessor and classifier classes tie keras-hub's
image classifier pieces to it, as every keras-hub model does.
"""

import keras
from keras_hub.layers import ImageConverter
from keras_hub.models import Backbone
from keras_hub.models import ImageClassifier
from keras_hub.models import ImageClassifierPreprocessor

from keras_groupnl.hub import _seed
from keras_groupnl.retrofit import _arguments
from keras_groupnl.retrofit import _to_groupnl


@keras.saving.register_keras_serializable(package="keras_groupnl")
class RetrofitBackbone(Backbone):
    """A keras-hub `Backbone` whose convs `to_groupnl` made GroupNL.

    `keras_groupnl.to_groupnl(backbone, ...)` returns one for a keras-hub
    backbone; it can also be built directly. The source backbone is
    converted by `to_groupnl`'s rules (see its docstring for what is
    replaced and the warm start); the result has the source's layers and
    names, with GroupNL layers in place of the replaced convs.

    The config is `{"source": <the source backbone, serialized>,
    "reduction_ratio": ..., ...}`: the source's config and the settings.
    Loading rebuilds the source from it (random weights), converts it with
    the same settings and seed, then loads the saved weights; a preset
    therefore needs keras-hub and keras_groupnl.hub imported, as any
    preset needs its classes. `seed=None` is replaced by a seed drawn at
    construction, kept in the config.

    Not kept: `include` / `exclude` given as callables (a config holds
    names; a `ValueError` says so), and the source's extra attributes such
    as the `pyramid_outputs` of a `FeaturePyramidBackbone`: the result is a
    plain `Backbone` for image classifiers. `image_shape` and `data_format`
    are copied from the source when it has them.

    Args:
        source: a keras-hub `Backbone` (or any Functional or Sequential
            model that serializes), or its serialized config
            (`keras.saving.serialize_keras_object`).
        reduction_ratio, num_groups, conv_type, depthwise, strided, stem,
            min_filters, init, seed: as in `keras_groupnl.to_groupnl`.
        include, exclude: `None` or layer names, as in `to_groupnl`.
        dtype: `None` or a dtype policy: the source is rebuilt with it.
        **kwargs: `name`, `trainable`, passed to `Backbone`.

    Attributes:
        groupnl_report: the `GroupNLReport` of the conversion (recomputed
            when a preset loads).
    """

    def __init__(
        self,
        source,
        reduction_ratio=2,
        num_groups=4,
        conv_type="dense",
        depthwise=True,
        strided=True,
        stem=False,
        min_filters=None,
        include=None,
        exclude=None,
        init="from_conv",
        seed=None,
        dtype=None,
        **kwargs,
    ):
        for argument, value in (("include", include), ("exclude", exclude)):
            if callable(value):
                raise ValueError(
                    f"`{argument}` must be None or layer names for a "
                    "keras-hub backbone: the converted backbone keeps it in "
                    "its config so that presets rebuild it, and a callable "
                    f"cannot be saved there. Received: {argument}={value!r}"
                )
        settings = _arguments.settings(
            reduction_ratio,
            num_groups,
            conv_type,
            depthwise,
            strided,
            stem,
            min_filters,
            include,
            exclude,
            init,
            _seed.concrete(seed),
            None,
            False,
            True,
        )
        source = _source_model(source, dtype)
        copy, report = _to_groupnl.convert(source, settings)
        super().__init__(
            inputs=copy.input, outputs=copy.output, dtype=dtype, **kwargs
        )
        self.groupnl_report = report
        self.image_shape = getattr(source, "image_shape", None)
        self.data_format = getattr(source, "data_format", None)
        self._groupnl_config = {
            "source": _serialize(source),
            **settings_config(settings),
        }

    def get_config(self):
        config = super().get_config()
        config.update(self._groupnl_config)
        return config


def _source_model(source, dtype):
    """The source model, built from its serialized config if need be."""
    if isinstance(source, keras.Model):
        return source
    if not isinstance(source, dict) or "class_name" not in source:
        raise ValueError(
            "`source` must be a keras-hub Backbone (a keras.Model) or its "
            "serialized config, a dict with 'class_name' and 'config' from "
            "keras.saving.serialize_keras_object. "
            f"Received: source={source!r}"
        )
    if dtype is not None:
        source = dict(source, config=dict(source["config"], dtype=dtype))
    return keras.saving.deserialize_keras_object(source)


def _serialize(model):
    """`model`'s config with its class, without build or compile state."""
    config = keras.saving.serialize_keras_object(model)
    for key in ("build_config", "compile_config"):
        config.pop(key, None)
    return config


def settings_config(settings):
    """The `RetrofitBackbone` arguments for checked `to_groupnl` settings.

    Layer names become a sorted list; a callable `include` / `exclude`
    stays a callable, for `RetrofitBackbone` to refuse.
    """

    def names(selection):
        if selection is None or callable(selection):
            return selection
        return sorted(selection)

    return {
        "reduction_ratio": settings.reduction_ratio,
        "num_groups": settings.num_groups,
        "conv_type": settings.conv_type,
        "depthwise": settings.depthwise,
        "strided": settings.strided,
        "stem": settings.stem,
        "min_filters": settings.min_filters,
        "include": names(settings.include),
        "exclude": names(settings.exclude),
        "init": settings.init,
        "seed": settings.seed,
    }


@keras.saving.register_keras_serializable(package="keras_groupnl")
class RetrofitImageConverter(ImageConverter):
    """keras-hub `ImageConverter` for `RetrofitBackbone`.

    `to_groupnl` keeps a task's own converter (its class and config); this
    class is what keras-hub's loaders build when a preset has none.
    """

    backbone_cls = RetrofitBackbone


@keras.saving.register_keras_serializable(package="keras_groupnl")
class RetrofitImageClassifierPreprocessor(ImageClassifierPreprocessor):
    """keras-hub classifier preprocessor for `RetrofitBackbone`."""

    backbone_cls = RetrofitBackbone
    image_converter_cls = RetrofitImageConverter


@keras.saving.register_keras_serializable(package="keras_groupnl")
class RetrofitImageClassifier(ImageClassifier):
    """keras-hub `ImageClassifier` around a `RetrofitBackbone`.

    `keras_groupnl.to_groupnl(image_classifier)` returns one: keras-hub
    finds the task class of a preset by its backbone class, so the task
    of a converted backbone must be a class whose `backbone_cls` is
    `RetrofitBackbone`. Arguments as `keras_hub.models.ImageClassifier`.
    """

    backbone_cls = RetrofitBackbone
    preprocessor_cls = RetrofitImageClassifierPreprocessor
