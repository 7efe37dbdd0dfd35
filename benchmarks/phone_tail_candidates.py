"""What each way of writing a GroupNL layer's tail costs on a phone runtime.

On CPUs with fast int8 convolution (x86 with AVX-512 VNNI, phone cores with
dot-product instructions) the seed conv of a GroupNL layer is cheap and its
tail (normalisation, sinusoids, folded BatchNorm) is what keeps GroupNL
ResNet-18 above 0.6x plain (issue 24). This script converts one layer with
its BatchNorm and ReLU at the shapes of ResNet-18's stages at 64x64 through
`converters.convert(..., "phone")` as:

- `conv`: the plain conv it replaces (the baseline of every ratio);
- `ghost`: a Ghost module of the same ratio (benchmarks/ghost.py);
- `shipped`: GroupNL with the converter's own float tail;
- `int8_u`: the same, but `u` and `sin(...)` are quantized as soon as they
  are made, so the NLF argument and both folds are int8 depthwise convs
  and only the norm and SIN stay float;
- `poly3` / `poly5` (r = 2): the NLF as a degree-3 / degree-5
  polynomial of `u` (a Chebyshev fit per channel over `u` in [-1, 1]),
  evaluated by Horner's rule with int8 MUL and ADD, so nothing after the
  norm is float;
- `strips4`: the shipped tail run on four row strips one after the other,
  so that its intermediates are a quarter of the size;
- ablations that compute something else, for timing only: `no_sin` (the
  argument is the output), `no_norm` (`u = 0.05 y`), at r = 2
  `no_argument` (SIN of `u` itself), and `seed_floor`: the seed conv, its
  maps concatenated with themselves and the fold, the least any tail
  does.

Each is timed interleaved with the others in LiteRT with XNNPACK (one
thread, batch 1), and the table gives its latency, its ratio to `conv`, the
ops of the converted layer, and its largest and mean absolute error against
the Keras layer on 16 random inputs (the converter's own verification).

    python benchmarks/phone_tail_candidates.py
    python benchmarks/phone_tail_candidates.py --shapes 64 --ratios 2
    python benchmarks/phone_tail_candidates.py --model

`--model` converts whole models instead (`MODELS`): ResNet-18 at 64x64
(plain, Ghost and GroupNL r = 2, 4) and ResNet-8 at 32x32 (plain and
GroupNL), each GroupNL model with the shipped tail and with `seed_floor` in
every GroupNL layer: the latency no tail can go below. MobileNetV3-Small is
not in it: without the norm, its seed maps' outliers reach the hard-swish
ops with scales XNNPACK refuses (14 partitions measured), so its "floor"
would be slower than the real model.

The candidates replace the converter's tail class while they convert (see
`tail_class`); they are measurements, not options of the package.
"""

import argparse
import contextlib
import os
import sys
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import tables  # noqa: E402
import tensorflow as tf  # noqa: E402
from backend_runs import write_json  # noqa: E402

from keras_groupnl.converters import _phone  # noqa: E402
from keras_groupnl.layers.deploy_form import NORM_EPSILON  # noqa: E402

# ResNet-18's stages at 64x64 with the small-input stem: (size, channels).
SHAPES = {64: (64, 64), 32: (32, 128), 16: (16, 256), 8: (8, 512)}
ABLATIONS = ("no_sin", "no_argument", "no_norm", "seed_floor")


def candidate_calls(floor_gains=None):
    """Candidate name -> the `call(self, x)` of its deploy layer.

    `floor_gains` (GroupNL layer name -> `1 / mean norm of its seed maps`,
    from `floor_gains`) scales `seed_floor`'s fold so that its unnormalised
    maps stay in the range the model's BatchNorms were settled for; else
    the quantizer's scales can push an op out of XNNPACK, and the floor
    would not be one.
    """
    calls = {
        "int8_u": int8_u,
        "poly3": polynomial(3),
        "poly5": polynomial(5),
        "strips4": strips,
        "seed_floor": seed_floor(floor_gains or {}),
    }
    calls.update({kind: ablation(kind) for kind in ABLATIONS[:3]})
    return calls


