"""GroupNL ResNets in keras-hub: backbone, converter, preprocessor, classifier.

The backbone is `keras_groupnl.applications.GroupNLResNet{depth}` without
its head; the other three classes are keras-hub's image classifier pieces
tied to it, as `keras_hub.models.ResNet*` are tied to `ResNetBackbone`.
"""

import keras
import numpy as np
from keras_hub.models import ImageClassifier
from keras_hub.models import ImageClassifierPreprocessor

from keras_groupnl.applications import resnet
from keras_groupnl.hub.application_backbone import ApplicationBackbone
from keras_groupnl.hub.image_converter import FamilyImageConverter

_APPLICATIONS = {
    8: resnet.GroupNLResNet8,
    18: resnet.GroupNLResNet18,
    34: resnet.GroupNLResNet34,
    50: resnet.GroupNLResNet50,
    101: resnet.GroupNLResNet101,
    152: resnet.GroupNLResNet152,
}


@keras.saving.register_keras_serializable(package="keras_groupnl")
class GroupNLResNetBackbone(ApplicationBackbone):
    """A GroupNL ResNet as a keras-hub `Backbone`.

    `keras_groupnl.applications.GroupNLResNet{depth}` without its head:
    the output is the last feature map. Both 3x3 convs of every basic block
    (depth 8, 18, 34) or the 3x3 conv of every bottleneck (50, 101, 152)
    are GroupNL convs; the stem, 1x1 convs and shortcuts stay standard.
    See the application functions for the architecture and the settings.

    Args:
        depth: int, 8 (MLPerf Tiny ResNet-8), 18, 34, 50, 101 or 152.
            Defaults to `18`.
        image_shape: input shape without the batch axis; any side may be
            `None`. Defaults to `(None, None, 3)`.
        stem: `None` (`"auto"`), `"auto"`, `"imagenet"` or `"small"`; must
            be `None` for depth 8. Defaults to `None`.
        conv_type: `"dense"`, `"sparse"` or `"plain"` (the standard-conv
            twin). Defaults to `"dense"`.
        dtype: `None` or a dtype policy (name) for every layer.
        **kwargs: the GroupNL settings, as for the application functions:
            `reduction_ratio` (2), `num_groups` (4), `seed` (`None`: a
            seed is drawn now and kept in the config; GroupNL layer `k`
            draws its sinusoids from `seed + k`), `groupnl_strided`
            (`True`), `period_range` ((1.0, 2.0)), `shift_range`
            ((1.0, 5.0)), `trainable_nlf` (`False`),
            `synchronized_batchnorm` (`False`, TensorFlow only); and
            `name`, `trainable`.

    Example:

    >>> backbone = GroupNLResNetBackbone(depth=18, image_shape=(32, 32, 3))
    >>> classifier = GroupNLResNetImageClassifier(backbone, num_classes=10)
    """

    def __init__(
        self,
        depth=18,
        image_shape=(None, None, 3),
        stem=None,
        conv_type="dense",
        dtype=None,
        **kwargs,
    ):
        if isinstance(depth, bool) or depth not in _APPLICATIONS:
            raise ValueError(
                f"`depth` must be one of {sorted(_APPLICATIONS)}. "
                f"Received: depth={depth!r}"
            )
        arguments = {"conv_type": conv_type}
        if depth != 8 or stem is not None:
            arguments["stem"] = stem
        super().__init__(
            _APPLICATIONS[depth],
            arguments,
            {"depth": depth},
            image_shape=image_shape,
            dtype=dtype,
            **kwargs,
        )


def _normalisation():
    """`(scale, offset)` of `applications.resnet.preprocess_input`."""
    offset = resnet.preprocess_input(np.zeros((1, 1, 3)))[0, 0]
    # Over the whole [0, 255] range: float32 keeps the slope exact enough.
    top = resnet.preprocess_input(np.full((1, 1, 3), 255.0))[0, 0]
    scale = (top.astype("float64") - offset) / 255.0
    return tuple(float(s) for s in scale), tuple(float(o) for o in offset)


_SCALE, _OFFSET = _normalisation()


@keras.saving.register_keras_serializable(package="keras_groupnl")
class GroupNLResNetImageConverter(FamilyImageConverter):
    """keras-hub `ImageConverter` for `GroupNLResNetBackbone`.

    Defaults to the normalisation of
    `keras_groupnl.applications.resnet.preprocess_input` for RGB images in
    [0, 255] (ImageNet mean and standard deviation); pass `scale` and
    `offset` for other inputs (`None` for none). Other arguments as
    `keras_hub.layers.ImageConverter` (`image_size`, ...).
    """

    backbone_cls = GroupNLResNetBackbone

    default_scale = _SCALE
    default_offset = _OFFSET


@keras.saving.register_keras_serializable(package="keras_groupnl")
class GroupNLResNetImageClassifierPreprocessor(ImageClassifierPreprocessor):
    """keras-hub classifier preprocessor for `GroupNLResNetBackbone`."""

    backbone_cls = GroupNLResNetBackbone
    image_converter_cls = GroupNLResNetImageConverter


@keras.saving.register_keras_serializable(package="keras_groupnl")
class GroupNLResNetImageClassifier(ImageClassifier):
    """keras-hub `ImageClassifier` for `GroupNLResNetBackbone`.

    Arguments as `keras_hub.models.ImageClassifier` (`backbone`,
    `num_classes`, `preprocessor`, `pooling`, `activation`, `dropout`).
    Its presets load with `keras_hub.models.ImageClassifier.from_preset`.
    """

    backbone_cls = GroupNLResNetBackbone
    preprocessor_cls = GroupNLResNetImageClassifierPreprocessor
