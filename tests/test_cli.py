"""The command line answers usage errors at once: it parses and checks its
arguments before it imports TensorFlow or Keras."""

import subprocess
import sys

import pytest

_PROBE = """
import sys
from keras_groupnl import cli
status = cli.main(sys.argv[1:])
heavy = sorted(m for m in ("tensorflow", "keras", "jax", "torch")
               if m in sys.modules)
print("STATUS", status, "HEAVY", heavy)
"""


def _run(*args):
    return subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "args,message",
    [
        (["convert"], "the following arguments are required"),
        (
            [
                "convert",
                "missing.keras",
                "--target",
                "mcu",
                "--calibration",
                "c.npz",
                "--out",
                "out",
            ],
            "no file at 'missing.keras'",
        ),
        (
            [
                "convert",
                "m.keras",
                "--target",
                "gpu",
                "--calibration",
                "c.npz",
                "--out",
                "out",
            ],
            "invalid choice: 'gpu'",
        ),
        (
            [
                "convert",
                "m.keras",
                "--target",
                "mcu",
                "--labels",
                "labels.txt",
                "--calibration",
                "c.npz",
                "--out",
                "out",
            ],
            "apply to --target phone",
        ),
    ],
    ids=["missing_arguments", "missing_model", "bad_target", "mcu_labels"],
)
def test_usage_errors_import_nothing_heavy(args, message):
    completed = _run(*args)
    assert "STATUS 2 HEAVY []" in completed.stdout, completed.stderr
    assert message in completed.stderr
