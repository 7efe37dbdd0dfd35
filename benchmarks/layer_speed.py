"""Inference time of GroupNL layers against the convolutions they replace.

Times, per backend, `Conv2D`, `GroupNLConv2D` (r = 2 and 4),
`DepthwiseConv2D` and `SparseGroupNLConv2D` (r = 2) at the shapes of the four
ResNet stages, measured side by side in one process (rounds interleave the
layers, the median round is reported), and prints each one's time and its
ratio to the layer it replaces: dense GroupNL against `Conv2D`, sparse
GroupNL against `DepthwiseConv2D`.

Two more rows per shape show where the time goes in a dense r = 4 layer:
`seed_conv_r4`, its seed conv alone (a `Conv2D` with `filters / 4`
filters), and `floor_r4`, one model that runs that seed conv, one `sin`
over a tensor the size of the generated maps, and the concatenation of the
two into the output. Every GroupNL implementation does at least these three
things; where each op runs as its own kernel (TF graph mode, torch eager),
none can be faster than `floor_r4`. Under XLA the `sin` and the
concatenation can fuse with the ops around them.

With `--channels-first`, two more rows per shape time GroupNL r = 2 and
r = 4 with `data_format="channels_first"` against the same layer channels
last: on TensorFlow without oneDNN (an AVX2-only CPU, or
`TF_ENABLE_ONEDNN_OPTS=0`) that layer transposes around its seed conv, and
the ratio is what the transposes cost.

The Keras backend is fixed per process, so the script runs one worker
process per backend and prints all tables at the end:

    python benchmarks/layer_speed.py                  # TF, TF+XLA, JAX, torch
    python benchmarks/layer_speed.py --backends tensorflow --shapes 56

Compiled functions per backend: TensorFlow `tf.function` (graph mode) with
and without XLA (`jit_compile`), JAX `jax.jit` (always XLA), torch eager under
`torch.no_grad()`.
"""

import argparse
import sys

import tables
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
    "seed_conv_r4",
    "floor_r4",
    "depthwise",
    "sparse_groupnl_r2",
)
CHANNELS_FIRST = ("groupnl_r2_channels_first", "groupnl_r4_channels_first")
BASELINE = {
    "groupnl_r2_channels_first": "groupnl_r2",
    "groupnl_r4_channels_first": "groupnl_r4",
    "conv2d": None,
    "groupnl_r2": "conv2d",
    "groupnl_r4": "conv2d",
    "seed_conv_r4": "conv2d",
    "floor_r4": "conv2d",
    "depthwise": None,
    "sparse_groupnl_r2": "depthwise",
}


