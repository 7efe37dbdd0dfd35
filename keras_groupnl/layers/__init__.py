"""GroupNL convolution layers.

Importing this module registers the layers with Keras, which
`keras.saving.load_model` needs to read a saved model that contains them.
"""

from keras_groupnl.layers.base_group_nl_conv import BaseGroupNLConv
from keras_groupnl.layers.deploy_form import GroupNLDeployForm
from keras_groupnl.layers.group_nl_conv2d import GroupNLConv2D
from keras_groupnl.layers.sparse_group_nl_conv2d import SparseGroupNLConv2D

__all__ = [
    "BaseGroupNLConv",
    "GroupNLConv2D",
    "GroupNLDeployForm",
    "SparseGroupNLConv2D",
]
