"""The fused GroupNL tail: one custom TFLite Micro op per GroupNL layer.

With the builtin ops, a GroupNL layer's tail on a microcontroller is
L2_NORMALIZATION, SPLIT, QUANTIZE, GATHER, CONCATENATION and a 1x1
DEPTHWISE_CONV_2D for the folded BatchNorm: CMSIS-NN speeds up only the
last, and on a Cortex-M55 the others cost more than the convolutions the
layer saves. The fused op does the whole tail in one pass over the seed
maps, with the integer arithmetic below; `evaluate` is its bit-exact NumPy
reference, and the C kernel the converter writes beside the model
(`kernels/keras_groupnl_tail.c`) computes the same bytes (tested).

The op, `KERAS_GROUPNL_TAIL` (custom code), reads

- input 0: the int8 seed maps `x`, `(batch, rows, cols, seeds)`;
- input 1: int8 tables `(tables, 256)`;
- input 2: int32 channel plan `(5, filters)`: rows are, per output
  channel, its seed channel, its table (-1: none), multiplier `A`, offset
  `B` and shift `S` (a row per field, so kernels load them as vectors);
- input 3: int32 header `(6,)`: zero point of `x`, output min and max,
  mode, and `group_in`, `multiplier` (below);

and writes the int8 output `(batch, rows, cols, filters)`. At every pixel:

    d_c = x_c - zero_point     (group_in = 1)
    d_c = sum_{i < group_in} (x_[(c // m * group_in + i) * m + c % m] - zp)
                               (group_in > 1, m = multiplier)
    n = sum_c d_c * d_c
    K = 0 if n == 0 else int32(float32(2^30) / sqrtf(float32(n)))  # trunc
    u_c = clamp((d_c * K + 2^22) >> 23, -128, 127)   # unit vector, 1/128

and output channel `j` with plan `(c, t, A, B, S)`:

    mode 0: v = u_c if t < 0 else tables[t, u_c + 128]
            out_j = clamp((v * A + B) >> S, out_min, out_max)
    mode 1: out_j = tables[t, u_c + 128]

Mode 0 keeps one table per NLF (256 bytes, shared by its channels) and
applies the folded BatchNorm per channel; mode 1 ("per-channel tables")
precomputes mode 0's result for every channel and input byte, so a pixel
costs one lookup per channel, at 256 bytes of flash per channel. `>>` is
an arithmetic shift (floor). The converter chooses `S` per channel so that
`|v * A + B| < 2^31`. With `group_in > 1` the op reads the depthwise
outputs of a sparse seed conv and sums each seed map's `group_in` of them
itself (the normalisation cancels their common scale), so the 1x1
summation conv of the builtin graph goes. The float32 operations are IEEE
single precision
(correctly rounded division and square root), the same in NumPy and in C
without `-ffast-math`.
"""

import dataclasses

import numpy as np

CUSTOM_CODE = "KERAS_GROUPNL_TAIL"
# The op as `_flatbuffer.op_name` and the reports name it.
OP_NAME = f"CUSTOM:{CUSTOM_CODE}"
MODES = ("nlf_tables", "channel_tables")
# The seed maps a kernel normalises per pixel: its scratch buffer and the
# int32 sum of squares `n` are bounded by this (float32(n) rounds above
# 2^24, identically in NumPy and C).
MAX_SEEDS = 1024
UNIT_SHIFT = 23
# float32(2^30): with UNIT_SHIFT, u = d / ||d|| in units of 1/128.
_NORM_NUMERATOR = np.float32(2.0**30)
_INT32_LIMIT = 2**31


@dataclasses.dataclass(frozen=True, eq=False)
class FusedTail:
    """The constants of one fused GroupNL tail op.

    Attributes:
        layer: the GroupNL layer's name.
        zero_point: zero point of the int8 seed maps.
        tables: int8 `(tables, 256)`.
        plan: int32 `(5, filters)`: seed, table, A, B, S of every channel.
        out_min, out_max: the output clamp (the fused activation).
        mode: 0 (`"nlf_tables"`) or 1 (`"channel_tables"`).
        group_in, multiplier: how the input's channels sum to seed maps
            (1, 1: the input is the seed maps).
    """

    layer: str
    zero_point: int
    tables: np.ndarray
    plan: np.ndarray
    out_min: int
    out_max: int
    mode: int
    group_in: int = 1
    multiplier: int = 1

    @property
    def seeds(self):
        return int(self.plan[0].max()) + 1

    @property
    def filters(self):
        return int(self.plan.shape[1])

    def header(self):
        fields = [self.zero_point, self.out_min, self.out_max, self.mode]
        return np.array(fields + [self.group_in, self.multiplier], np.int32)


