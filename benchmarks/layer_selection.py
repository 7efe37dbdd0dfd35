"""Keep plain the GroupNL layers that do not pay on the target.

For models too small to gain on a phone (ResNet-8 at 32x32,
MobileNetV3-Small), `converters.layer_costs(model, target)` measures every
GroupNL layer against the conv it replaced, converted alone; this script
then builds the model with only the paying layers as GroupNL
(`keras_groupnl.to_groupnl(plain, exclude=costs.exclude())`), converts it
and the all-GroupNL model against the plain twin, and prints the per-layer
table and the three models side by side (latency interleaved per pair,
file size, MACs).

    python benchmarks/layer_selection.py                    # phone
    python benchmarks/layer_selection.py --target mcu

Weights are random (BatchNorm statistics settled on the data, as in
deploy_benchmark.py): enough for latency and size, not accuracy.
"""

import argparse
import os
import sys
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tables  # noqa: E402
from deploy_benchmark import build  # noqa: E402
from deploy_benchmark import settle_batchnorm  # noqa: E402

# (title, application, input size, conv_type, r)
CASES = [
    ("ResNet-8", "GroupNLResNet8", 32, "dense", 2),
    ("MobileNetV3-Small", "GroupNLMobileNetV3Small", 64, "sparse", 2),
]


def speed(report):
    """The target's speed ratio to the plain twin."""
    ratios = report.comparison.ratios
    if report.target == "phone":
        return ratios["latency_litert"]
    return ratios["cortex_m:cortex-m4f/cmsis-nn"]


def measure(case, target, samples):
    import numpy as np

    import keras_groupnl
    from keras_groupnl import converters
    from keras_groupnl.analysis import count_macs

    title, function_name, size, conv_type, r = case
    high = 255.0 if "MobileNet" in function_name else 1.0
    x = np.random.default_rng(3).uniform(0, high, (samples, size, size, 3))
    x = x.astype("float32")
    plain = build(function_name, size, "plain", r)
    groupnl = build(function_name, size, conv_type, r)
    for model in (plain, groupnl):
        settle_batchnorm(model, x)
    costs = converters.layer_costs(groupnl, target, samples=8)
    selected = keras_groupnl.to_groupnl(
        plain,
        conv_type=conv_type,
        reduction_ratio=r,
        exclude=costs.exclude() or None,
        seed=0,
    )
    settle_batchnorm(selected, x)
    # MACs before any conversion touches the models.
    macs = {
        "all GroupNL": count_macs(groupnl) / count_macs(plain),
        "paying only": count_macs(selected) / count_macs(plain),
    }
    rows = []
    total, excluded = len(costs.layers), len(costs.exclude())
    kept = {"all GroupNL": total, "paying only": total - excluded}
    for label, model in (("all GroupNL", groupnl), ("paying only", selected)):
        with tempfile.TemporaryDirectory() as out:
            report = converters.convert(
                model,
                target,
                x,
                out,
                compare_with=plain,
                calibration_samples=samples,
                verification_samples=8,
                verbose=0,
            ).report
        rows.append(
            [
                title,
                label,
                f"{kept[label]} / {total}",
                tables.ratio(speed(report)),
                tables.ratio(report.comparison.ratios["file"]),
                tables.ratio(macs[label]),
            ]
        )
    return costs, rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=("phone", "mcu"), default="phone")
    parser.add_argument("--samples", type=int, default=32)
    args = parser.parse_args(argv)
    measured_on = tables.machine()
    all_rows = []
    for case in CASES:
        print(f"[layer_selection] {case[0]}", flush=True)
        costs, rows = measure(case, args.target, args.samples)
        print(f"\n### {case[0]}: GroupNL layer / the conv it replaced\n")
        print(costs.summary())
        all_rows += rows
    print("\n" + tables.machine_caption(measured_on))
    measure_name = (
        "latency (LiteRT XNNPACK, 1 thread)"
        if args.target == "phone"
        else "est. Cortex-M4F CMSIS-NN instructions"
    )
    print(f"\n### Against plain: {measure_name}\n")
    print(
        tables.markdown(
            ["model", "GroupNL layers", "kept", measure_name, "file", "MACs"],
            all_rows,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
