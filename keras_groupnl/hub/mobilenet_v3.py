"""GroupNL MobileNetV3 in keras-hub: backbone, converter, preprocessor,
classifier.

The backbone is `keras_groupnl.applications.GroupNLMobileNetV3Small` or
`...Large` without its head and without its rescaling layer: the image
converter rescales, as in keras-hub's models.
"""

import keras
from keras_hub.models import ImageClassifier
from keras_hub.models import ImageClassifierPreprocessor

from keras_groupnl.applications import mobilenet_v3
from keras_groupnl.hub.application_backbone import ApplicationBackbone
from keras_groupnl.hub.image_converter import FamilyImageConverter

_APPLICATIONS = {
    "small": mobilenet_v3.GroupNLMobileNetV3Small,
    "large": mobilenet_v3.GroupNLMobileNetV3Large,
}


@keras.saving.register_keras_serializable(package="keras_groupnl")
class GroupNLMobileNetV3Backbone(ApplicationBackbone):
    """A GroupNL MobileNetV3 as a keras-hub `Backbone`.

    `keras_groupnl.applications.GroupNLMobileNetV3{Small,Large}` without
    its head and its rescaling layer (use `GroupNLMobileNetV3ImageConverter`,
    which maps [0, 255] to [-1, 1]); the output is the feature map after the
    last 1x1 conv. The depthwise conv of every inverted-residual block is a
    `SparseGroupNLConv2D` (`conv_type="sparse"`) or stays standard
    (`"plain"`).

    Args:
        size: `"small"` or `"large"`. Defaults to `"small"`.
        image_shape: input shape without the batch axis. Defaults to
            `(None, None, 3)`.
        alpha: float, width multiplier. Defaults to `1.0`.
        minimalistic: bool. Defaults to `False`.
        stem: `"auto"`, `"imagenet"` or `"small"`. Defaults to `"auto"`.
        conv_type: `"sparse"` or `"plain"`. Defaults to `"sparse"`.
        dtype: `None` or a dtype policy (name) for every layer.
        **kwargs: the GroupNL settings, as in `GroupNLResNetBackbone`;
            `name`, `trainable`.
    """

    def __init__(
        self,
        size="small",
        image_shape=(None, None, 3),
        alpha=1.0,
        minimalistic=False,
        stem="auto",
        conv_type="sparse",
        dtype=None,
        **kwargs,
    ):
        if not isinstance(size, str) or size not in _APPLICATIONS:
            raise ValueError(
                f"`size` must be one of {sorted(_APPLICATIONS)}. "
                f"Received: size={size!r}"
            )
        arguments = dict(
            alpha=alpha,
            minimalistic=minimalistic,
            stem=stem,
            conv_type=conv_type,
        )
        super().__init__(
            _APPLICATIONS[size],
            arguments,
            {"size": size},
            image_shape=image_shape,
            dtype=dtype,
            fixed={"include_preprocessing": False},
            **kwargs,
        )


@keras.saving.register_keras_serializable(package="keras_groupnl")
class GroupNLMobileNetV3ImageConverter(FamilyImageConverter):
    """keras-hub `ImageConverter` for `GroupNLMobileNetV3Backbone`.

    Defaults to `x / 127.5 - 1` (pixels in [0, 255] to [-1, 1]), the
    rescaling the application does inside; other arguments as
    `keras_hub.layers.ImageConverter`.
    """

    backbone_cls = GroupNLMobileNetV3Backbone

    default_scale = 1 / 127.5
    default_offset = -1.0


@keras.saving.register_keras_serializable(package="keras_groupnl")
class GroupNLMobileNetV3ImageClassifierPreprocessor(
    ImageClassifierPreprocessor
):
    """keras-hub classifier preprocessor for `GroupNLMobileNetV3Backbone`."""

    backbone_cls = GroupNLMobileNetV3Backbone
    image_converter_cls = GroupNLMobileNetV3ImageConverter


@keras.saving.register_keras_serializable(package="keras_groupnl")
class GroupNLMobileNetV3ImageClassifier(ImageClassifier):
    """keras-hub `ImageClassifier` for `GroupNLMobileNetV3Backbone`."""

    backbone_cls = GroupNLMobileNetV3Backbone
    preprocessor_cls = GroupNLMobileNetV3ImageClassifierPreprocessor