def seed_differences(x, zero_point, group_in=1, multiplier=1):
    """`d`: the seed maps of int8 `x` (last axis), zero point removed."""
    d = np.asarray(x, np.int32) - np.int32(zero_point)
    if group_in == 1:
        return d
    groups = d.shape[-1] // (group_in * multiplier)
    d = d.reshape(d.shape[:-1] + (groups, group_in, multiplier))
    return d.sum(axis=-2, dtype=np.int32).reshape(
        d.shape[:-3] + (groups * multiplier,)
    )


def unit_vectors(x, zero_point, group_in=1, multiplier=1):
    """The int8 unit vectors `u` of the seed maps of int8 `x`."""
    d = seed_differences(x, zero_point, group_in, multiplier)
    n = np.sum(d * d, axis=-1, keepdims=True, dtype=np.int32)
    root = np.sqrt(n.astype(np.float32))
    with np.errstate(divide="ignore"):
        k = np.where(n > 0, _NORM_NUMERATOR / root, np.float32(0))
    k = k.astype(np.float32).astype(np.int32)  # Truncates, as C's cast.
    u = (d * k + np.int32(1 << (UNIT_SHIFT - 1))) >> UNIT_SHIFT
    return np.clip(u, -128, 127).astype(np.int8)


def evaluate(tail, x):
    """The op's int8 output for int8 seed maps `x` (bit-exact reference)."""
    u = unit_vectors(x, tail.zero_point, tail.group_in, tail.multiplier).astype(
        np.int32
    )
    source, table = tail.plan[0], tail.plan[1]
    picked = u[..., source]  # (..., filters)
    if tail.mode == 1:
        return tail.tables[table, picked + 128]
    v = _table_values(picked, table, tail.tables)
    return _requantize(v, tail.plan, tail.out_min, tail.out_max)


def _table_values(picked, table, tables):
    """Mode 0's `v`: the unit vector `picked` where `table < 0`, else the
    table's value at it."""
    looked_up = tables[np.maximum(table, 0), picked + 128]
    return np.where(table < 0, picked, looked_up.astype(np.int32))


def _requantize(v, plan, out_min, out_max):
    a, b, shift = (plan[i].astype(np.int32) for i in (2, 3, 4))
    y = (v.astype(np.int32) * a + b) >> shift
    return np.clip(y, out_min, out_max).astype(np.int8)


def build(
    form, fold, zero_point, out_scale, out_zero_point, mode, summed=False
):
    """The `FusedTail` of a GroupNL layer and the BatchNorm folded in.

    Args:
        form: the layer's `GroupNLDeployForm`.
        fold: its `Fold` (scale, shift, activation) or `None`.
        zero_point: the zero point of the int8 seed maps.
        out_scale, out_zero_point: the int8 output's quantization.
        mode: `"nlf_tables"` or `"channel_tables"`.
        summed: whether the op reads the depthwise outputs of a sparse
            seed conv and sums them itself (see the module docstring).
    """
    seeds, filters = form.seed_channels, form.filters
    if seeds > MAX_SEEDS:
        raise ValueError(
            f"The fused GroupNL kernel normalises at most {MAX_SEEDS} seed "
            f"maps per pixel. Received: layer '{form.name}' with {seeds}"
        )
    nlf_tables = _nlf_tables(form)
    source = np.concatenate([np.arange(seeds), form.source]).astype(np.int32)
    table = np.concatenate(
        [
            np.full(seeds, -1),
            form.copy * form.num_groups + form.group_of_channel[form.source],
        ]
    ).astype(np.int32)
    scale = np.ones(filters) if fold is None else fold.scale
    shift = np.zeros(filters) if fold is None else fold.shift
    activation = None if fold is None else fold.activation
    out_min, out_max = _clamp(activation, out_scale, out_zero_point)
    # out = v / 128 * scale + shift, in output units: alpha * v + beta.
    alpha = np.asarray(scale, np.float64) / (128.0 * out_scale)
    beta = np.asarray(shift, np.float64) / out_scale + out_zero_point
    plan = _requantization(source, table, alpha, beta, form.name)
    grouping = _grouping(form, summed)
    if mode == "nlf_tables":
        return FusedTail(
            form.name,
            int(zero_point),
            nlf_tables,
            plan,
            out_min,
            out_max,
            0,
            *grouping,
        )
    # Every channel's output for every input byte, by mode 0's arithmetic.
    inputs = np.arange(-128, 128, dtype=np.int32)[:, None]
    v = _table_values(
        np.broadcast_to(inputs, (256, filters)), table, nlf_tables
    )
    per_channel = _requantize(v, plan, out_min, out_max).T
    plan = np.zeros((5, filters), np.int32)
    plan[0], plan[1] = source, np.arange(filters)
    return FusedTail(
        form.name,
        int(zero_point),
        np.ascontiguousarray(per_channel),
        plan,
        out_min,
        out_max,
        1,
        *grouping,
    )


