"""GroupNL application models mirroring `keras.applications`.

Every model function takes the `keras.applications` arguments
(`include_top`, `weights`, `input_tensor`, `input_shape`, `pooling`,
`classes`, `classifier_activation`, `name`) plus the GroupNL settings
`conv_type` (`"dense"`, `"sparse"` or `"plain"`: `"plain"` builds the
standard-conv counterpart with the same builder), `reduction_ratio`,
`num_groups`, `seed` and `groupnl_strided`, and `synchronized_batchnorm`
for `tf.distribute` training. Each family module has its
`preprocess_input`.

- `resnet`: `GroupNLResNet8` (MLPerf Tiny topology), `GroupNLResNet18`,
  `GroupNLResNet34`, `GroupNLResNet50`, `GroupNLResNet101`,
  `GroupNLResNet152`.
- `mobilenet_v3`: `GroupNLMobileNetV3Small`, `GroupNLMobileNetV3Large`.
- `efficientnet_edgetpu`: `GroupNLEfficientNetES`.
"""

from keras_groupnl.applications import efficientnet_edgetpu
from keras_groupnl.applications import mobilenet_v3
from keras_groupnl.applications import resnet
from keras_groupnl.applications._conv_choice import CONV_TYPES
from keras_groupnl.applications.efficientnet_edgetpu import (
    GroupNLEfficientNetES,
)
from keras_groupnl.applications.mobilenet_v3 import GroupNLMobileNetV3Large
from keras_groupnl.applications.mobilenet_v3 import GroupNLMobileNetV3Small
from keras_groupnl.applications.resnet import GroupNLResNet8
from keras_groupnl.applications.resnet import GroupNLResNet18
from keras_groupnl.applications.resnet import GroupNLResNet34
from keras_groupnl.applications.resnet import GroupNLResNet50
from keras_groupnl.applications.resnet import GroupNLResNet101
from keras_groupnl.applications.resnet import GroupNLResNet152

__all__ = [
    "CONV_TYPES",
    "GroupNLEfficientNetES",
    "GroupNLMobileNetV3Large",
    "GroupNLMobileNetV3Small",
    "GroupNLResNet8",
    "GroupNLResNet18",
    "GroupNLResNet34",
    "GroupNLResNet50",
    "GroupNLResNet101",
    "GroupNLResNet152",
    "efficientnet_edgetpu",
    "mobilenet_v3",
    "resnet",
]
