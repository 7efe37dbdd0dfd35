"""GroupNL models as keras-hub models (the `hub` extra).

`pip install "keras-groupnl[hub]"` installs keras-hub; importing this
subpackage imports it, and nothing else in keras-groupnl does.

Each family follows keras-hub's layout for a model: a backbone, an image
converter, a classifier preprocessor and an image classifier.

- `GroupNLResNetBackbone` (`depth` 8, 18, 34, 50, 101 or 152),
  `GroupNLMobileNetV3Backbone` (`size` "small" or "large") and
  `GroupNLEfficientNetESBackbone`: the `keras_groupnl.applications`
  models without their head, as keras-hub `Backbone`s whose config holds
  the GroupNL settings. Then `GroupNL<Family>ImageConverter`,
  `GroupNL<Family>ImageClassifierPreprocessor` and
  `GroupNL<Family>ImageClassifier`.
- `RetrofitBackbone`: what `keras_groupnl.to_groupnl` returns for a
  keras-hub backbone, a `Backbone` whose config is the source backbone's
  config plus the `to_groupnl` settings; `RetrofitImageClassifier`, what it
  returns for an `ImageClassifier`, and its converter and preprocessor.

Every class is registered with Keras (package `"keras_groupnl"`): import
`keras_groupnl.hub` before `from_preset` loads a preset that uses them.
"""

try:
    import keras_hub  # noqa: F401
except ImportError as error:
    raise ImportError(
        "keras_groupnl.hub needs keras-hub: pip install 'keras-groupnl[hub]' "
        f"({error})"
    ) from error

from keras_groupnl.hub.application_backbone import ApplicationBackbone
from keras_groupnl.hub.efficientnet_es import GroupNLEfficientNetESBackbone
from keras_groupnl.hub.efficientnet_es import (
    GroupNLEfficientNetESImageClassifier,
)
from keras_groupnl.hub.efficientnet_es import (
    GroupNLEfficientNetESImageClassifierPreprocessor,
)
from keras_groupnl.hub.efficientnet_es import (
    GroupNLEfficientNetESImageConverter,
)
from keras_groupnl.hub.image_converter import FamilyImageConverter
from keras_groupnl.hub.mobilenet_v3 import GroupNLMobileNetV3Backbone
from keras_groupnl.hub.mobilenet_v3 import GroupNLMobileNetV3ImageClassifier
from keras_groupnl.hub.mobilenet_v3 import (
    GroupNLMobileNetV3ImageClassifierPreprocessor,
)
from keras_groupnl.hub.mobilenet_v3 import GroupNLMobileNetV3ImageConverter
from keras_groupnl.hub.resnet import GroupNLResNetBackbone
from keras_groupnl.hub.resnet import GroupNLResNetImageClassifier
from keras_groupnl.hub.resnet import GroupNLResNetImageClassifierPreprocessor
from keras_groupnl.hub.resnet import GroupNLResNetImageConverter
from keras_groupnl.hub.retrofit import RetrofitBackbone
from keras_groupnl.hub.retrofit import RetrofitImageClassifier
from keras_groupnl.hub.retrofit import RetrofitImageClassifierPreprocessor
from keras_groupnl.hub.retrofit import RetrofitImageConverter

__all__ = [
    "ApplicationBackbone",
    "FamilyImageConverter",
    "GroupNLEfficientNetESBackbone",
    "GroupNLEfficientNetESImageClassifier",
    "GroupNLEfficientNetESImageClassifierPreprocessor",
    "GroupNLEfficientNetESImageConverter",
    "GroupNLMobileNetV3Backbone",
    "GroupNLMobileNetV3ImageClassifier",
    "GroupNLMobileNetV3ImageClassifierPreprocessor",
    "GroupNLMobileNetV3ImageConverter",
    "GroupNLResNetBackbone",
    "GroupNLResNetImageClassifier",
    "GroupNLResNetImageClassifierPreprocessor",
    "GroupNLResNetImageConverter",
    "RetrofitBackbone",
    "RetrofitImageClassifier",
    "RetrofitImageClassifierPreprocessor",
    "RetrofitImageConverter",
]
