"""The end-to-end run: GroupNL against plain convs on Fashion-MNIST.

1. Loads Fashion-MNIST (Debian's `dataset-fashion-mnist` package, else the
   Keras dataset cache, else a download).
2. Trains `GroupNLResNet8` and its plain-conv counterpart (same builder, same
   recipe, same seed).
3. Evaluates both on the clean test set and on corrupted copies (9
   ImageNet-C style corruptions x 5 severities).
4. Converts the GroupNL model to int8 TFLite for phones (LiteRT) and
   microcontrollers (TFLite Micro) and evaluates both int8 models on the test
   set in those interpreters. The phone file carries Android metadata (the
   class names, an RGB -> gray input stage) and is run in Android's clients
   (LiteRT CompiledModel, MediaPipe Tasks ImageClassifier).
5. Writes `report.md`, `report.json` and plots (PNG) to `--out`.

    python examples/fashion_mnist_end_to_end.py            # ~15 min on 2 cores
    python examples/fashion_mnist_end_to_end.py --full     # all data, 15 epochs
"""

import argparse
import json
import os
import platform
import sys
import time

import keras
import numpy as np

from keras_groupnl import applications
from keras_groupnl import converters
from keras_groupnl.analysis import count_macs
from keras_groupnl.analysis import describe_machine
from keras_groupnl.datasets import CLASS_NAMES
from keras_groupnl.datasets import load_fashion_mnist
from keras_groupnl.robustness import CORRUPTIONS
from keras_groupnl.robustness import SEVERITIES
from keras_groupnl.robustness import corruption_accuracy

