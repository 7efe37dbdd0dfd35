"""Converters: Keras GroupNL models to verified int8 TFLite for phones and MCUs.

`convert(model, target, representative_data, output_dir)` makes an int8
LiteRT model whose GroupNL layers XNNPACK runs whole (`target="phone"`) or a
compact full-integer TensorFlow Lite Micro model with its C array
(`target="mcu"`), runs it against the Keras model and writes a JSON report
beside it. Phone files carry TFLite model metadata (image input, its
normalisation, class names) for Android's clients, MediaPipe Tasks and
LiteRT. See `convert` for details. `layer_costs(model, target)` says,
layer by layer, whether each GroupNL layer costs less than the convolution
it replaced on that target.
"""

from keras_groupnl.converters._convert import TARGETS
from keras_groupnl.converters._convert import ConversionResult
from keras_groupnl.converters._convert import convert
from keras_groupnl.converters._convert import format_report
from keras_groupnl.converters._errors import ConversionError
from keras_groupnl.converters._layer_costs import LayerCost
from keras_groupnl.converters._layer_costs import LayerCosts
from keras_groupnl.converters._layer_costs import layer_costs
from keras_groupnl.converters._partitioned import mcu_predict
from keras_groupnl.converters._report import ConversionReport

__all__ = [
    "TARGETS",
    "ConversionError",
    "ConversionReport",
    "ConversionResult",
    "LayerCost",
    "LayerCosts",
    "convert",
    "format_report",
    "layer_costs",
    "mcu_predict",
]
