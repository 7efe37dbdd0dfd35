"""The full-integer GroupNL graph: int8 lookup tables, one per NLF.

TFLite's SIN has only a float kernel, but the input of every NLF is an int8
tensor with 256 possible values, so each NLF is exactly (to int8 rounding)
a 256-entry table. The graph of one GroupNL layer:

    int8 seed conv -> L2_NORMALIZATION (int8, scale 1/128) = u
    -> SPLIT u into the seed channels of each NLF group
    -> per group: int8 -> int32 index (QUANTIZE with zero point +128 for
       TFLite Micro, CAST + ADD for LiteRT), then one GATHER per copy from
       that NLF's int8 table
    -> CONCATENATION [u, generated] (at most 10 inputs each, TFLite Micro's
       limit) -> [folded BatchNorm as a 1x1 int8 depthwise conv with fused
       ReLU / ReLU6]

Tables are shared by all the channels of an NLF (`copies x groups` tables of
256 bytes per layer), and an int32 index never spans more than one group, so
the int32 tensors stay small.

For conversion, each NLF is written as a bare `sin` of its input in a name
scope `groupnl_nlf_<copy>_<group>`, with its output quantization fixed to
that of `u`: the converter leaves it as a float DEQUANTIZE -> SIN ->
QUANTIZE island (it would make int8 ops of the NLF's affine `T * (x - phi)`,
so the affine is not written), and `_tables.replace_islands` swaps every
island for the table of the full NLF `sin(T * (x - phi))` of that copy and
group. With `exact = True` (the float check against the layer) the layer
computes the full NLF instead.
"""

import re

import numpy as np

from keras_groupnl.converters import _bias_scales
from keras_groupnl.converters import _deploy
from keras_groupnl.converters import _flatbuffer as fb
from keras_groupnl.converters import _names
from keras_groupnl.converters import _tables
from keras_groupnl.converters import _tflite
from keras_groupnl.layers.deploy_form import NORM_EPSILON

# Name scopes of the NLF sections: `groupnl_nlf_<copy>_<group>_<piece>`
# for one copy, `groupnl_nlfs_<group>_<piece>` for all copies of a piece.
NLF_SCOPE = "groupnl_nlf"
NLFS_SCOPE = "groupnl_nlfs"
_NLF_NAME = re.compile(
    r"groupnl_nlf_(?P<copy>\d+)_(?P<group>\d+)_(?P<piece>\d+)"
    r"|groupnl_nlfs_(?P<all_group>\d+)_(?P<all_piece>\d+)"
)
# TFLite Micro's CONCATENATION takes at most this many inputs.
MAX_CONCAT_INPUTS = 10
# The int8 output of L2_NORMALIZATION: scale 1/128, zero point 0. The NLF
# outputs get the same quantization, so that the concatenation needs none.
UNIT_MIN = -1.0
UNIT_MAX = 127.0 / 128.0


