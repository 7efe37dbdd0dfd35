"""GroupNL against other cheap convolutions, layer by layer, equal outputs.

At the shapes of the four ResNet stages (56x56x64, 28x28x128, 14x14x256,
7x7x512; batch 8), every layer maps C input channels to C output channels
with a 3x3 receptive field, stride 1 and 'same' padding, without bias:

- `conv2d`: `keras.layers.Conv2D(C, 3)`, the baseline.
- `groupnl_r2`, `groupnl_r4`: `GroupNLConv2D(C, 3, reduction_ratio=r)`
  (seed conv of ceil(C / r) maps, the rest made by fixed sinusoids;
  `num_groups=4`, seed 0).
- `ghost_r2`, `ghost_r4`: the Ghost module of GhostNet (Han et al., "GhostNet:
  More Features from Cheap Operations", CVPR 2020), implemented below from
  the paper's description for this comparison only: a primary 3x3 `Conv2D`
  makes m = ceil(C / r) intrinsic maps, a cheap d x d depthwise conv
  (d = 3, depth multiplier r - 1) makes the ghost maps from them, and the
  intrinsic and ghost maps are concatenated (and cut to C). The paper's
  BatchNormalization and ReLU after each conv are left out, as they are
  for every other layer here, so the table compares the convolutions alone.
  The primary conv uses the 3x3 kernel of the conv it replaces, as the
  GroupNL seed conv does (GhostNet's own bottlenecks use a 1x1 primary
  conv; the paper's ResNet/VGG experiments replace kxk convs by Ghost
  modules with kxk primary convs).
- `dw_separable`: `DepthwiseConv2D(3)` followed by a 1x1 `Conv2D(C)`.

For every layer the script prints its parameters (total: GroupNL's include
its 2 * num_groups * copies frozen sinusoid constants), its MACs per batch
element (`keras_groupnl.analysis.count_macs`: the sinusoids, the L2
normalisation and the concatenations are elementwise work, not MACs), and
its inference time per batch (median of interleaved rounds), each with its
ratio to `conv2d` at the same shape.

The TensorFlow backend in graph mode (`tf.function`) is the default; other
runs each get a worker process (the Keras backend is fixed per process):

    python benchmarks/cheap_conv_comparison.py                  # TF graph
    python benchmarks/cheap_conv_comparison.py --xla            # + TF with XLA
    python benchmarks/cheap_conv_comparison.py --backends tensorflow jax torch
    python benchmarks/cheap_conv_comparison.py --shapes 56 --rounds 2
    python benchmarks/cheap_conv_comparison.py --json runs/cheap_conv.json

Compiled functions per run: TensorFlow `tf.function` (graph mode) with and
without XLA (`jit_compile`), JAX `jax.jit` of `stateless_call`, torch eager
under `torch.no_grad()`.
"""

import argparse
import math
import sys
import time

import tables
from backend_runs import report_progress
from backend_runs import report_rows
from backend_runs import run_worker
from backend_runs import write_json
from timing import RUNS
from timing import compiled_forward
from timing import interleaved_median

SHAPES = {
    56: (56, 56, 64),
    28: (28, 28, 128),
    14: (14, 14, 256),
    7: (7, 7, 512),
}
LAYERS = (
    "conv2d",
    "groupnl_r2",
    "groupnl_r4",
    "ghost_r2",
    "ghost_r4",
    "dw_separable",
)
BASELINE = "conv2d"