def norm(y, ablate=False):
    """`u`, in float (`ablate`: `0.05 y` instead)."""
    with tf.name_scope(_phone.FLOAT_SCOPE):
        if ablate:
            return y * 0.05
        square_sum = tf.reduce_sum(y * y, axis=-1, keepdims=True)
        return y * tf.math.rsqrt(tf.maximum(square_sum, NORM_EPSILON**2))


def folded(layer, part, start, gain=1.0):
    """The fold of output channels `start ..` applied to `part`, outside
    the float scope (int8 once quantized)."""
    stop = start + part.shape[-1]
    fold = layer.fold
    out = _phone._depthwise_affine(
        part, fold.scale[start:stop] * gain, fold.shift[start:stop]
    )
    return _phone._activation(out, fold.activation)


def int8_u(layer, x):
    u = norm(layer.seed_conv(x))
    argument = layer._argument(u)
    with tf.name_scope(_phone.FLOAT_SCOPE):
        generated = tf.sin(argument)
    return tf.concat(
        [folded(layer, u, 0), folded(layer, generated, u.shape[-1])], -1
    )


def polynomial(degree):
    def call(layer, x):
        u = norm(layer.seed_conv(x))
        c = chebyshev_coefficients(layer.form, degree)
        t = _phone._depthwise_affine(u, c[0], c[1])
        for k in range(2, degree + 1):
            t = t * u + c[k]
        return tf.concat(
            [folded(layer, u, 0), folded(layer, t, u.shape[-1])], -1
        )

    return call


def strips(layer, x):
    y = layer.seed_conv(x)
    rows = []
    for part in tf.split(y, 4, axis=1):
        rows.append(tf.concat(layer._fold_parts(layer._parts(part)), -1))
    return tf.concat(rows, axis=1)


def ablation(kind):
    def call(layer, x):
        u = norm(layer.seed_conv(x), ablate=kind == "no_norm")
        with tf.name_scope(_phone.FLOAT_SCOPE):
            argument = u if kind == "no_argument" else layer._argument(u)
            generated = argument if kind == "no_sin" else tf.sin(argument)
        return tf.concat(layer._fold_parts([u, generated]), axis=-1)

    return call


