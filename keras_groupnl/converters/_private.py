"""The private TensorFlow and LiteRT APIs the converters use, all here.

Each is used because no public API gives the same thing; each use says why.
Everything else in the converters is public API.
"""


def integer_io(model_bytes):
    """Gives a quantized TFLite model int8 input and output.

    The public `tf.lite.experimental.QuantizationDebugger`, which keeps
    chosen ops in float, has no `inference_input_type`: its models take and
    return float32. `tf.lite.TFLiteConverter` itself makes int8 I/O with
    this function (`inference_input_type=tf.int8`), which removes the input
    QUANTIZE and output DEQUANTIZE ops.
    """
    import tensorflow as tf
    from tensorflow.lite.python import util

    return util.modify_model_io_type(model_bytes, tf.int8, tf.int8)


def execution_plan(interpreter):
    """The nodes a LiteRT interpreter runs, after delegation.

    LiteRT's Python `Interpreter` has no public view of its execution plan;
    `_get_ops_details` lists the original nodes followed by one `DELEGATE`
    node per partition that a delegate (XNNPACK) took over. Returns a list of
    dicts with `op_name`, `inputs` and `outputs`.
    """
    return interpreter._get_ops_details()
