"""Robustness evaluation: ImageNet-C style corruptions and accuracy on them."""

from keras_groupnl.robustness.corruptions import CORRUPTIONS
from keras_groupnl.robustness.corruptions import SEVERITIES
from keras_groupnl.robustness.corruptions import SEVERITY_PARAMS
from keras_groupnl.robustness.corruptions import corrupt
from keras_groupnl.robustness.corruptions import corrupt_dataset
from keras_groupnl.robustness.corruptions import corruption_names
from keras_groupnl.robustness.corruptions import jpeg_like
from keras_groupnl.robustness.evaluation import corruption_accuracy

__all__ = [
    "CORRUPTIONS",
    "SEVERITIES",
    "SEVERITY_PARAMS",
    "corrupt",
    "corrupt_dataset",
    "corruption_accuracy",
    "corruption_names",
    "jpeg_like",
]
