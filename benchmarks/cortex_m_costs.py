"""The Cortex-M cost model's data: the models measured, and the fit.

The "mcu" report estimates instructions per inference on a Cortex-M4F and
a Cortex-M55 (`keras_groupnl/converters/_cortex_m.py`) from coefficients
in `keras_groupnl/converters/cortex_m_costs.json`. They are fitted here to
instruction counts measured on those CPUs: TFLite Micro with CMSIS-NN (and
with reference kernels only) built for each, run in QEMU with `-icount`,
per-op counts from TFLite Micro's profiler (method: docs/results.md,
"Cortex-M"). The firmware is built from fetched sources outside this
repository, so the counts are committed as data
(`docs/cortex_m/measurements.json`: per model, every op's features as
`_cortex_m.model_features` gives them and its measured instructions) and
the fit can be re-run from them.

    python benchmarks/cortex_m_costs.py models build/cortex_m   # .tflite set
    (measure each model on each CPU, see docs/results.md)
    python benchmarks/cortex_m_costs.py fit docs/cortex_m/measurements.json
    python benchmarks/cortex_m_costs.py table docs/cortex_m/measurements.json

`fit` writes the coefficients and prints, for every measured model, the
estimate against the measurement; `table` prints the measurements against
each model's plain twin (the docs' tables).
"""

import argparse
import json
import os
import sys

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tables  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COSTS = os.path.join(ROOT, "keras_groupnl", "converters", "cortex_m_costs.json")
# (name, input size and channels, conv_type, r, mcu_kernel); ResNet-8.
MODELS = [
    ("plain", 32, 3, "plain", 2, "builtin"),
    ("dense_r2", 32, 3, "dense", 2, "builtin"),
    ("dense_r4", 32, 3, "dense", 4, "builtin"),
    ("sparse_r2", 32, 3, "sparse", 2, "builtin"),
    ("dense_r2_fused", 32, 3, "dense", 2, "fused"),
    ("dense_r4_fused", 32, 3, "dense", 4, "fused"),
    ("sparse_r2_fused", 32, 3, "sparse", 2, "fused"),
    ("dense_r2_fused_ct", 32, 3, "dense", 2, "fused_channel_tables"),
    ("dense_r4_fused_ct", 32, 3, "dense", 4, "fused_channel_tables"),
    ("sparse_r2_fused_ct", 32, 3, "sparse", 2, "fused_channel_tables"),
    ("ghost_r2", 32, 3, "ghost", 2, "builtin"),
    ("ghost_r4", 32, 3, "ghost", 4, "builtin"),
    # Held out of the fit: the demo's input, and a larger one.
    ("demo_plain", 28, 1, "plain", 2, "builtin"),
    ("demo_dense_r2", 28, 1, "dense", 2, "builtin"),
    ("demo_dense_r2_fused", 28, 1, "dense", 2, "fused"),
    ("wide_plain", 48, 3, "plain", 2, "builtin"),
    ("wide_dense_r4_fused", 48, 3, "dense", 4, "fused"),
]
HELD_OUT = ("demo_", "wide_")


def build(size, channels, conv_type, r):
    """ResNet-8 (GroupNL, plain or its Ghost twin), random weights."""
    import keras
    from ghost import ghost_twin

    from keras_groupnl import applications

    def make(kind):
        keras.utils.set_random_seed(0)
        kwargs = dict(input_shape=(size, size, channels), classes=10)
        if kind != "plain":
            kwargs.update(reduction_ratio=r, seed=0)
        return applications.GroupNLResNet8(conv_type=kind, **kwargs)

    if conv_type != "ghost":
        return make(conv_type)
    replaced = [
        layer.name
        for layer in make("dense").layers
        if layer.__class__.__name__ == "GroupNLConv2D"
    ]
    return ghost_twin(make("plain"), replaced, r)


def write_models(out_dir):
    import numpy as np

    from keras_groupnl import converters

    os.makedirs(out_dir, exist_ok=True)
    for name, size, channels, conv_type, r, kernel in MODELS:
        model = build(size, channels, conv_type, r)
        x = np.random.default_rng(0).random((64, size, size, channels))
        result = converters.convert(
            model,
            "mcu",
            x.astype("float32"),
            os.path.join(out_dir, name),
            name=name,
            mcu_kernel=kernel,
            verification_samples=8,
            verbose=0,
        )
        print(f"{name}: {result.tflite_path}", flush=True)


