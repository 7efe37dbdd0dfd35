"""Whole-model cost of GroupNL against plain models from the same builder.

For ResNet-18, ResNet-8 (MLPerf Tiny) and MobileNetV3-Small, compares the
plain model (`conv_type="plain"`) with its GroupNL variants (`"dense"` for
the ResNets, `"sparse"` for all three; MobileNetV3 has no dense variant)
and prints one Markdown table per section, every figure also as a ratio to
the plain model measured in the same run:

1. Size: parameters (total and trainable) and MACs per image. MACs count
   the convs and dense layers only: a GroupNL layer by its seed conv
   kernel (its sinusoids are elementwise work, not MACs, and the sparse
   layer's 0/1 channel-summation matmul is not counted), `DepthwiseConv2D`,
   `Conv2D` (grouped ones by their grouped kernel) and `Dense`.
2. Inference time per Keras backend (batch `--batch`): TensorFlow
   `tf.function` (graph mode; `tensorflow-xla` adds `jit_compile=True`), JAX
   `jax.jit` of `model.stateless_call`, torch eager under `torch.no_grad()`.
3. Training-step time per backend: one `model.train_on_batch` call (one
   Adam step, batch `--train-batch`) of a compiled model after warm-up
   steps. `jit_compile` is False on TensorFlow (True on `tensorflow-xla`),
   True on JAX (always XLA) and False (eager) on torch.

Converted int8 models (phone and microcontroller) are measured by
`benchmarks/deploy_benchmark.py`.

Timings interleave the variants of one model round by round and report the
median round (each round times about `--min-seconds`, at least one call).
The Keras backend is fixed per process, so every backend runs in its own
worker process (this script re-invoked with `KERAS_BACKEND` set); the size
section runs in a TensorFlow-backend worker.

    python benchmarks/model_benchmark.py            # all, ~12-15 min on 2 cores
    python benchmarks/model_benchmark.py --models resnet8 \\
        --backends tensorflow --rounds 2   # a quick check
    python benchmarks/model_benchmark.py --backends   # size only
    python benchmarks/model_benchmark.py --json runs/model_benchmark.json

Run it on an otherwise idle machine: every backend uses all cores, and
torch's thread pool in particular slows down many times over when another
process competes for them.

Models: `resnet18` (input `--image-size`, default 64x64x3, which takes the
small-input stem: 3x3 stride-1 conv, no pooling), `resnet8` (32x32x3),
`mobilenet_v3_small` (input `--image-size`, default 64x64x3, small-input
stem); 10 classes, softmax head, `reduction_ratio=2`, `num_groups=4`,
seed 0.
"""

import argparse
import platform
import sys
import time

import tables
from backend_runs import report_progress as progress
from backend_runs import report_rows
from backend_runs import run_worker
from backend_runs import write_json
from timing import RUNS
from timing import compiled_forward
from timing import interleaved_median

MODELS = {
    # key: (title, application function name, variants, fixed image size)
    "resnet18": (
        "ResNet-18",
        "GroupNLResNet18",
        ("plain", "dense", "sparse"),
        None,
    ),
    "resnet8": ("ResNet-8", "GroupNLResNet8", ("plain", "dense", "sparse"), 32),
    "mobilenet_v3_small": (
        "MobileNetV3-Small",
        "GroupNLMobileNetV3Small",
        ("plain", "sparse"),
        None,
    ),
}
# MobileNetV3 rescales [0, 255] to [-1, 1] inside the model.
INPUT_SCALE = {"resnet18": 1.0, "resnet8": 1.0, "mobilenet_v3_small": 255.0}
CLASSES = 10

DEFAULT_RUNS = ("tensorflow", "jax", "torch")


# ---------------------------------------------------------------------------
# Worker side: everything below up to `main` runs with one Keras backend.


def image_size(key, args):
    fixed = MODELS[key][3]
    return fixed if fixed else args.image_size


def build(key, variant, args):
    import keras

    from keras_groupnl import applications

    keras.utils.set_random_seed(0)
    size = image_size(key, args)
    function = getattr(applications, MODELS[key][1])
    kwargs = dict(
        input_shape=(size, size, 3),
        classes=CLASSES,
        conv_type=variant,
        name=f"{key}_{variant}",
    )
    if variant != "plain":
        kwargs.update(reduction_ratio=2, num_groups=4, seed=0)
    return function(**kwargs)


def random_inputs(key, args, batch, seed=0):
    import numpy as np

    size = image_size(key, args)
    rng = np.random.default_rng(seed)
    x = rng.random((batch, size, size, 3), dtype="float32") * INPUT_SCALE[key]
    y = rng.integers(0, CLASSES, size=(batch,)).astype("int32")
    return x.astype("float32"), y


def trainable_count(model):
    import numpy as np

    return int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))


