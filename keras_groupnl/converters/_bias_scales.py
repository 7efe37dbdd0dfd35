"""Bias scales consistent with the scales the kernels use.

TFLite kernels take the int32 bias of a conv or dense op to be on the scale
`input_scale * weight_scale`, without checking. The converter quantizes a
bias with the input scale it calibrated, and can then change that input
scale to meet a fixed-scale constraint (the lookup graph fixes the GroupNL
output to 1/128): the bias is then silently off by the ratio of the two
scales, about 2 % (measured with TF 2.21). `fix_bias_scales` puts every
such bias back on the scale the kernel uses, from the real value the
converter meant.
"""

import numpy as np

from keras_groupnl.converters import _flatbuffer as fb


def _round(x):
    """Round half away from zero, as TFLite does."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


_BIAS_OPS = {
    "CONV_2D": (0, 1, 2),
    "DEPTHWISE_CONV_2D": (0, 1, 2),
    "FULLY_CONNECTED": (0, 1, 2),
    "TRANSPOSE_CONV": (2, 1, 3),
}


def fix_bias_scales(model):
    """Requantizes int32 biases whose scale is not input x weight scale.

    Changes `model` (a `ModelT`) in place; returns the names of the ops
    whose bias was rescaled.
    """
    fixed = []
    subgraph = model.subgraphs[0]
    for op in subgraph.operators or []:
        name = fb.op_name(model, op)
        if name not in _BIAS_OPS:
            continue
        i_in, i_w, i_b = _BIAS_OPS[name]
        if len(op.inputs) <= i_b or op.inputs[i_b] < 0:
            continue
        inp = subgraph.tensors[int(op.inputs[i_in])]
        weights = subgraph.tensors[int(op.inputs[i_w])]
        bias = subgraph.tensors[int(op.inputs[i_b])]
        q_in = fb.quantization(inp)
        q_w = fb.quantization(weights)
        q_b = fb.quantization(bias)
        if (
            bias.type != fb.schema.TensorType.INT32
            or None in (q_in, q_w, q_b)
            or len(q_in[0]) != 1
        ):
            continue
        values = fb.tensor_value(model, bias)
        if values is None:
            continue
        stored = np.asarray(q_b[0], np.float64)
        expected = q_in[0][0] * np.asarray(q_w[0], np.float64)
        if stored.shape != expected.shape and stored.size != 1:
            continue
        if np.allclose(stored, expected, rtol=1e-5, atol=0):
            continue
        real = values.astype(np.float64) * stored
        requantized = _round(real / expected)
        requantized = np.clip(requantized, -(2**31), 2**31 - 1).astype(np.int32)
        bias.buffer = fb.add_buffer(model, requantized)
        q = fb.schema.QuantizationParametersT()
        q.scale = expected.astype(np.float32)
        q.zeroPoint = np.zeros(len(expected), dtype=np.int64)
        q.quantizedDimension = 0
        bias.quantization = q
        fixed.append(fb.tensor_name(subgraph.tensors[int(op.outputs[0])]))
    return fixed
