"""The "phone" target: an int8 model that LiteRT's XNNPACK runs whole.

Every GroupNL layer becomes an int8 seed conv followed by a float tail made
only of ops XNNPACK delegates, so a GroupNL model stays in one XNNPACK
partition (measured facts: `docs/converters.md`):

    int8 seed conv -> DEQUANTIZE -> MUL(y, y) -> SUM -> MAXIMUM -> RSQRT
    -> MUL (= u) -> NLF argument -> SIN -> CONCATENATION [u, generated]
    -> [folded BatchNorm as a 1x1 depthwise conv, fused ReLU / ReLU6]
    -> QUANTIZE

On large outputs (`INT8_CONCAT_MIN_VALUES`) the folded BatchNorm and the
QUANTIZE are applied to `u` and to the generated maps separately and the
CONCATENATION is int8: fewer bytes through float passes, two more ops.

The NLF argument `T * (u - phi)` is a 1x1 depthwise conv with bias when
every seed map has at most one generated copy (r <= 2), and a 5-D broadcast
of `u` against the `(copies, seeds)` tables otherwise (r >= 3), the faster
form in each case. The L2 norm is written as MUL / SUM / MAXIMUM / RSQRT /
MUL, which the converter does not fuse into L2_NORMALIZATION (XNNPACK has no
kernel for it). The quantizer keeps these ops in float because their tensors
are named (`FLOAT_SCOPE`) and denylisted.

Two more things keep whole models in XNNPACK: hard-swish activations
(MobileNetV3) are written as an ADD with a fused ReLU6 and a MUL, which
XNNPACK takes in int8 (its fused HARD_SWISH it does not); and with float
output a softmax head stays float (XNNPACK has no int8 SOFTMAX).

`integer_only=True` gives the full-integer graph of the microcontroller
target instead, with the table index made by CAST + ADD, which LiteRT runs
(it refuses the int8 -> int32 QUANTIZE that TFLite Micro takes): for
accelerators that run only int8 ops.
"""

import keras
import numpy as np

from keras_groupnl.converters import _deploy
from keras_groupnl.converters import _flatbuffer as fb
from keras_groupnl.converters import _lookup
from keras_groupnl.converters import _names
from keras_groupnl.converters import _tflite
from keras_groupnl.converters._job import Converted
from keras_groupnl.layers.deploy_form import NORM_EPSILON

FLOAT_SCOPE = "groupnl_float"

# From this many output values per image on, a layer's tail is folded and
# quantized per part and concatenated in int8; below it, concatenated in
# float and folded once. Measured (benchmarks/deploy_benchmark.py): the
# per-part form took GroupNL ResNet-18 at 64x64 (layers of 32K values and
# more) from 0.73x to 0.68-0.69x of plain, and ResNet-8 at 32x32 (layers of
# 16K values and fewer, where the two extra ops cost more than the bytes
# they save) from 1.89x to 2.13x.
INT8_CONCAT_MIN_VALUES = 32 * 1024


class FloatTailGroupNL(_deploy.DeployedGroupNL):
    """A GroupNL layer as an int8 seed conv and a delegated float tail."""

    # XNNPACK: a 1x1 summation grouped in blocks of at most 32 depthwise
    # channels adds few MACs and keeps an efficient matmul.
    summation_block_width = 32

    # Set by `call`: whether this layer's tail ends in an int8 concatenation.
    int8_concat = False

    @property
    def variant(self):
        if not self.form.generated_channels:
            return "float L2 norm"
        concat = ", int8 concatenation" if self.int8_concat else ""
        if self.form.num_copies == 1:
            return "float tail, depthwise affine" + concat
        return "float tail, broadcast" + concat

    def call(self, x):
        """The float tail; on large outputs folded per part, concatenated
        in int8.

        There each part (`u`, the generated maps) gets its share of the
        fold and is quantized on its own, so the CONCATENATION is int8 (a
        quarter of the bytes of a float one) and no float pass spans all
        output channels (see `INT8_CONCAT_MIN_VALUES`).
        """
        import tensorflow as tf

        y = self.seed_conv(x)
        values = y.shape[1] * y.shape[2] * self.form.filters
        self.int8_concat = (
            self.fold is not None
            and bool(self.form.generated_channels)
            and values >= INT8_CONCAT_MIN_VALUES
        )
        if not self.int8_concat:
            out = self.generate(y)
            return out if self.fold is None else self.apply_fold(out)
        parts = self._parts(y)
        return tf.concat(self._fold_parts(parts), axis=-1)

    def generate(self, y):
        import tensorflow as tf

        parts = self._parts(y)
        with tf.name_scope(FLOAT_SCOPE):
            return parts[0] if len(parts) == 1 else tf.concat(parts, axis=-1)

    def _parts(self, y):
        """`[u]` or `[u, sin(T * (u[source] - phi))]`, in float."""
        import tensorflow as tf

        with tf.name_scope(FLOAT_SCOPE):
            square_sum = tf.reduce_sum(y * y, axis=-1, keepdims=True)
            u = y * tf.math.rsqrt(tf.maximum(square_sum, NORM_EPSILON**2))
            if not self.form.generated_channels:
                return [u]
            return [u, tf.sin(self._argument(u))]

    def apply_fold(self, out, start=0):
        """`activation(scale * out + shift)` with the fold's scale and
        shift for output channels `start ..`."""
        import tensorflow as tf

        stop = start + out.shape[-1]
        with tf.name_scope(FLOAT_SCOPE):
            out = _depthwise_affine(
                out, self.fold.scale[start:stop], self.fold.shift[start:stop]
            )
            return _activation(out, self.fold.activation)

    def _fold_parts(self, parts):
        """The fold applied to each part with its channels' scale/shift."""
        return [
            self.apply_fold(parts[0]),
            self.apply_fold(parts[1], start=parts[0].shape[-1]),
        ]

    def _argument(self, u):
        """`T * (u[source] - phi)` for every generated channel."""
        import tensorflow as tf

        form = self.form
        if form.num_copies == 1:
            # Generated channel j comes from seed channel j.
            seeds = u
            if form.generated_channels < form.seed_channels:
                seeds = u[..., : form.generated_channels]
            return _depthwise_affine(
                seeds, form.period, -form.period * form.shift
            )
        periods, shifts = self._full_tables()
        axis = -1 if form.shuffle else -2
        argument = (tf.expand_dims(u, axis) - shifts) * periods
        rows, cols = u.shape[1], u.shape[2]
        full = form.num_copies * form.seed_channels
        argument = tf.reshape(argument, (-1, rows, cols, full))
        if form.generated_channels < full:
            argument = argument[..., : form.generated_channels]
        return argument

    def _full_tables(self):
        """`(T, phi)` for every (copy, seed) pair, in broadcast layout.

        `(copies, seeds)` stacks copies (channel `k * s + c`); with shuffle
        the layout is `(seeds, copies)` (channel `c * copies + k`).
        """
        form = self.form
        groups = form.group_of_channel
        periods = form.periods[:, groups]
        shifts = form.shifts[:, groups]
        if form.shuffle:
            periods, shifts = periods.T, shifts.T
        return (
            np.ascontiguousarray(periods, np.float32),
            np.ascontiguousarray(shifts, np.float32),
        )


