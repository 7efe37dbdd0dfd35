"""keras-groupnl: GroupNL convolutions, models and converters for Keras 3."""

from keras_groupnl import layers

__version__ = "0.1.0"

__all__ = ["layers", "__version__"]
