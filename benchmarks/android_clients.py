"""Phone models in Android's clients: what the metadata costs, who runs them.

Converts GroupNL ResNet-8 and its plain twin (fresh weights, random images)
for the phone target with each input type and input normalisation the
converter handles, then prints, per file: its size, the bytes the metadata
and the packed label file add, the input stage the converter put in front,
and what each client said (LiteRT Interpreter, LiteRT CompiledModel,
MediaPipe Tasks ImageClassifier; top-1 against the Interpreter on 32
images), from `report.android`:

    python benchmarks/android_clients.py                  # ~4 min
    python benchmarks/android_clients.py --json runs/android.json
"""

import argparse
import os
import sys
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from backend_runs import write_json  # noqa: E402
from tables import markdown  # noqa: E402

# (title, input shape, preprocessing of [0, 255] pixels, io_dtype).
CASES = [
    ("RGB, x / 255", (32, 32, 3), "unit", "float32"),
    ("RGB, x / 255", (32, 32, 3), "unit", "uint8"),
    ("RGB, x / 255", (32, 32, 3), "unit", "int8"),
    ("RGB, ImageNet mean / std", (32, 32, 3), "imagenet", "float32"),
    ("RGB, ImageNet mean / std", (32, 32, 3), "imagenet", "uint8"),
    ("gray (the demo's shape), x / 255", (28, 28, 1), "unit", "float32"),
    ("gray (the demo's shape), x / 255", (28, 28, 1), "unit", "uint8"),
]
NAMES = [f"class {i}" for i in range(10)]


def _data(shape, preprocessing, count=64):
    import numpy as np

    from keras_groupnl.applications import resnet

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (count,) + shape).astype("float32")
    if preprocessing == "imagenet":
        return resnet.preprocess_input(pixels)
    return pixels / 255.0


def _verdict(client):
    if client.accepted is None:
        return client.message
    if not client.accepted:
        return "refused: " + client.message.split(". ")[0][:80]
    return f"top-1 = Interpreter {client.top1_agreement:.0%}"


def run_case(title, shape, preprocessing, io_dtype, kind, workdir):
    from keras_groupnl import applications
    from keras_groupnl.converters import convert

    model = applications.GroupNLResNet8(
        input_shape=shape, classes=10, conv_type=kind, seed=0
    )
    x = _data(shape, preprocessing)
    out = os.path.join(workdir, f"{kind}_{io_dtype}_{len(os.listdir(workdir))}")
    report = convert(
        model, "phone", x, out, io_dtype=io_dtype, class_names=NAMES, verbose=0
    ).report
    android = report.android
    row = {
        "case": title,
        "model": "GroupNL" if kind == "dense" else "plain",
        "io_dtype": io_dtype,
        "file_bytes": report.sizes["file"],
        "metadata_bytes": android.metadata_bytes,
        "input_stage": "; ".join(_short(s) for s in android.input_stage)
        or "none",
    }
    for client in android.clients:
        row[client.client] = _verdict(client)
    return row


def _short(step):
    """An input stage without the reason for it."""
    return step.split(":")[0].split(", so that")[0]


def _share(part, whole):
    return f"{part:,} ({part / whole:.1%})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None, help="also write rows here")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for case in CASES:
            for kind in ("dense", "plain"):
                rows.append(run_case(*case, kind, workdir))
                print(rows[-1], flush=True)
    clients = [k for k in rows[0] if k.startswith(("LiteRT", "MediaPipe"))]
    headers = ["case", "model", "io", "file bytes", "metadata bytes"]
    headers += ["input stage"] + clients
    table = [
        [
            r["case"],
            r["model"],
            r["io_dtype"],
            f"{r['file_bytes']:,}",
            _share(r["metadata_bytes"], r["file_bytes"]),
            r["input_stage"],
        ]
        + [r[c] for c in clients]
        for r in rows
    ]
    print(
        markdown(headers, table, align="lll" + "rr" + "l" * (1 + len(clients)))
    )
    if args.json:
        write_json(args.json, rows)
    return rows


if __name__ == "__main__":
    main()