def _depthwise_affine(x, scale, shift):
    """`x * scale + shift` per channel, as a float 1x1 depthwise conv."""
    import tensorflow as tf

    kernel = np.asarray(scale, np.float32).reshape(1, 1, -1, 1)
    y = tf.nn.depthwise_conv2d(x, kernel, (1, 1, 1, 1), "VALID")
    return tf.nn.bias_add(y, np.asarray(shift, np.float32))


def _activation(x, kind):
    import tensorflow as tf

    if kind == "relu":
        return tf.nn.relu(x)
    if kind == "relu6":
        return tf.nn.relu6(x)
    if kind == "hard_swish":
        return hard_swish(x)
    return x


def hard_swish(x):
    """`x * relu6(x + 3) / 6` as ops XNNPACK delegates in int8.

    Written in this order, the converter makes an ADD with a fused ReLU6
    and a MUL (the 1/6 goes into the MUL's requantization) rather than its
    fused HARD_SWISH, which XNNPACK does not take in int8.
    """
    import tensorflow as tf

    return (tf.nn.relu6(x + 3.0) * x) * (1.0 / 6.0)


class DelegatedHardSwish(keras.layers.Layer):
    """A hard-swish activation layer, exported as `hard_swish` above."""

    def call(self, x):
        return hard_swish(x)

    def compute_output_shape(self, input_shape):
        return input_shape


def replace_for_xnnpack(layer):
    """The export copy's stand-in for a layer XNNPACK would not delegate."""
    if (
        isinstance(layer, keras.layers.Activation)
        and _deploy.activation_kind(layer) == "hard_swish"
    ):
        return DelegatedHardSwish(name=layer.name)
    return None


def float_nodes(float_model_bytes, softmax):
    """Names of the float model's tensors to keep in float: those made
    inside the float tails and, with `softmax`, softmax outputs (XNNPACK
    runs SOFTMAX in float only)."""
    model = fb.read_model(float_model_bytes)
    subgraph = model.subgraphs[0]
    names = []
    for op in subgraph.operators or []:
        is_softmax = softmax and fb.op_name(model, op) == "SOFTMAX"
        for t in op.outputs:
            name = fb.tensor_name(subgraph.tensors[int(t)])
            if FLOAT_SCOPE in name or is_softmax:
                names.append(name)
    return names


def convert(model, job):
    """Converts `model` for a phone (see the module docstring).

    Returns a `Converted`, verified in LiteRT.
    """
    if job.integer_only:
        tfl, deployed, tables = _lookup.convert(model, job, index="cast_add")
        op_layers = _names.op_layers(tfl, job.layer_names)
        return Converted(
            fb.write_model(tfl), op_layers, deployed, tables, "litert"
        )
    copy, deployed = _deploy.export_copy(
        model, FloatTailGroupNL, job.fold, replace_for_xnnpack
    )
    exported = _tflite.Exported(
        copy, job.sample_shape, job.workdir, job.layer_names
    )
    # With float output, a softmax head stays float too: XNNPACK runs it.
    nodes = float_nodes(exported.float_model(), softmax=not job.int8_io)
    if nodes:
        model_bytes = exported.int8_model_with_float_nodes(
            job.calibration, nodes, job.int8_io, job.on_sample
        )
    else:
        model_bytes = exported.int8_model(
            job.calibration, job.int8_io, job.on_sample
        )
    op_layers = _names.op_layers(fb.read_model(model_bytes), job.layer_names)
    return Converted(model_bytes, op_layers, deployed, {}, "litert")
