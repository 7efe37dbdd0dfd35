"""The TFLite converter, run the way Keras' own LiteRT export runs it.

`Exported` writes the export copy of a model as a SavedModel with
`model.export(format="tf_saved_model")` and makes `tf.lite.TFLiteConverter`s
from it (`from_saved_model`), as `model.export(format="litert")` does
inside; every conversion of one call reads the same SavedModel, so tensor
names agree between them.
"""

import contextlib
import os
import re

import numpy as np

from keras_groupnl.converters import _native_logs
from keras_groupnl.converters import _private
from keras_groupnl.converters._errors import ConversionError


class Exported:
    """A model exported once, converted to TFLite in several ways.

    Args:
        model: the export copy (TensorFlow backend).
        sample_shape: the input shape without the batch axis; the TFLite
            model takes batches of one.
        workdir: an existing private directory for the SavedModel.
        layer_names: names of the model's layers, to name the layer at
            fault when the converter fails.
    """

    def __init__(self, model, sample_shape, workdir, layer_names):
        import tensorflow as tf

        self.path = os.path.join(workdir, "saved_model")
        self.layer_names = layer_names
        spec = tf.TensorSpec((1,) + tuple(sample_shape), tf.float32)
        with _native_logs.captured():
            model.export(
                self.path,
                format="tf_saved_model",
                input_signature=[spec],
                verbose=False,
            )

    def _converter(self):
        import tensorflow as tf

        return tf.lite.TFLiteConverter.from_saved_model(self.path)

    def float_model(self):
        """The float32 TFLite model (no quantization)."""
        return self._convert(self._converter())

    def int8_model(self, calibration, int8_io, on_sample=None):
        """Full-integer model; float-only ops stay as float islands."""
        import tensorflow as tf

        converter = self._converter()
        self._quantize(converter, calibration, on_sample)
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8
        ]
        io_type = tf.int8 if int8_io else tf.float32
        converter.inference_input_type = io_type
        converter.inference_output_type = io_type
        return self._convert(converter)

    def int8_model_with_float_nodes(
        self, calibration, float_nodes, int8_io, on_sample=None
    ):
        """int8 model in which the ops writing `float_nodes` stay float.

        `float_nodes` are tensor names of `float_model()`. The public
        `tf.lite.experimental.QuantizationDebugger` quantizes with them
        denylisted; it has float input and output, which
        `_private.integer_io` changes to int8 when asked.
        """
        import tensorflow as tf

        converter = self._converter()
        self._quantize(converter, calibration, on_sample)
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
            tf.lite.OpsSet.TFLITE_BUILTINS,
        ]
        options = tf.lite.experimental.QuantizationDebugOptions(
            denylisted_nodes=list(float_nodes)
        )
        with self._errors(), _native_logs.captured():
            debugger = tf.lite.experimental.QuantizationDebugger(
                converter=converter,
                debug_dataset=converter.representative_dataset,
                debug_options=options,
            )
            model = debugger.get_nondebug_quantized_model()
        return _private.integer_io(model) if int8_io else model

    @staticmethod
    def _quantize(converter, calibration, on_sample):
        import tensorflow as tf

        def representative_dataset():
            for sample in calibration:
                yield [np.asarray(sample, np.float32)[None]]
                if on_sample is not None:
                    on_sample(1)

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset

    def _convert(self, converter):
        with self._errors(), _native_logs.captured():
            return converter.convert()

    @contextlib.contextmanager
    def _errors(self):
        """Turns a converter failure into a ConversionError naming the op."""
        try:
            yield
        except (KeyboardInterrupt, ConversionError):
            raise
        except Exception as error:  # The converter raises several types.
            raise converter_error(error, self.layer_names) from None


def converter_error(error, layer_names):
    """A `ConversionError` naming the layer and op the converter rejected.

    The converter reports the TF op and its location, e.g.
    `loc(fused["Erf:", "functional_1/my_layer_1/Erf@__inference..."])`:
    the location carries the Keras name scope of the layer.
    """
    from keras_groupnl.converters import _names

    message = str(error)
    quoted = re.findall(r'"([^"]+)"', message)
    layer = _names.find_layer(layer_names, quoted)
    op_match = re.search(r"'(?:tfl|tf)\.(\w+)'", message) or re.search(
        r'"(\w+):"', message
    )
    op = op_match.group(1).upper() if op_match else None
    if layer and op:
        text = (
            f"layer '{layer}' uses the TensorFlow op {op}, which has no "
            "TFLite builtin kernel; replace the layer, or keep it out of "
            "the converted model"
        )
    else:
        text = next(
            (line.strip() for line in message.splitlines() if "error:" in line),
            message.strip().splitlines()[-1] if message.strip() else "",
        )[:300]
    return ConversionError(
        f"The TFLite converter could not make an int8 model: {text}",
        layer=layer,
        op=op,
    )