def can_sum(form):
    """Whether the op can sum a sparse seed conv's depthwise outputs: no
    seed bias (it is added after the sum), and `n` stays in int32."""
    group_in = int(form.kernel.shape[2])
    bound = form.seed_channels * (group_in * 255) ** 2
    return form.groups > 1 and form.bias is None and bound < _INT32_LIMIT


def _grouping(form, summed):
    """`(group_in, multiplier)` of the op's input."""
    if not summed:
        return 1, 1
    if not can_sum(form):
        group_in = int(form.kernel.shape[2])
        raise ValueError(
            f"Layer '{form.name}': its depthwise outputs cannot be summed in "
            "the fused op, which needs a seed conv of several groups without "
            "bias and seed_channels * (group_in * 255)^2 < 2^31. Received: "
            f"groups={form.groups}, bias={form.bias is not None}, "
            f"seed_channels={form.seed_channels}, group_in={group_in}"
        )
    return int(form.kernel.shape[2]), form.seed_channels // form.groups


def _nlf_tables(form):
    """int8 `(copies * groups, 256)`: NLF `k` at every int8 `u`, in 1/128."""
    u = np.arange(-128, 128, dtype=np.float64) / 128.0
    periods = form.periods.reshape(-1, 1).astype(np.float64)
    shifts = form.shifts.reshape(-1, 1).astype(np.float64)
    values = np.round(128.0 * np.sin(periods * (u[None, :] - shifts)))
    if not len(values):
        # No generated maps (reduction ratio 1): one row no channel reads,
        # so that the tables tensor has data in the file as every op
        # input must.
        values = np.zeros((1, 256))
    return np.clip(values, -128, 127).astype(np.int8)


def _clamp(activation, scale, zero_point):
    """The int8 output range of an activation (ReLU / ReLU6 / none)."""
    low, high = -128, 127
    if activation in ("relu", "relu6"):
        low = max(low, int(zero_point))
    if activation == "relu6":
        high = min(high, int(zero_point + np.round(6.0 / scale)))
    return low, high


def _requantization(source, table, alpha, beta, layer):
    """The int32 plan `(5, filters)` (seed, table, A, B, S) of
    `round(alpha * v + beta)`.

    `S` is the largest shift (at most 30) that keeps `|v * A + B|` below
    2^31 for every int8 `v`; `B` carries the rounding half.
    """
    rows = []
    for j, (c, t, a, b) in enumerate(zip(source, table, alpha, beta)):
        for shift in range(30, 0, -1):
            big_a = int(np.round(a * 2.0**shift))
            big_b = int(np.round(b * 2.0**shift)) + (1 << (shift - 1))
            if 128 * abs(big_a) + abs(big_b) < _INT32_LIMIT:
                break
        else:
            raise ValueError(
                f"Layer '{layer}', channel {j}: the folded BatchNorm scales "
                "it beyond int32 range. Received: scale "
                f"{float(a):.6g}, shift {float(b):.6g} in output units"
            )
        rows.append((c, t, big_a, big_b, shift))
    return np.ascontiguousarray(np.asarray(rows, np.int64).T.astype(np.int32))
