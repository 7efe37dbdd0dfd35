"""Datasets used by the examples and benchmarks."""

from keras_groupnl.datasets.fashion_mnist import CLASS_NAMES
from keras_groupnl.datasets.fashion_mnist import load_fashion_mnist
from keras_groupnl.datasets.fashion_mnist import read_idx

__all__ = ["CLASS_NAMES", "load_fashion_mnist", "read_idx"]