def timing_worker(run, args):
    """Inference and training-step rows for one backend."""
    import keras

    mode = RUNS[run][1]
    jit = {"graph": False, "xla": True, "jit": True, "eager": False}[mode]
    rows = {"inference": [], "training": []}
    for key in args.models:
        variants = MODELS[key][2]
        x_np, _ = random_inputs(key, args, args.batch)
        x = keras.ops.convert_to_tensor(x_np)
        models = {}
        try:
            fns = {}
            for variant in variants:
                progress(
                    f"{run}: {key} {variant}: building, compiling inference"
                )
                models[variant] = build(key, variant, args)
                forward = compiled_forward(models[variant], mode)
                for _ in range(args.warmup):
                    forward(x)
                fns[variant] = lambda f=forward: f(x)
            progress(f"{run}: {key}: timing inference")
            medians, iters = interleaved_median(
                fns, args.rounds, args.min_seconds
            )
            for variant in variants:
                rows["inference"].append(
                    {
                        "model": key,
                        "variant": variant,
                        "batch": args.batch,
                        "ms": 1000 * medians[variant],
                        "calls_per_round": iters[variant],
                    }
                )
        except Exception as error:  # keep the other models' figures
            progress(f"{run}: {key}: inference failed: {error!r}")
            for variant in variants:
                rows["inference"].append(
                    {"model": key, "variant": variant, "error": repr(error)}
                )
        del fns

        xt, yt = random_inputs(key, args, args.train_batch, seed=1)
        try:
            steps = {}
            for variant in variants:
                progress(f"{run}: {key} {variant}: compiling training step")
                if variant not in models:
                    models[variant] = build(key, variant, args)
                model = models[variant]
                model.compile(
                    optimizer=keras.optimizers.Adam(1e-3),
                    loss="sparse_categorical_crossentropy",
                    jit_compile=jit,
                )
                for _ in range(args.warmup):
                    model.train_on_batch(xt, yt)
                steps[variant] = lambda m=model: m.train_on_batch(xt, yt)
            progress(f"{run}: {key}: timing training steps")
            medians, iters = interleaved_median(
                steps, args.rounds, args.min_seconds
            )
            for variant in variants:
                rows["training"].append(
                    {
                        "model": key,
                        "variant": variant,
                        "batch": args.train_batch,
                        "ms": 1000 * medians[variant],
                        "calls_per_round": iters[variant],
                        "jit_compile": bool(models[variant].jit_compile),
                    }
                )
        except Exception as error:
            progress(f"{run}: {key}: training failed: {error!r}")
            for variant in variants:
                rows["training"].append(
                    {"model": key, "variant": variant, "error": repr(error)}
                )
        del models
        keras.backend.clear_session()
    return rows


def static_worker(args):
    """Size rows: parameters and MACs of every model and variant."""
    import keras

    from keras_groupnl.analysis import count_macs

    rows = {"size": []}
    for key in args.models:
        for variant in MODELS[key][2]:
            progress(f"size: {key} {variant}")
            model = build(key, variant, args)
            rows["size"].append(
                {
                    "model": key,
                    "variant": variant,
                    "input": list(model.inputs[0].shape[1:]),
                    "params": int(model.count_params()),
                    "trainable": trainable_count(model),
                    "macs": count_macs(model),
                }
            )
            del model
            keras.backend.clear_session()
    return rows


# ---------------------------------------------------------------------------
# Parent side.


def add_ratios(rows, fields):
    """Adds `<field>_ratio` (to the plain variant of the same model)."""
    plain = {r["model"]: r for r in rows if r["variant"] == "plain"}
    return tables.add_ratios(rows, fields, lambda r: plain.get(r["model"]))


def _name(r):
    return MODELS[r["model"]][0]


def print_size(rows):
    print("\n### Size\n")
    body = [
        [
            _name(r),
            "x".join(str(d) for d in r["input"]),
            r["variant"],
            f"{r['params']:,}",
            f"{r['trainable']:,}",
            tables.ratio(r["trainable_ratio"]),
            f"{r['macs']:,}",
            tables.ratio(r["macs_ratio"]),
        ]
        for r in rows
    ]
    headers = [
        "model",
        "input",
        "variant",
        "params (total)",
        "trainable",
        "ratio",
        "MACs / image",
        "ratio",
    ]
    print(tables.markdown(headers, body, align="lll" + "r" * 5))
    print(
        "\nRatios: trainable parameters and MACs against the plain model. "
        "Total parameters include BatchNormalization statistics and the "
        "frozen NLF values. MACs (keras_groupnl.analysis.count_macs): conv "
        "and dense layers, GroupNL layers by their seed conv."
    )


