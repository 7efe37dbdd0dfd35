"""GroupNL convolution layers."""

from keras_groupnl.layers.group_nl_conv2d import GroupNLConv2D
from keras_groupnl.layers.sparse_group_nl_conv2d import SparseGroupNLConv2D

__all__ = ["GroupNLConv2D", "SparseGroupNLConv2D"]
