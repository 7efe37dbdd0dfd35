"""GroupNL EfficientNet-ES in keras-hub: backbone, converter, preprocessor,
classifier.

The backbone is `keras_groupnl.applications.GroupNLEfficientNetES` without
its head and without its rescaling layer: the image converter rescales.
"""

import keras
from keras_hub.models import ImageClassifier
from keras_hub.models import ImageClassifierPreprocessor

from keras_groupnl.applications import efficientnet_edgetpu
from keras_groupnl.hub.application_backbone import ApplicationBackbone
from keras_groupnl.hub.image_converter import FamilyImageConverter


@keras.saving.register_keras_serializable(package="keras_groupnl")
class GroupNLEfficientNetESBackbone(ApplicationBackbone):
    """A GroupNL EfficientNet-EdgeTPU-S as a keras-hub `Backbone`.

    `keras_groupnl.applications.GroupNLEfficientNetES` without its head and
    its rescaling layer (use `GroupNLEfficientNetESImageConverter`, which
    computes `(x - 127) / 128`); the output is the feature map after the
    top 1x1 conv. The depthwise conv of every inverted-residual block is a
    `SparseGroupNLConv2D` (`conv_type="sparse"`) or stays standard
    (`"plain"`).

    Args:
        image_shape: input shape without the batch axis. Defaults to
            `(None, None, 3)`.
        drop_connect_rate: float in [0, 1), stochastic depth of the residual
            blocks. Defaults to `0.2`.
        stem: `"auto"`, `"imagenet"` or `"small"`. Defaults to `"auto"`.
        conv_type: `"sparse"` or `"plain"`. Defaults to `"sparse"`.
        dtype: `None` or a dtype policy (name) for every layer.
        **kwargs: the GroupNL settings, as in `GroupNLResNetBackbone`;
            `name`, `trainable`.
    """

    def __init__(
        self,
        image_shape=(None, None, 3),
        drop_connect_rate=0.2,
        stem="auto",
        conv_type="sparse",
        dtype=None,
        **kwargs,
    ):
        arguments = dict(
            drop_connect_rate=drop_connect_rate,
            stem=stem,
            conv_type=conv_type,
        )
        super().__init__(
            efficientnet_edgetpu.GroupNLEfficientNetES,
            arguments,
            {},
            image_shape=image_shape,
            dtype=dtype,
            fixed={"include_preprocessing": False},
            **kwargs,
        )


@keras.saving.register_keras_serializable(package="keras_groupnl")
class GroupNLEfficientNetESImageConverter(FamilyImageConverter):
    """keras-hub `ImageConverter` for `GroupNLEfficientNetESBackbone`.

    Defaults to `(x - 127) / 128`, the EdgeTPU reference's normalisation
    that the application does inside; other arguments as
    `keras_hub.layers.ImageConverter`.
    """

    backbone_cls = GroupNLEfficientNetESBackbone

    default_scale = 1 / 128
    default_offset = -127 / 128


@keras.saving.register_keras_serializable(package="keras_groupnl")
class GroupNLEfficientNetESImageClassifierPreprocessor(
    ImageClassifierPreprocessor
):
    """keras-hub classifier preprocessor for `GroupNLEfficientNetESBackbone`."""

    backbone_cls = GroupNLEfficientNetESBackbone
    image_converter_cls = GroupNLEfficientNetESImageConverter


@keras.saving.register_keras_serializable(package="keras_groupnl")
class GroupNLEfficientNetESImageClassifier(ImageClassifier):
    """keras-hub `ImageClassifier` for `GroupNLEfficientNetESBackbone`."""

    backbone_cls = GroupNLEfficientNetESBackbone
    preprocessor_cls = GroupNLEfficientNetESImageClassifierPreprocessor