def make_model(kind, height, width, channels, batch):
    """The timed model of `kind` and the shapes of its inputs."""
    import keras

    from keras_groupnl.layers import GroupNLConv2D
    from keras_groupnl.layers import SparseGroupNLConv2D

    shape = (batch, height, width, channels)
    if kind in CHANNELS_FIRST:
        shape = (batch, channels, height, width)
        layer = GroupNLConv2D(
            channels,
            3,
            padding="same",
            reduction_ratio=int(kind[len("groupnl_r")]),
            data_format="channels_first",
            seed=0,
        )
        inputs = keras.Input(shape[1:], batch_size=batch)
        return keras.Model(inputs, layer(inputs)), [shape]
    inputs = keras.Input(shape[1:], batch_size=batch)
    if kind == "conv2d":
        layer = keras.layers.Conv2D(channels, 3, padding="same", use_bias=False)
    elif kind == "depthwise":
        layer = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)
    elif kind == "sparse_groupnl_r2":
        layer = SparseGroupNLConv2D(channels, 3, padding="same", seed=0)
    elif kind.startswith("groupnl_r"):
        layer = GroupNLConv2D(
            channels, 3, padding="same", reduction_ratio=int(kind[-1]), seed=0
        )
    elif kind == "seed_conv_r4":
        layer = keras.layers.Conv2D(
            -(-channels // 4), 3, padding="same", use_bias=False
        )
    elif kind == "floor_r4":
        seeds = -(-channels // 4)
        generated_shape = shape[:3] + (channels - seeds,)
        generated = keras.Input(generated_shape[1:], batch_size=batch)
        seed_maps = keras.layers.Conv2D(
            seeds, 3, padding="same", use_bias=False
        )(inputs)
        outputs = keras.layers.Concatenate()(
            [seed_maps, keras.layers.Activation(keras.ops.sin)(generated)]
        )
        model = keras.Model([inputs, generated], outputs)
        return model, [shape, generated_shape]
    else:
        raise ValueError(f"Unknown layer kind: {kind!r}")
    return keras.Model(inputs, layer(inputs)), [shape]


def worker(mode, shapes, batch, rounds, min_seconds, kinds=LAYERS):
    import keras
    import numpy as np

    rows = []
    for key in shapes:
        h, w, c = SHAPES[key]
        rng = np.random.default_rng(0)
        fns, inputs = {}, {}
        for kind in kinds:
            model, shapes_in = make_model(kind, h, w, c, batch)
            x = [
                keras.ops.convert_to_tensor(rng.random(s, "float32"))
                for s in shapes_in
            ]
            inputs[kind] = x[0] if len(x) == 1 else x
            fns[kind] = compiled_forward(model, mode)
            for _ in range(3):
                fns[kind](inputs[kind])  # compile and warm up
        medians, _ = interleaved_median(
            {
                kind: (lambda fn=fn, x=inputs[kind]: fn(x))
                for kind, fn in fns.items()
            },
            rounds,
            min_seconds,
            min_iters=2,
        )
        for kind in kinds:
            rows.append(
                {
                    "shape": f"{h}x{w}x{c}",
                    "layer": kind,
                    "ms": 1000 * medians[kind],
                }
            )
    return rows


def add_ratios(rows):
    by_key = {(r["shape"], r["layer"]): r["ms"] for r in rows}
    for r in rows:
        base = BASELINE[r["layer"]]
        r["ratio"] = r["ms"] / by_key[(r["shape"], base)] if base else None
        r["vs"] = base or ""
    return rows


def print_table(title, rows):
    print(f"\n### {title}\n")
    body = [
        [
            r["shape"],
            r["layer"],
            f"{r['ms']:.2f}",
            "1.00x" if r["ratio"] is None else tables.ratio(r["ratio"]),
            r["vs"] or "(baseline)",
        ]
        for r in rows
    ]
    headers = ["shape", "layer", "ms / batch", "ratio", "vs"]
    print(tables.markdown(headers, body, align="llrrl"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backends",
        nargs="+",
        default=list(RUNS),
        choices=list(RUNS),
        help="which runs to make (default: all)",
    )
    parser.add_argument(
        "--shapes",
        nargs="+",
        type=int,
        default=list(SHAPES),
        choices=list(SHAPES),
        help="spatial sizes of the ResNet stages to time (default: all)",
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--min-seconds", type=float, default=0.3, help="time per sample"
    )
    parser.add_argument(
        "--channels-first",
        action="store_true",
        help="also time GroupNL channels_first against channels_last",
    )
    parser.add_argument("--json", help="also write all rows to this file")
    parser.add_argument("--worker", choices=list(RUNS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        rows = worker(
            RUNS[args.worker][1],
            args.shapes,
            args.batch,
            args.rounds,
            args.min_seconds,
            LAYERS + (CHANNELS_FIRST if args.channels_first else ()),
        )
        report_rows(rows)
        return 0

    results = {}
    for run in args.backends:
        worker_args = [
            "--batch",
            str(args.batch),
            "--rounds",
            str(args.rounds),
            "--min-seconds",
            str(args.min_seconds),
            "--shapes",
            *map(str, args.shapes),
        ] + (["--channels-first"] if args.channels_first else [])
        print(f"timing {run} ...", flush=True)
        rows = run_worker(__file__, run, RUNS[run][0], worker_args)
        results[run] = add_ratios(rows)

    measured_on = tables.machine()
    print(
        f"\nbatch {args.batch}, 3x3 kernels, 'same' padding, float32, "
        f"median of {args.rounds} interleaved rounds\n"
        + tables.machine_caption(measured_on)
    )
    print(
        "seed_conv_r4: the seed conv of GroupNL r=4 alone; floor_r4: that "
        "seed conv + one sin over the generated maps + the output "
        "concatenation, the least a layer running one kernel per op can take"
    )
    for run, rows in results.items():
        print_table(f"{run} ({RUNS[run][1]})", rows)
    if args.json:
        write_json(args.json, {"machine": measured_on.to_dict(), **results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