def ghost_module(
    inputs, filters, kernel_size=3, ratio=2, dw_size=3, name="ghost"
):
    """The Ghost module of GhostNet (Han et al., CVPR 2020), convs only.

    A primary convolution makes `m = ceil(filters / ratio)` intrinsic
    feature maps; a cheap depthwise convolution (`dw_size` x `dw_size`,
    depth multiplier `ratio - 1`) makes `(ratio - 1) * m` ghost maps from
    them, ghost map `i * (ratio - 1) + j` from intrinsic map `i`; the output
    is the intrinsic maps followed by the ghost maps, cut to `filters`
    channels. Written for this benchmark from the paper's description, with
    Keras layers in the functional graph (so `count_macs` sees both convs).
    The paper follows both convs with BatchNormalization (and ReLU); they
    are left out so that the module compares with a bare `Conv2D`.
    """
    import keras

    if not isinstance(ratio, int) or isinstance(ratio, bool) or ratio < 2:
        raise ValueError(
            f"`ratio` must be an integer >= 2. Received: ratio={ratio!r}"
        )
    intrinsic = keras.layers.Conv2D(
        math.ceil(filters / ratio),
        kernel_size,
        padding="same",
        use_bias=False,
        name=f"{name}_primary",
    )(inputs)
    ghost = keras.layers.DepthwiseConv2D(
        dw_size,
        padding="same",
        depth_multiplier=ratio - 1,
        use_bias=False,
        name=f"{name}_cheap",
    )(intrinsic)
    outputs = keras.layers.Concatenate(name=f"{name}_concat")(
        [intrinsic, ghost]
    )
    if outputs.shape[-1] != filters:
        outputs = outputs[..., :filters]
    return outputs


def make_model(kind, shape, batch):
    import keras

    from keras_groupnl.layers import GroupNLConv2D

    h, w, c = shape
    inputs = keras.Input((h, w, c), batch_size=batch)
    if kind == "conv2d":
        outputs = keras.layers.Conv2D(c, 3, padding="same", use_bias=False)(
            inputs
        )
    elif kind.startswith("groupnl_r"):
        outputs = GroupNLConv2D(
            c, 3, padding="same", reduction_ratio=int(kind[-1]), seed=0
        )(inputs)
    elif kind.startswith("ghost_r"):
        outputs = ghost_module(inputs, c, 3, ratio=int(kind[-1]), dw_size=3)
    elif kind == "dw_separable":
        x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(
            inputs
        )
        outputs = keras.layers.Conv2D(c, 1, padding="same", use_bias=False)(x)
    else:
        raise ValueError(kind)
    return keras.Model(inputs, outputs, name=kind)


def worker(mode, shapes, layers, batch, rounds, min_seconds):
    import keras
    import numpy as np

    from keras_groupnl.analysis import count_macs

    rows = []
    for key in shapes:
        shape = SHAPES[key]
        h, w, c = shape
        report_progress(f"{h}x{w}x{c}")
        x_np = np.random.default_rng(0).random((batch, h, w, c), "float32")
        x = keras.ops.convert_to_tensor(x_np)
        fns, info = {}, {}
        for kind in layers:
            keras.utils.set_random_seed(0)
            model = make_model(kind, shape, batch)
            info[kind] = {
                "params": int(model.count_params()),
                "trainable": int(
                    sum(int(np.prod(v.shape)) for v in model.trainable_weights)
                ),
                "macs": count_macs(model),
            }
            fns[kind] = compiled_forward(model, mode)
            for _ in range(3):
                fns[kind](x)  # compile and warm up
        medians, iters = interleaved_median(
            {kind: (lambda fn=fn: fn(x)) for kind, fn in fns.items()},
            rounds,
            min_seconds,
            min_iters=2,
        )
        for kind in layers:
            rows.append(
                {
                    "shape": f"{h}x{w}x{c}",
                    "layer": kind,
                    **info[kind],
                    "ms": 1000 * medians[kind],
                    "calls_per_round": iters[kind],
                }
            )
    return rows


def add_ratios(rows):
    base = {r["shape"]: r for r in rows if r["layer"] == BASELINE}
    return tables.add_ratios(
        rows, ("params", "macs", "ms"), lambda r: base.get(r["shape"])
    )


