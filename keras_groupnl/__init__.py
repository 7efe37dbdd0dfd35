"""keras-groupnl: GroupNL convolutions, models and converters for Keras 3."""

from keras_groupnl import analysis
from keras_groupnl import applications
from keras_groupnl import converters
from keras_groupnl import datasets
from keras_groupnl import layers
from keras_groupnl import robustness

__version__ = "0.1.0"

__all__ = [
    "analysis",
    "applications",
    "converters",
    "datasets",
    "layers",
    "robustness",
    "__version__",
]
