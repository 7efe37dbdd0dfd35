"""GroupNL models converted for phones and microcontrollers, against plain.

Every GroupNL model is converted with `keras_groupnl.converters.convert(...,
compare_with=<the plain model from the same builder>)`, so both are
converted the same way and measured in one run, latencies interleaved:

- phone: LiteRT with XNNPACK, 1 thread, batch 1: latency, file size and
  XNNPACK partitions, for ResNet-18 (64x64, dense r = 2 and 4, sparse),
  ResNet-8 (32x32, dense r = 2) and MobileNetV3-Small (64x64, sparse);
- mcu: TensorFlow Lite Micro: file size (NLF tables / weights / other),
  tensor arena measured in TFLM, estimated instructions on a Cortex-M4F
  and a Cortex-M55 with CMSIS-NN and with reference kernels (the report's
  cost model), and the host interpreter's latency (a proxy), for ResNet-8
  (MLPerf Tiny, 32x32x3) dense r = 2 and 4, sparse r = 2, each with the
  builtin, fused and fused-channel-tables tail;
- both: Ghost twins (benchmarks/ghost.py: each replaced conv as a primary
  conv with m/r filters and a 3x3 depthwise cheap conv), the established
  cheap-feature baseline, converted the same way.

Weights are freshly initialised and the data random (uniform over the input
range): enough for size, memory and latency, not for accuracy; the
Fashion-MNIST example measures int8 accuracy on real data. Every
BatchNormalization's moving statistics are first set to those of its input
on the calibration data, as training would leave them; without that, the
activations of a fresh deep model grow without bound and its int8 ranges
are unlike a trained model's (XNNPACK then refuses some int8 ADDs of
MobileNetV3's hard-swish).

    python benchmarks/deploy_benchmark.py                 # both, ~10 min
    python benchmarks/deploy_benchmark.py --target mcu    # ~2 min
    python benchmarks/deploy_benchmark.py --json runs/deploy.json

Run it on an otherwise idle machine: latency ratios are interleaved, but a
busy machine still adds noise.
"""

import argparse
import os
import sys
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tables  # noqa: E402
from backend_runs import write_json  # noqa: E402
from ghost import ghost_twin  # noqa: E402
from tables import markdown  # noqa: E402
from tables import ratio  # noqa: E402

# (title, application, image size, conv_type, reduction ratio, convert
# options) per case; conv_type "ghost" is the Ghost twin (benchmarks/ghost.py)
# of the GroupNL model's replaced convs.
CASES = {
    "phone": [
        ("ResNet-18", "GroupNLResNet18", 64, "dense", 2, {}),
        ("ResNet-18", "GroupNLResNet18", 64, "dense", 4, {}),
        ("ResNet-18", "GroupNLResNet18", 64, "sparse", 2, {}),
        ("ResNet-18", "GroupNLResNet18", 64, "ghost", 2, {}),
        ("ResNet-18", "GroupNLResNet18", 64, "ghost", 4, {}),
        ("ResNet-8", "GroupNLResNet8", 32, "dense", 2, {}),
        ("MobileNetV3-Small", "GroupNLMobileNetV3Small", 64, "sparse", 2, {}),
    ],
    "mcu": [
        ("ResNet-8", "GroupNLResNet8", 32, conv_type, r, {"mcu_kernel": k})
        for conv_type, r in (("dense", 2), ("dense", 4), ("sparse", 2))
        for k in ("builtin", "fused", "fused_channel_tables")
    ]
    + [("ResNet-8", "GroupNLResNet8", 32, "ghost", r, {}) for r in (2, 4)],
}
CLASSES = 10


def build(function_name, size, conv_type, reduction_ratio):
    import keras

    from keras_groupnl import applications
    from keras_groupnl.layers import BaseGroupNLConv

    def make(kind):
        keras.utils.set_random_seed(0)
        kwargs = dict(input_shape=(size, size, 3), classes=CLASSES)
        if kind != "plain":
            kwargs.update(reduction_ratio=reduction_ratio, seed=0)
        return getattr(applications, function_name)(conv_type=kind, **kwargs)

    if conv_type != "ghost":
        return make(conv_type)
    replaced = [
        layer.name
        for layer in make("dense").layers
        if isinstance(layer, BaseGroupNLConv)
    ]
    return ghost_twin(make("plain"), replaced, reduction_ratio)


def settle_batchnorm(model, x):
    """Sets every BatchNormalization's moving mean and variance to those of
    its input on `x`, layer by layer in graph order."""
    import keras
    import numpy as np

    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        probe = keras.Model(model.inputs, layer.input)
        a = np.asarray(probe.predict(x, batch_size=16, verbose=0), np.float64)
        axes = tuple(range(a.ndim - 1))
        layer.moving_mean.assign(a.mean(axis=axes).astype("float32"))
        layer.moving_variance.assign(a.var(axis=axes).astype("float32"))