class LookupGroupNL(_deploy.DeployedGroupNL):
    """A GroupNL layer as int8 ops and NLF islands for lookup tables."""

    variant = "int8 lookup tables"

    def generate(self, y):
        import tensorflow as tf

        u = tf.math.l2_normalize(y, axis=-1, epsilon=NORM_EPSILON**2)
        if not self.form.generated_channels:
            return u
        if self.form.num_copies == 1:
            return self._one_copy(u)
        return self._all_copies(u)

    def apply_fold(self, out):
        import tensorflow as tf

        kernel = self.fold.scale.reshape(1, 1, -1, 1)
        out = tf.nn.depthwise_conv2d(out, kernel, (1, 1, 1, 1), "VALID")
        out = tf.nn.bias_add(out, self.fold.shift)
        if self.fold.activation == "relu":
            return tf.nn.relu(out)
        if self.fold.activation == "relu6":
            return tf.nn.relu6(out)
        if self.fold.activation == "hard_swish":
            return out * tf.nn.relu6(out + 3.0) / 6.0  # One HARD_SWISH op.
        return out

    def _one_copy(self, u):
        """At most one generated copy (r <= 2): channel `j` from seed `j`.

        Every piece's NLF is one table, and the output is the pieces and
        their NLFs concatenated. The pieces, not `u`, go into the output:
        `u` is then free as soon as it is split, which keeps the arena peak
        at the plain model's.
        """
        form = self.form
        cuts = {form.generated_channels} - {form.seed_channels}
        segments = self._segments(cuts)
        pieces = self._split(u, segments)
        generated = []
        for i, ((start, stop), piece) in enumerate(zip(segments, pieces)):
            if stop <= form.generated_channels:
                group = int(form.group_of_channel[start])
                generated.append(self._nlf(piece, group, i, copies=False))
        return _concat(pieces + generated)

    def _all_copies(self, u):
        """Two or more copies: one section per piece makes all its copies.

        The pieces are split from `u` in 3-D (`(rows, cols, channels)`), so
        that a piece's section gives `(copies, rows, cols, piece channels)`;
        the sections are concatenated and transposed so that channels run
        copy-major (`k * s + c`) or, with shuffle, seed-major
        (`c * copies + k`), and joined to `u`.
        """
        import tensorflow as tf

        form = self.form
        rows, cols = u.shape[1], u.shape[2]
        u3 = tf.reshape(u, (rows, cols, form.seed_channels))
        segments = self._segments(set())
        pieces = self._split(u3, segments)
        blocks = [
            self._nlf(piece, int(form.group_of_channel[start]), i, copies=True)
            for i, ((start, _), piece) in enumerate(zip(segments, pieces))
        ]
        generated = tf.concat(blocks, axis=3) if len(blocks) > 1 else blocks[0]
        order = (1, 2, 3, 0) if form.shuffle else (1, 2, 0, 3)
        generated = tf.transpose(generated, order)
        full = form.num_copies * form.seed_channels
        generated = tf.reshape(generated, (-1, rows, cols, full))
        if form.generated_channels < full:
            generated = generated[..., : form.generated_channels]
        return tf.concat([u, generated], axis=-1)

    def _nlf(self, piece, group, piece_index, copies):
        """The NLF section of one piece: its first copy, or all copies
        along a new leading axis."""
        import tensorflow as tf

        periods = self.form.periods[:, group]
        shifts = self.form.shifts[:, group]
        if copies:
            shape = (-1, 1, 1, 1)
            name = f"{NLFS_SCOPE}_{group}_{piece_index}"
            periods, shifts = periods.reshape(shape), shifts.reshape(shape)
        else:
            name = f"{NLF_SCOPE}_0_{group}_{piece_index}"
            periods, shifts = float(periods[0]), float(shifts[0])
        with tf.name_scope(name):
            value = tf.sin((piece - shifts) * periods)
            if self.exact:
                return value
            return tf.quantization.fake_quant_with_min_max_args(
                value, min=UNIT_MIN, max=UNIT_MAX, num_bits=8
            )

    def nlf(self, group, copy=None):
        """The NLF of one copy (or all copies, stacked) of a group, as a
        NumPy function of float values."""
        periods = self.form.periods[:, group].astype(np.float64)
        shifts = self.form.shifts[:, group].astype(np.float64)
        if copy is not None:
            period, shift = periods[copy], shifts[copy]
            return lambda x: np.sin(period * (x - shift))
        return lambda x: np.sin(periods[:, None] * (x[None] - shifts[:, None]))

    def _segments(self, cuts):
        """`[(start, stop)]` of the seed channels, cut at group ends and at
        the given extra channel positions."""
        stops = sorted({stop for _, stop in self.form.group_slices()} | cuts)
        return list(zip([0] + stops[:-1], stops))

    def _split(self, u, segments):
        import tensorflow as tf

        sizes = [b - a for a, b in segments]
        if len(sizes) == 1:
            return [u]
        if len(set(sizes)) == 1:  # SPLIT: one constant fewer than SPLIT_V.
            return tf.split(u, len(sizes), axis=-1)
        return tf.split(u, sizes, axis=-1)


def _concat(parts):
    """Channel concatenation in steps of at most `MAX_CONCAT_INPUTS`."""
    import tensorflow as tf

    while len(parts) > MAX_CONCAT_INPUTS:
        parts = [tf.concat(parts[:MAX_CONCAT_INPUTS], -1)] + parts[
            MAX_CONCAT_INPUTS:
        ]
    return tf.concat(parts, axis=-1) if len(parts) > 1 else parts[0]


def convert(model, job, index):
    """The full-integer model with NLF tables, as a `ModelT`.

    Args:
        model: the Keras model.
        job: the pipeline's `TargetJob`.
        index: how tables are indexed, `"quantize"` (TFLite Micro) or
            `"cast_add"` (LiteRT); see `_tables.replace_islands`.

    Returns:
        `(ModelT, deploy layers, table descriptions)`.
    """
    copy, deployed = _deploy.export_copy(model, LookupGroupNL, job.fold)
    exported = _tflite.Exported(
        copy, job.sample_shape, job.workdir, job.layer_names
    )
    model_bytes = exported.int8_model(
        job.calibration, int8_io=job.int8_io, on_sample=job.on_sample
    )
    tfl = fb.read_model(model_bytes)
    tables = _tables.replace_islands(
        tfl, _nlf_finder(deployed, job.layer_names), index
    )
    _bias_scales.fix_bias_scales(tfl)
    fb.remove_unused(tfl)
    return tfl, deployed, tables


def _nlf_finder(deployed, layer_names):
    """`find_nlf` for `_tables.replace_islands`: by the island's name."""
    by_name = {layer.name: layer for layer in deployed}

    def find_nlf(tensor_name):
        match = _NLF_NAME.search(tensor_name)
        layer = _names.find_layer(by_name, [tensor_name]) if match else None
        if layer is None:
            return None
        if match.group("copy") is not None:
            copy = int(match.group("copy"))
            group, piece = int(match.group("group")), int(match.group("piece"))
        else:
            copy = None
            group = int(match.group("all_group"))
            piece = int(match.group("all_piece"))
        return _tables.Section(
            key=(layer, match.group(0)),
            layer=layer,
            copy=copy,
            piece=piece,
            nlf=by_name[layer].nlf(group, copy),
        )

    return find_nlf