MODELS = ("plain", "groupnl")
# int8 calibration: min/max ranges need enough samples to see the tails of
# the activations. On this model 500 images cost the phone target 1.1
# points of accuracy against float, 2,000 images 0.5 (measured once each).
CALIBRATION_SAMPLES = 2000


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        default="runs/fashion_mnist",
        help="output directory (default: runs/fashion_mnist)",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="all 60 000 training images, 15 epochs, the "
        "whole test set for every corruption",
    )
    parser.add_argument(
        "--train-size",
        type=int,
        default=None,
        help="training images (default 20 000; --full 60 000)",
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="epochs (default 3; --full 15)"
    )
    parser.add_argument(
        "--corrupted-test-size",
        type=int,
        default=None,
        help="test images per corruption and severity "
        "(default 2 000; --full 10 000)",
    )
    parser.add_argument(
        "--test-size",
        type=int,
        default=None,
        help="test images for the clean and int8 accuracy "
        "(default: all 10 000; fewer for a quick smoke run)",
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--reduction-ratio", type=int, default=2)
    parser.add_argument(
        "--conv-type",
        choices=("dense", "sparse"),
        default="dense",
        help="GroupNL variant (default dense)",
    )
    parser.add_argument(
        "--mcu-kernel",
        choices=("fused", "fused_channel_tables", "builtin"),
        default="fused",
        help="the microcontroller model's GroupNL tails (default fused: "
        "one custom op per layer, its C kernel written beside the model; "
        "builtin: TFLite Micro's own ops)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.train_size is None:
        args.train_size = 60000 if args.full else 20000
    if args.epochs is None:
        args.epochs = 15 if args.full else 3
    if args.corrupted_test_size is None:
        args.corrupted_test_size = 10000 if args.full else 2000
    for name in (
        "train_size",
        "epochs",
        "corrupted_test_size",
        "batch_size",
        "test_size",
    ):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


def preprocess(images):
    """uint8 (N, 28, 28[, 1]) -> float32 (N, 28, 28, 1) in [0, 1]."""
    x = np.asarray(images, dtype="float32") / 255.0
    return x.reshape(x.shape[:3] + (1,))


def build(kind, args):
    conv_type = "plain" if kind == "plain" else args.conv_type
    return applications.GroupNLResNet8(
        input_shape=(28, 28, 1),
        classes=10,
        classifier_activation=None,
        conv_type=conv_type,
        reduction_ratio=args.reduction_ratio,
        seed=args.seed,
        name=f"{kind}_resnet8",
    )


def train(kind, x, y, args):
    keras.utils.set_random_seed(args.seed)
    model = build(kind, args)
    steps = args.epochs * -(-len(x) // args.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(
        args.learning_rate, decay_steps=steps
    )
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    print(
        f"\n== training {model.name}: {model.count_params():,} parameters, "
        f"{args.epochs} epochs on {len(x):,} images"
    )
    start = time.perf_counter()
    model.fit(
        x,
        y,
        batch_size=args.batch_size,
        epochs=args.epochs,
        shuffle=True,
        verbose=1,
    )
    return model, time.perf_counter() - start


def write_atomically(path, data):
    mode = "wb" if isinstance(data, bytes) else "w"
    tmp = f"{path}.tmp"
    with open(tmp, mode) as f:
        f.write(data)
    os.replace(tmp, path)


def plot(results, out_dir):
    """Accuracy against severity: the mean over corruptions, and each one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    robustness = results["robustness"]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for kind in MODELS:
        r = robustness[kind]
        means = [
            np.mean([r["corrupted"][n][s] for n in r["corrupted"]])
            for s in SEVERITIES
        ]
        ax.plot(
            [0, *SEVERITIES],
            [r["clean"], *means],
            marker="o",
            label=results["models"][kind]["name"],
        )
    ax.set_xlabel("severity (0 = clean)")
    ax.set_ylabel("top-1 accuracy")
    ax.set_title("Fashion-MNIST, mean over 9 corruptions")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    paths.append(_save(fig, out_dir, "accuracy_vs_severity.png"))

    fig, axes = plt.subplots(3, 3, figsize=(10, 8), sharex=True, sharey=True)
    for ax, name in zip(axes.flat, CORRUPTIONS):
        for kind in MODELS:
            r = robustness[kind]
            ax.plot(
                [0, *SEVERITIES],
                [r["clean"], *[r["corrupted"][name][s] for s in SEVERITIES]],
                marker=".",
                label=results["models"][kind]["name"],
            )
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.supxlabel("severity (0 = clean)")
    fig.supylabel("top-1 accuracy")
    fig.tight_layout()
    paths.append(_save(fig, out_dir, "accuracy_per_corruption.png"))
    plt.close("all")
    return paths


def _save(fig, out_dir, filename):
    path = os.path.join(out_dir, filename)
    tmp = os.path.join(out_dir, f".{filename}.tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    return path


_STUDY_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "docs",
    "accuracy_study",
)
# The current study first; the first round (20 epochs, also dense r = 4,
# sparse r = 2) for the variants the current one does not train, and
# while the current one has fewer paired seeds than it.
STUDY_RESULTS = (
    os.path.join(_STUDY_DIR, "results.json"),
    os.path.join(_STUDY_DIR, "round1", "results.json"),
)


def converged_figures(args, paths=STUDY_RESULTS):
    """The accuracy study's converged figures for this run's GroupNL model.

    Reads the committed results of `benchmarks/accuracy_study.py` (several
    seeds, augmented, trained to convergence), the first of `paths` that
    has this variant paired with plain, and returns the plain model's and
    this variant's figures, the paired differences, and which of the
    method's claims hold; `None` when no study result is there.
    """
    found = [_study_figures(args, path) for path in paths]
    found = [figures for figures in found if figures is not None]
    # The most paired seeds; the earlier path among equals.
    return max(found, key=lambda f: len(f["seeds"]), default=None)


def _study_figures(args, path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        study = json.load(f)
    variant = f"{args.conv_type}_r{args.reduction_ratio}"
    table = study["variants"]
    if "plain" not in table or variant not in table:
        return None
    vs = table[variant].get("vs_plain")
    if not vs:
        return None
    clean, corrupted = vs["clean"], vs["mean_corrupted"]
    return {
        "command": study["command"],
        "variant": variant,
        "seeds": vs["seeds"],
        "epochs": table[variant]["epochs"],
        "plain": table["plain"],
        "groupnl": table[variant],
        "clean_difference": clean,
        "corrupted_difference": corrupted,
        # The claims, on the mean paired difference over seeds; one seed
        # judges nothing (None).
        "clean_within_half_point": (
            clean["mean"] >= -0.005 if len(vs["seeds"]) > 1 else None
        ),
        "corrupted_plus_one_point": (
            corrupted["mean"] >= 0.01 if len(vs["seeds"]) > 1 else None
        ),
    }


def converged_markdown(study):
    """The study's figures as report lines, beside this short run's."""
    if study is None:
        return [
            "No accuracy study results found (docs/accuracy_study/"
            "results.json): run `python benchmarks/accuracy_study.py`.",
        ]

    def pm(s):
        if s["std"] is None:
            return f"{100 * s['mean']:.2f}"
        return f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f}"

    def diff(d):
        text = f"{100 * d['mean']:+.2f}"
        if d.get("ci95"):
            low, high = d["ci95"]
            text += f" [{100 * low:+.2f}, {100 * high:+.2f}]"
        return text

    holds = {
        True: "holds",
        False: "**does not hold**",
        None: "not judged on one seed",
    }
    g, p = study["groupnl"], study["plain"]
    seeds = len(study["seeds"])
    interval = ", 95 % interval" if seeds > 1 else ""
    return [
        f"Converged figures ({seeds} seed{'s' if seeds > 1 else ''}, "
        f"{study['epochs']} epochs, augmented; `{study['command']}`, "
        "committed in docs/accuracy_study/):",
        "",
        "| model | clean (%) | mean corrupted (%) |",
        "|---|---:|---:|",
        f"| plain ResNet-8 | {pm(p['clean'])} | {pm(p['mean_corrupted'])} |",
        f"| GroupNL {study['variant']} | {pm(g['clean'])} "
        f"| {pm(g['mean_corrupted'])} |",
        "",
        f"Paired difference GroupNL - plain (points{interval}): clean "
        f"{diff(study['clean_difference'])}, mean corrupted "
        f"{diff(study['corrupted_difference'])}.",
        "",
        "- Claim 'GroupNL within 0.5 point of plain on clean data': "
        f"{holds[study['clean_within_half_point']]}.",
        "- Claim 'at least +1 point on mean corrupted accuracy': "
        f"{holds[study['corrupted_plus_one_point']]}.",
    ]


def int8_summary(report):
    """What the run report keeps of a conversion report."""
    (runtime,) = report.verification
    verification = report.verification[runtime]
    comparison = report.comparison
    summary = {
        "runtime": runtime,
        "size_bytes": report.sizes["file"],
        "float_ops": report.float_ops,
        "accuracy": verification.accuracy,
        "top1_agreement": verification.top1_agreement,
        "plain_size_bytes": comparison.sizes["file"],
        "size_ratio": comparison.ratios["file"],
    }
    # Host latency where the runtime was timed (not for a fused "mcu"
    # model, whose GroupNL ops run as NumPy on the host).
    if runtime in report.latency:
        summary["latency_ms"] = report.latency[runtime].median_ms
        summary["plain_latency_ms"] = comparison.latency[runtime].median_ms
        summary["latency_ratio"] = comparison.ratios[f"latency_{runtime}"]
    if report.cortex_m is not None:
        summary["cortex_m_ratios"] = {
            name: comparison.ratios[f"cortex_m:{name}"]
            for name in report.cortex_m
        }
    if report.arena is not None:
        summary["arena_bytes"] = report.arena.arena_bytes
        summary["plain_arena_bytes"] = comparison.arena.arena_bytes
        summary["arena_ratio"] = comparison.ratios["arena"]
        summary["ops"] = report.resolver_ops
    if report.delegation is not None:
        summary["xnnpack_partitions"] = report.delegation.partitions
    if report.android is not None:
        summary["android_input_stage"] = report.android.input_stage
        summary["android_clients"] = {
            c.client: {
                "accepted": c.accepted,
                "top1_agreement": c.top1_agreement,
                "images": c.images,
                "message": c.message,
            }
            for c in report.android.clients
        }
    return summary


def _android_lines(phone):
    """Which Android clients ran the phone file."""
    lines = [
        "",
        "Android clients of the phone file (same images as LiteRT's "
        "Interpreter):",
        "",
    ]
    for client, c in phone.get("android_clients", {}).items():
        if c["accepted"]:
            state = (
                f"accepted; top-1 equals the Interpreter's on "
                f"{c['top1_agreement']:.0%} of {c['images']} images "
                f"({c['message']})"
            )
        elif c["accepted"] is None:
            state = c["message"]
        else:
            state = f"refused: {c['message']}"
        lines.append(f"- {client}: {state}")
    return lines


def markdown(results):
    m, rob, conv = results["models"], results["robustness"], results["int8"]
    plain, groupnl = m["plain"], m["groupnl"]
    lines = [
        "# keras-groupnl end-to-end run: Fashion-MNIST",
        "",
        f"Command: `{results['command']}`  ",
        f"Machine: {results['machine']}  ",
        f"Versions: {results['versions']}  ",
        f"Recipe: {results['recipe']}",
        "",
        "## Models",
        "",
        "| model | parameters | MACs / image | training time (s) |",
        "|---|---:|---:|---:|",
    ]
    for kind in MODELS:
        r = m[kind]
        lines.append(
            f"| {r['name']} | {r['params']:,} | {r['macs']:,} | "
            f"{r['train_seconds']:.0f} |"
        )
    lines += [
        "",
        "GroupNL / plain: parameters "
        f"{groupnl['params'] / plain['params']:.2f}x, "
        f"MACs {groupnl['macs'] / plain['macs']:.2f}x.",
        "",
        "## Accuracy and robustness",
        "",
        f"Clean accuracy: {results['int8_test_size']:,} test images. "
        f"Corrupted accuracy: {results['corrupted_test_size']:,} test images "
        "per corruption and severity, 9 corruptions x 5 severities, seed "
        f"{results['seed']}.",
        "",
        "| model | clean | mean corrupted |",
        "|---|---:|---:|",
    ]
    for kind in MODELS:
        r = rob[kind]
        lines.append(
            f"| {m[kind]['name']} | {r['clean']:.4f} | "
            f"{r['mean_corrupted']:.4f} |"
        )
    d_clean = 100 * (rob["groupnl"]["clean"] - rob["plain"]["clean"])
    d_corr = 100 * (
        rob["groupnl"]["mean_corrupted"] - rob["plain"]["mean_corrupted"]
    )
    lines += [
        "",
        f"GroupNL minus plain in this run: clean {d_clean:+.2f} points, mean "
        f"corrupted {d_corr:+.2f} points. This run's recipe is not "
        "converged (one seed, few epochs, no augmentation): it measures a "
        "short training, not the method.",
        "",
        *converged_markdown(results.get("converged_study")),
        "",
        "| corruption | "
        + " | ".join(m[k]["name"] for k in MODELS)
        + " | difference (points) |",
        "|---|---:|---:|---:|",
    ]
    for name in CORRUPTIONS:
        a = rob["plain"]["per_corruption"][name]
        b = rob["groupnl"]["per_corruption"][name]
        lines.append(f"| {name} | {a:.4f} | {b:.4f} | {100 * (b - a):+.2f} |")
    lines += [
        "",
        "![accuracy against severity](accuracy_vs_severity.png)",
        "",
        "![accuracy per corruption](accuracy_per_corruption.png)",
        "",
        "## int8 TFLite (GroupNL model)",
        "",
        f"Evaluated on the {results['int8_test_size']:,} test images; "
        f"calibrated on {results['calibration_samples']:,} training images.",
        "",
        "| target | interpreter | int8 accuracy | float accuracy "
        "| top-1 agreement | size (bytes) | size vs plain int8 "
        "| latency (ms) | latency vs plain int8 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for target, r in conv.items():
        lines.append(
            f"| {target} | {r['runtime']} | {r['accuracy']:.4f} "
            f"| {rob['groupnl']['clean']:.4f} | {r['top1_agreement']:.4f} "
            f"| {r['size_bytes']:,} | {r['size_ratio']:.2f}x "
            + (
                f"| {r['latency_ms']:.3f} | {r['latency_ratio']:.2f}x |"
                if "latency_ms" in r
                else "| not timed | not timed |"
            )
        )
    if "mcu" in conv:
        mcu = conv["mcu"]
        lines += [
            "",
            f"TFLite Micro tensor arena: {mcu['arena_bytes']:,} bytes "
            f"({mcu['arena_ratio']:.2f}x the plain model's "
            f"{mcu['plain_arena_bytes']:,}); ops to register: "
            f"{', '.join(mcu['ops'])}. A fused model's GroupNL ops run as "
            "NumPy on the host, so it is not timed there (and host TFLM "
            "latency, reference kernels, misleads anyway). Estimated "
            "instructions per inference against the plain int8 model "
            "(the report's Cortex-M cost model): "
            + ", ".join(
                f"{name} {ratio:.2f}x"
                for name, ratio in mcu["cortex_m_ratios"].items()
            )
            + ".",
        ]
    if "phone" in conv:
        lines += [
            "",
            "XNNPACK partitions (phone): "
            f"{conv['phone']['xnnpack_partitions']}.",
        ]
        lines += _android_lines(conv["phone"])
    lines.append("")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    started = time.perf_counter()
    print(f"Keras {keras.__version__}, backend {keras.backend.backend()}")
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
    rng = np.random.default_rng(args.seed)
    train_idx = np.sort(rng.permutation(len(x_train))[: args.train_size])
    x_tr, y_tr = preprocess(x_train[train_idx]), y_train[train_idx]
    if args.test_size is not None and args.test_size < len(x_test):
        # Its own generator: the default run's draws stay as they were.
        test_rng = np.random.default_rng(args.seed + 1)
        keep = np.sort(test_rng.permutation(len(x_test))[: args.test_size])
        x_test, y_test = x_test[keep], y_test[keep]
    x_te = preprocess(x_test)
    print(
        f"Fashion-MNIST: {len(x_tr):,} training images, "
        f"{len(x_te):,} test images"
    )

    models, info = {}, {}
    for kind in MODELS:
        model, seconds = train(kind, x_tr, y_tr, args)
        models[kind] = model
        info[kind] = {
            "name": model.name,
            "params": int(model.count_params()),
            "macs": count_macs(model),
            "train_seconds": seconds,
        }

    n = min(args.corrupted_test_size, len(x_test))
    subset = np.sort(rng.permutation(len(x_test))[:n])
    pairs = len(CORRUPTIONS) * len(SEVERITIES)
    print(
        f"\n== evaluating on clean and corrupted test images "
        f"({pairs} corruption/severity pairs x {n:,} images)"
    )
    bar = keras.utils.Progbar(pairs, unit_name="pair")
    robustness = corruption_accuracy(
        {
            kind: (lambda x, m=model: m.predict(x, batch_size=512, verbose=0))
            for kind, model in models.items()
        },
        x_test[subset][..., None],
        y_test[subset],
        seed=args.seed,
        preprocess=preprocess,
        progress=lambda: bar.add(1),
    )
    for kind, model in models.items():
        # The clean figure on the whole (--test-size) test set, not the
        # corrupted subset.
        _, acc = model.evaluate(x_te, y_test, batch_size=512, verbose=0)
        robustness[kind]["clean"] = float(acc)

    print("\n== converting the GroupNL model to int8 TFLite")
    count = min(CALIBRATION_SAMPLES, len(x_tr))
    calibration = x_tr[np.linspace(0, len(x_tr) - 1, count).astype(int)]
    int8 = {}
    for target in ("phone", "mcu"):
        # The phone file names the classes for Android's clients.
        options = (
            {"class_names": CLASS_NAMES}
            if target == "phone"
            else {"mcu_kernel": args.mcu_kernel}
        )
        result = converters.convert(
            models["groupnl"],
            target,
            calibration,
            os.path.join(args.out, target),
            verification_data=(x_te, y_test),
            compare_with=models["plain"],
            name="groupnl_resnet8",
            calibration_samples=count,
            **options,
        )
        print(result.summary())
        int8[target] = int8_summary(result.report)
        int8[target]["tflite"] = result.tflite_path

    results = {
        "command": "python examples/fashion_mnist_end_to_end.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        # The CPU the latencies and training times come from.
        "machine": describe_machine(tensorflow=True).label()
        + f", {platform.platform()}",
        "versions": f"Python {platform.python_version()}, Keras "
        f"{keras.__version__} ({keras.backend.backend()} backend), "
        f"NumPy {np.__version__}",
        "recipe": f"Adam, cosine decay from {args.learning_rate}, batch "
        f"{args.batch_size}, {args.epochs} epochs on {len(x_tr):,} training "
        f"images, seed {args.seed}, no augmentation; GroupNL "
        f"{args.conv_type}, r = {args.reduction_ratio}",
        "seed": args.seed,
        "corrupted_test_size": int(n),
        "int8_test_size": int(len(x_te)),
        "models": info,
        "robustness": robustness,
        "converged_study": converged_figures(args),
        "calibration_samples": int(count),
        "int8": int8,
    }
    plots = plot(results, args.out)
    results["plots"] = plots
    results["wall_seconds"] = time.perf_counter() - started
    write_atomically(
        os.path.join(args.out, "report.json"),
        json.dumps(results, indent=2, default=float),
    )
    text = markdown(results)
    write_atomically(os.path.join(args.out, "report.md"), text)
    print("\n" + text)
    print(
        f"Report: {os.path.join(args.out, 'report.md')} "
        f"({results['wall_seconds'] / 60:.1f} min)"
    )
    return results


if __name__ == "__main__":
    main()