def measure(target, case, samples):
    """Converts one GroupNL case with its plain twin; a result row."""
    import numpy as np

    from keras_groupnl import converters

    title, function_name, size, conv_type, r, options = case
    model = build(function_name, size, conv_type, r)
    plain = build(function_name, size, "plain", r)
    # ResNets take [0, 1]-scaled inputs here; MobileNetV3 rescales [0, 255].
    high = 255.0 if "MobileNet" in function_name else 1.0
    x = np.random.default_rng(3).uniform(0, high, (samples, size, size, 3))
    x = x.astype("float32")
    settle_batchnorm(model, x)
    settle_batchnorm(plain, x)
    with tempfile.TemporaryDirectory() as out:
        report = converters.convert(
            model,
            target,
            x,
            out,
            compare_with=plain,
            calibration_samples=samples,
            verification_samples=min(8, samples),
            verbose=0,
            **options,
        ).report
    return {
        "target": target,
        "model": title,
        "input": f"{size}x{size}x3",
        "variant": f"{conv_type} r={r}",
        "kernel": options.get("mcu_kernel", ""),
        "params": report.params,
        "plain_params": report.comparison.params,
        "report": report.to_dict(),
    }


def phone_table(rows):
    body = []
    for row in rows:
        rep, twin = row["report"], row["report"]["comparison"]
        body.append(
            [
                row["model"],
                row["input"],
                row["variant"],
                f"{rep['latency']['litert']['median_ms']:.3f}",
                f"{twin['latency']['litert']['median_ms']:.3f}",
                ratio(twin["ratios"]["latency_litert"]),
                f"{rep['sizes']['file']:,}",
                ratio(twin["ratios"]["file"]),
                f"{rep['delegation']['partitions']} / "
                f"{twin['delegation']['partitions']}",
            ]
        )
    return markdown(
        [
            "model",
            "input",
            "GroupNL",
            "ms",
            "plain ms",
            "latency",
            "bytes",
            "size",
            "XNNPACK partitions (GroupNL / plain)",
        ],
        body,
        align="lll" + "r" * 6,
    )


def mcu_table(rows):
    """File, arena and estimated Cortex-M instructions against plain."""
    targets = list(rows[0]["report"]["cortex_m"]) if rows else []
    body = []
    for row in rows:
        rep, twin = row["report"], row["report"]["comparison"]
        sizes, arena = rep["sizes"], rep["arena"]
        host = twin["ratios"].get("latency_tflm")
        body.append(
            [
                row["model"],
                row["variant"],
                row["kernel"] or "-",
                f"{sizes['file']:,} ({sizes['tables']:,} / {sizes['weights']:,}"
                f" / {sizes['other']:,})",
                ratio(twin["ratios"]["file"]),
                f"{arena['arena_bytes']:,}",
                ratio(twin["ratios"]["arena"]),
            ]
            + [ratio(twin["ratios"][f"cortex_m:{t}"]) for t in targets]
            + [ratio(host) if host is not None else "not run"]
        )
    return markdown(
        [
            "model",
            "variant",
            "tail kernel",
            "file B (tables / weights / other)",
            "file",
            "arena B",
            "arena",
        ]
        + [f"est. {t}" for t in targets]
        + ["host TFLM latency"],
        body,
        align="lll" + "r" * (5 + len(targets)),
    )


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--target", choices=("phone", "mcu", "both"), default="both"
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=32,
        help="calibration samples (default 32)",
    )
    parser.add_argument(
        "--only",
        default="",
        help="only the models whose application name contains this text "
        "(e.g. ResNet8)",
    )
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    if args.samples <= 0:
        parser.error("--samples must be positive")
    targets = ["phone", "mcu"] if args.target == "both" else [args.target]
    results = {}
    for target in targets:
        rows = []
        for case in [c for c in CASES[target] if args.only in c[1]]:
            print(
                f"[deploy_benchmark] {target}: {case[0]} {case[3]} r={case[4]}",
                flush=True,
            )
            rows.append(measure(target, case, args.samples))
        results[target] = rows
    measured_on = tables.machine()
    print("\n" + tables.machine_caption(measured_on))
    if "phone" in results:
        print(
            "\n### Phone: LiteRT XNNPACK, 1 thread, batch 1, "
            "ratios interleaved against plain\n"
        )
        print(phone_table(results["phone"]))
    if "mcu" in results:
        print(
            "\n### Microcontroller: TensorFlow Lite Micro, ratios "
            "against plain\n"
        )
        print(mcu_table(results["mcu"]))
        print(
            "\nest.: instructions per inference on that Cortex-M and "
            "kernel set, from the cost model fitted to QEMU counts "
            "(docs/cortex_m/); they do not depend on this machine. Host "
            "TFLM latency: the tflite-micro Python interpreter on this CPU "
            "(reference kernels): a proxy that misleads (see docs/results.md)"
            "; a fused model's GroupNL ops run as NumPy there, so it is not "
            "timed. Arena: measured in TFLM on the 64-bit host."
        )
    if args.json:
        write_json(args.json, {"machine": measured_on.to_dict(), **results})


if __name__ == "__main__":
    main()