def print_timing(title, rows, unit):
    print(f"\n### {title}\n")
    body = [
        [_name(r), r["variant"], f"failed: {r['error'][:80]}", ""]
        if "error" in r
        else [
            _name(r),
            r["variant"],
            f"{r['ms']:.2f}",
            tables.ratio(r["ms_ratio"]),
        ]
        for r in rows
    ]
    print(
        tables.markdown(
            ["model", "variant", f"ms / {unit}", "ratio to plain"], body
        )
    )


def positive(kind):
    def parse(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text}")
        return value

    return parse


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=list(MODELS),
        choices=list(MODELS),
        help="models to compare (default: all)",
    )
    parser.add_argument(
        "--backends",
        nargs="*",
        default=list(DEFAULT_RUNS),
        choices=list(RUNS),
        help="timing runs (default: tensorflow jax torch; tensorflow-xla "
        "adds jit_compile=True on TensorFlow; `--backends` with no value: "
        "size and TFLite only)",
    )
    parser.add_argument(
        "--image-size",
        type=positive(int),
        default=64,
        help="input side of ResNet-18 and MobileNetV3-Small (default 64; "
        "ResNet-8 is always 32)",
    )
    parser.add_argument(
        "--batch",
        type=positive(int),
        default=16,
        help="inference batch (default 16)",
    )
    parser.add_argument(
        "--train-batch",
        type=positive(int),
        default=16,
        help="training batch (default 16)",
    )
    parser.add_argument(
        "--rounds",
        type=positive(int),
        default=5,
        help="interleaved timing rounds, median reported (default 5)",
    )
    parser.add_argument(
        "--warmup",
        type=positive(int),
        default=2,
        help="untimed calls / steps after compiling (default 2)",
    )
    parser.add_argument(
        "--min-seconds",
        type=float,
        default=0.3,
        help="time per round and variant; calls that take "
        "longer are timed once (default 0.3)",
    )
    parser.add_argument("--json", help="also write all rows to this file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    args.models = list(dict.fromkeys(args.models))
    args.backends = list(dict.fromkeys(args.backends))

    if args.worker:
        if args.worker == "static":
            rows = static_worker(args)
        else:
            rows = timing_worker(args.worker, args)
        report_rows(rows)
        return 0

    started = time.perf_counter()
    settings = {
        "models": args.models,
        "input_sizes": {k: image_size(k, args) for k in args.models},
        "classes": CLASSES,
        "groupnl": "reduction_ratio=2, num_groups=4, seed=0",
        "backends": args.backends,
        "batch": args.batch,
        "train_batch": args.train_batch,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "min_seconds": args.min_seconds,
        "machine": tables.machine().to_dict(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    sizes = ", ".join(
        f"{MODELS[k][0]} {s}x{s}x3" for k, s in settings["input_sizes"].items()
    )
    backends = ", ".join(args.backends) or "none"
    print(
        f"Settings: {sizes}; {CLASSES} classes; GroupNL "
        f"{settings['groupnl']}.\nTimings: backends {backends}; "
        f"inference batch {args.batch}, training batch {args.train_batch}; "
        f"median of {args.rounds} interleaved rounds of >= "
        f"{args.min_seconds} s (or one call), after {args.warmup} warm-up "
        f"calls.\n{tables.machine_caption(tables.machine())}, "
        f"{settings['platform']}, Python {settings['python']}.",
        flush=True,
    )

    worker_args = ["--models", *args.models]
    for option in (
        "image_size",
        "batch",
        "train_batch",
        "rounds",
        "warmup",
        "min_seconds",
    ):
        worker_args += [
            f"--{option.replace('_', '-')}",
            str(getattr(args, option)),
        ]
    results = {"settings": settings, "inference": {}, "training": {}}
    print("running size (tensorflow backend) ...", flush=True)
    static = run_worker(__file__, "static", "tensorflow", worker_args)
    results["size"] = add_ratios(
        static["size"], ("params", "trainable", "macs")
    )
    for run in args.backends:
        print(f"timing {run} ...", flush=True)
        rows = run_worker(__file__, run, RUNS[run][0], worker_args)
        results["inference"][run] = add_ratios(rows["inference"], ("ms",))
        results["training"][run] = add_ratios(rows["training"], ("ms",))
    results["wall_seconds"] = time.perf_counter() - started

    print_size(results["size"])
    for run, rows in results["inference"].items():
        print_timing(
            f"Inference, {run} ({RUNS[run][1]}), batch {args.batch}",
            rows,
            "batch",
        )
    for run, rows in results["training"].items():
        jit = {r.get("jit_compile") for r in rows if "error" not in r}
        jit_text = ", ".join(f"jit_compile={j}" for j in sorted(jit, key=str))
        print_timing(
            f"Training step (train_on_batch, Adam), {run}, batch "
            f"{args.train_batch}{', ' + jit_text if jit_text else ''}",
            rows,
            "step",
        )
    print(f"\nTotal {results['wall_seconds'] / 60:.1f} min.")
    if args.json:
        write_json(args.json, results)
        print(f"Wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