def seed_floor(gains):
    def call(layer, x):
        y = layer.seed_conv(x)
        copies = -(-layer.form.filters // y.shape[-1])
        y = tf.concat([y] * copies, -1)[..., : layer.form.filters]
        return folded(layer, y, 0, gains.get(layer.name, 1.0))

    return call


def floor_gains(model, x):
    """GroupNL layer name -> 1 / the mean L2 norm of its seed maps on `x`."""
    import keras

    from keras_groupnl.layers import BaseGroupNLConv

    gains = {}
    for layer in model.layers:
        if isinstance(layer, BaseGroupNLConv):
            probe = keras.Model(model.inputs, layer.input)
            seeds = layer.seed_conv(probe.predict(x[:8], verbose=0))
            norms = np.linalg.norm(keras.ops.convert_to_numpy(seeds), axis=-1)
            gains[layer.name] = 1.0 / max(float(norms.mean()), 1e-6)
    return gains


def chebyshev_coefficients(form, degree):
    """`(degree + 1, generated)` float32 power coefficients, highest first,
    of a Chebyshev fit of every generated channel's NLF over u in [-1, 1]
    (r = 2: generated channel j comes from seed channel j)."""
    grid = np.linspace(-1.0, 1.0, 401)
    columns = []
    for period, shift in zip(form.period, form.shift):
        fit = np.polynomial.chebyshev.Chebyshev.fit(
            grid, np.sin(float(period) * (grid - float(shift))), degree
        )
        columns.append(fit.convert(kind=np.polynomial.Polynomial).coef[::-1])
    return np.asarray(columns, np.float32).T


@contextlib.contextmanager
def tail_class(call):
    """The phone converter with its tail layer's `call` replaced.

    `_phone.convert` builds its export copy from the module's
    `FloatTailGroupNL`; a subclass put there for one conversion is how a
    candidate tail goes through the converter's quantizer settings and
    verification unchanged. Private by necessity: candidates are not
    options of the package.
    """
    shipped = _phone.FloatTailGroupNL
    if call is not None:
        _phone.FloatTailGroupNL = type(
            "CandidateTail", (shipped,), {"call": call}
        )
    try:
        yield
    finally:
        _phone.FloatTailGroupNL = shipped


def layer_model(kind, size, channels, ratio):
    """One layer (conv, GroupNL or Ghost) + BatchNorm + ReLU."""
    import keras
    from ghost import ghost_twin

    import keras_groupnl

    inputs = keras.Input((size, size, channels))
    if kind == "groupnl":
        layer = keras_groupnl.layers.GroupNLConv2D(
            channels, 3, padding="same", reduction_ratio=ratio, name="l_conv"
        )
    else:
        layer = keras.layers.Conv2D(channels, 3, padding="same", name="l_conv")
    x = keras.layers.BatchNormalization(name="l_bn")(layer(inputs))
    model = keras.Model(inputs, keras.layers.ReLU(name="l_relu")(x))
    if kind == "ghost":
        model = ghost_twin(model, ["l_conv"], ratio)
    rng = np.random.default_rng(0)
    for bn in batch_norms(model):
        width = bn.moving_mean.shape[0]
        bn.moving_mean.assign(rng.normal(0.0, 0.1, width).astype("float32"))
        variance = rng.uniform(0.5, 2.0, width).astype("float32")
        bn.moving_variance.assign(variance)
    return model


def batch_norms(model):
    """The model's BatchNormalization layers, the Ghost modules' too."""
    import keras

    found = []
    for layer in model.layers:
        found += [getattr(layer, n, None) for n in ("primary_bn", "cheap_bn")]
        found.append(layer)
    bn = keras.layers.BatchNormalization
    return [layer for layer in found if isinstance(layer, bn)]


def convert(model, x, call=None):
    """`(model bytes, report)` of a phone conversion, with `call` as the
    GroupNL tail when given."""
    from keras_groupnl import converters

    with tempfile.TemporaryDirectory() as out, tail_class(call):
        result = converters.convert(
            model,
            "phone",
            x,
            out,
            verification_data=x[:16],
            calibration_samples=len(x),
            verbose=0,
        )
        with open(result.tflite_path, "rb") as f:
            return f.read(), result.report


def measure_shape(size, channels, ratio, rounds):
    """Rows of one (shape, ratio): every candidate converted and timed."""
    rng = np.random.default_rng(1)
    x = np.maximum(rng.normal(0, 1, (64, size, size, channels)), 0)
    x = x.astype("float32")
    groupnl = layer_model("groupnl", size, channels, ratio)
    calls = candidate_calls(floor_gains(groupnl, x))
    names = ["shipped", "int8_u", "strips4", "no_sin", "no_norm", "seed_floor"]
    if ratio == 2:
        # Both need one generated map per seed map.
        names += ["poly3", "poly5", "no_argument"]
    models = {"conv": layer_model("conv", size, channels, ratio)}
    models["ghost"] = layer_model("ghost", size, channels, ratio)
    converted = {k: convert(m, x) for k, m in models.items()}
    for name in names:
        tail = None if name == "shipped" else calls[name]
        converted[name] = convert(groupnl, x, tail)
    label = f"{size}x{size}x{channels} r{ratio}"
    return timed_rows(label, converted, x, (rounds, 7, 30.0))


# `--model`: (title, application, input size, models), each model
# `(conv_type, r)`; every GroupNL one runs with both tails.
MODELS = [
    (
        "ResNet-18",
        "GroupNLResNet18",
        64,
        [("plain", 2), ("ghost", 2), ("ghost", 4), ("dense", 2), ("dense", 4)],
    ),
    ("ResNet-8", "GroupNLResNet8", 32, [("plain", 2), ("dense", 2)]),
]


def measure_models(case, rounds):
    """Rows of one `MODELS` case, timed interleaved: each model, and each
    GroupNL one also with `seed_floor` in every GroupNL layer."""
    from deploy_benchmark import build
    from deploy_benchmark import settle_batchnorm

    title, function_name, size, models = case
    rng = np.random.default_rng(1)
    x = rng.uniform(0.0, 1.0, (32, size, size, 3)).astype("float32")
    converted = {}
    for kind, ratio in models:
        model = build(function_name, size, kind, ratio)
        settle_batchnorm(model, x)
        name = kind if kind == "plain" else f"{kind} r{ratio}"
        converted[name] = convert(model, x)
        if kind in ("dense", "sparse"):
            floor = candidate_calls(floor_gains(model, x))["seed_floor"]
            converted[f"{name} seed_floor"] = convert(model, x, floor)
    return timed_rows(f"{title} {size}x{size}", converted, x, (rounds, 3, 60.0))


def timed_rows(label, converted, x, timing):
    """One row per converted model (`{name: (bytes, report)}`), all timed
    interleaved in LiteRT (`timing`: rounds, calls per round, seconds at
    most); ratios against the first."""
    from keras_groupnl.converters import _runtime

    runners = {k: _runtime.LiteRTRunner(d) for k, (d, _) in converted.items()}
    rounds, calls_per_round, max_seconds = timing
    timed = _runtime.interleaved_latency(
        {k: r.timed_call(x[0]) for k, r in runners.items()},
        rounds=rounds,
        calls_per_round=calls_per_round,
        max_seconds=max_seconds,
    )
    rows = []
    for name, (_, report) in converted.items():
        check = report.verification["litert"]
        rows.append(
            {
                "layer": label,
                "candidate": name,
                "exact": name.split()[-1] not in ABLATIONS,
                "ms": timed[name]["median_ms"],
                "ops": sum(report.op_histogram.values()),
                "partitions": runners[name].delegation()["partitions"],
                "max_abs_error": check.max_abs_error,
                "mean_abs_error": check.mean_abs_error,
            }
        )
    return tables.add_ratios(rows, ["ms"], lambda row: rows[0])


def print_table(rows, measured_on):
    print(tables.machine_caption(measured_on))
    headers = ["layer", "candidate", "ms", "vs conv", "ops", "partitions"]
    headers += ["max err", "mean err"]
    body = []
    for row in rows:
        name = row["candidate"] + ("" if row["exact"] else " (ablation)")
        body.append(
            [
                row["layer"],
                name,
                f"{row['ms']:.3f}",
                tables.ratio(row["ms_ratio"]),
                row["ops"],
                row["partitions"],
                f"{row['max_abs_error']:.3f}",
                f"{row['mean_abs_error']:.4f}",
            ]
        )
    print(tables.markdown(headers, body))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--shapes", nargs="+", type=int, default=list(SHAPES), choices=SHAPES
    )
    parser.add_argument("--ratios", nargs="+", type=int, default=[2, 4])
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument(
        "--model",
        action="store_true",
        help="whole models (MODELS) instead of single layers",
    )
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    if any(r not in (2, 4) for r in args.ratios):
        parser.error(f"--ratios must be 2 or 4. Received: {args.ratios}")
    measured_on = tables.machine()
    rows = []
    for case in MODELS if args.model else []:
        rows += measure_models(case, args.rounds)
    for size in [] if args.model else args.shapes:
        for ratio in args.ratios:
            rows += measure_shape(*SHAPES[size], ratio, args.rounds)
    print_table(rows, measured_on)
    if args.json:
        write_json(args.json, {"machine": measured_on.to_dict(), "rows": rows})


if __name__ == "__main__":
    main()