def print_table(title, rows):
    print(f"\n### {title}\n")
    body = [
        [
            r["shape"],
            r["layer"],
            f"{r['params']:,}",
            tables.ratio(r["params_ratio"]),
            f"{r['macs']:,}",
            tables.ratio(r["macs_ratio"]),
            f"{r['ms']:.3f}",
            tables.ratio(r["ms_ratio"]),
        ]
        for r in rows
    ]
    headers = [
        "shape",
        "layer",
        "params",
        "ratio",
        "MACs / image",
        "ratio",
        "ms / batch",
        "ratio",
    ]
    print(tables.markdown(headers, body))


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--backends",
        nargs="+",
        default=["tensorflow"],
        choices=list(RUNS),
        help="runs to make (default: tensorflow, graph mode)",
    )
    parser.add_argument(
        "--xla",
        action="store_true",
        help="also time TensorFlow with XLA (same as adding tensorflow-xla "
        "to --backends)",
    )
    parser.add_argument(
        "--shapes",
        nargs="+",
        type=int,
        default=list(SHAPES),
        choices=list(SHAPES),
        help="spatial sizes of the ResNet stages to time (default: all)",
    )
    parser.add_argument(
        "--layers",
        nargs="+",
        default=list(LAYERS),
        choices=list(LAYERS),
        help="layers to compare (default: all; conv2d is always included "
        "as the baseline)",
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--min-seconds", type=float, default=0.3, help="time per sample"
    )
    parser.add_argument("--json", help="also write all rows to this file")
    parser.add_argument("--worker", choices=list(RUNS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.batch <= 0 or args.rounds <= 0:
        parser.error("--batch and --rounds must be positive")
    args.layers = [BASELINE] + [
        k for k in dict.fromkeys(args.layers) if k != BASELINE
    ]
    args.shapes = list(dict.fromkeys(args.shapes))

    if args.worker:
        rows = worker(
            RUNS[args.worker][1],
            args.shapes,
            args.layers,
            args.batch,
            args.rounds,
            args.min_seconds,
        )
        report_rows(rows)
        return 0

    runs = list(dict.fromkeys(args.backends))
    if args.xla and "tensorflow-xla" not in runs:
        runs.append("tensorflow-xla")
    started = time.perf_counter()
    measured_on = tables.machine()
    print(
        f"batch {args.batch}, C -> C channels, 3x3 receptive field, stride 1, "
        f"'same' padding, no bias, float32; median of {args.rounds} "
        f"interleaved rounds of >= {args.min_seconds} s; runs: "
        f"{', '.join(runs)}\n{tables.machine_caption(measured_on)}",
        flush=True,
    )
    results = {}
    for run in runs:
        print(f"timing {run} ...", flush=True)
        worker_args = [
            "--batch",
            str(args.batch),
            "--rounds",
            str(args.rounds),
            "--min-seconds",
            str(args.min_seconds),
            "--shapes",
            *map(str, args.shapes),
            "--layers",
            *args.layers,
        ]
        rows = run_worker(__file__, run, RUNS[run][0], worker_args)
        results[run] = add_ratios(rows)

    for run, rows in results.items():
        print_table(f"{run} ({RUNS[run][1]})", rows)
    print(
        "\nRatios are to conv2d at the same shape. Params: total (GroupNL's "
        "include its frozen sinusoid constants). MACs: output pixels x conv "
        "kernel sizes per image; the GroupNL sinusoids and normalisation "
        "and all concatenations are elementwise and not counted. ghost_rN: "
        "the Ghost module (GhostNet, Han et al. 2020) with a 3x3 primary "
        "conv making C/N maps and a 3x3 depthwise cheap conv making the "
        "rest, BatchNormalization/ReLU omitted (defined in this script for "
        "the comparison). dw_separable: 3x3 depthwise + 1x1 conv."
    )
    if args.json:
        write_json(
            args.json,
            {
                "settings": {
                    "batch": args.batch,
                    "rounds": args.rounds,
                    "min_seconds": args.min_seconds,
                    "shapes": [SHAPES[s] for s in args.shapes],
                    "layers": args.layers,
                    "runs": runs,
                    "machine": measured_on.to_dict(),
                },
                "results": results,
                "wall_seconds": time.perf_counter() - started,
            },
        )
        print(f"Wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
