"""Robustness evaluation helpers: ImageNet-C style image corruptions."""

from keras_groupnl.robustness.corruptions import CORRUPTIONS
from keras_groupnl.robustness.corruptions import SEVERITIES
from keras_groupnl.robustness.corruptions import SEVERITY_PARAMS
from keras_groupnl.robustness.corruptions import corrupt
from keras_groupnl.robustness.corruptions import corrupt_dataset
from keras_groupnl.robustness.corruptions import corruption_names
from keras_groupnl.robustness.corruptions import jpeg_like

__all__ = [
    "CORRUPTIONS",
    "SEVERITIES",
    "SEVERITY_PARAMS",
    "corrupt",
    "corrupt_dataset",
    "corruption_names",
    "jpeg_like",
]
