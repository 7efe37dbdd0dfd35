"""GroupNL for an existing Keras model: `to_groupnl(model)`.

`to_groupnl` returns a copy of a Functional or Sequential model whose
eligible convolutions are GroupNL layers, warm-started from their weights,
every other layer and weight kept; with `return_report=True` it also
returns a `GroupNLReport` of what it replaced. It is also
`keras_groupnl.to_groupnl`.
"""

from keras_groupnl.retrofit._report import GroupNLReport
from keras_groupnl.retrofit._report import KeptConv
from keras_groupnl.retrofit._report import ReplacedLayer
from keras_groupnl.retrofit._to_groupnl import to_groupnl

__all__ = ["GroupNLReport", "KeptConv", "ReplacedLayer", "to_groupnl"]