def fit(measurements):
    """Least-squares coefficients per target and op key, features of
    `_cortex_m.op_features`; `{target: {key: {feature: coefficient}}}`."""
    rows = {}  # (target, key) -> [(features, instructions)]
    for entry in measurements["models"]:
        if entry["name"].startswith(HELD_OUT):
            continue
        for target, counts in entry["per_op"].items():
            for (key, values), count in zip(entry["ops"], counts):
                rows.setdefault((target, key), []).append((values, count))
    fitted = {}
    for (target, key), points in sorted(rows.items()):
        names = sorted(points[0][0])
        a = np.array([[v[n] for n in names] for v, _ in points], np.float64)
        b = np.array([count for _, count in points], np.float64)
        coefficients = _least_squares(a, b)
        fitted.setdefault(target, {})[key] = dict(
            zip(names, (float(c) for c in coefficients))
        )
    return fitted


def _least_squares(a, b):
    """Non-negative least squares by dropping negative terms until none
    is left; columns that no data varies get zero weight."""
    active = list(range(a.shape[1]))
    while True:
        solution = np.zeros(a.shape[1])
        coef, *_ = np.linalg.lstsq(a[:, active], b, rcond=None)
        solution[active] = coef
        negative = [i for i in active if solution[i] < 0]
        if not negative:
            return solution
        active.remove(min(negative, key=lambda i: solution[i]))


def check(measurements):
    """Estimate against measurement for every model and target."""
    from keras_groupnl.converters import _cortex_m

    _cortex_m.costs.cache_clear()
    body = []
    for entry in measurements["models"]:
        estimate = _cortex_m.estimate_features(entry["ops"])
        for target, measured in entry["instructions"].items():
            got = estimate[target]["instructions"]
            body.append(
                [
                    entry["name"],
                    target,
                    f"{measured:,}",
                    f"{got:,}",
                    f"{100 * (got / measured - 1):+.1f}%",
                    "held out" if entry["name"].startswith(HELD_OUT) else "",
                ]
            )
    print(
        tables.markdown(
            ["model", "target", "measured", "estimated", "error", ""], body
        )
    )


def twin(name):
    """The plain model a measured model compares with."""
    prefix = next((p for p in HELD_OUT if name.startswith(p)), "")
    return prefix + "plain"


def table(measurements):
    """Instructions, arena and file of every model against its twin."""
    entries = {e["name"]: e for e in measurements["models"]}
    targets = list(next(iter(entries.values()))["instructions"])
    arenas = [t for t in targets if t.endswith("cmsis-nn")]

    def cell(value, base):
        return f"{value:,} ({tables.ratio(value / base)})"

    body = []
    for name, entry in entries.items():
        base = entries[twin(name)]
        body.append(
            [name]
            + [
                cell(entry["instructions"][t], base["instructions"][t])
                for t in targets
            ]
            + [cell(entry["arena"][t], base["arena"][t]) for t in arenas]
            + [cell(entry["file_bytes"], base["file_bytes"])]
            + ["yes" if all(entry["checked"].values()) else "NO"]
        )
    headers = (
        ["model"]
        + [f"{t} instructions" for t in targets]
        + [f"arena B, {t}" for t in arenas]
        + ["file B", "outputs = host"]
    )
    align = "l" + "r" * (len(headers) - 2) + "l"
    print(tables.markdown(headers, body, align=align))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    models = sub.add_parser("models", help="write the measured model set")
    models.add_argument("out_dir")
    fitting = sub.add_parser("fit", help="fit the cost model")
    fitting.add_argument("measurements")
    fitting.add_argument("--out", default=COSTS)
    showing = sub.add_parser("table", help="print the measurements")
    showing.add_argument("measurements")
    args = parser.parse_args(argv)
    if args.command == "models":
        write_models(args.out_dir)
        return 0
    with open(args.measurements) as f:
        measurements = json.load(f)
    if args.command == "table":
        table(measurements)
        return 0
    costs = {
        "source": (
            f"{os.path.relpath(args.measurements, ROOT)}: "
            + measurements["method"]
        ),
        "targets": fit(measurements),
    }
    temporary = args.out + ".partial"
    with open(temporary, "w") as f:
        json.dump(costs, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(temporary, args.out)
    check(measurements)
    return 0


if __name__ == "__main__":
    sys.exit(main())
