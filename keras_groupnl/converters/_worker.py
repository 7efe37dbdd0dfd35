"""The TensorFlow side of `_subprocess`: one conversion in its own process.

Usage: python -m keras_groupnl.converters._worker SPEC.json

Writes the artefacts into `<workspace>/out/` and the report (or the error)
to `<workspace>/result.json`; never into the user's output folder, and no
temporary file outside the workspace. A watchdog thread ends the process,
removing the workspace, as soon as the parent process is gone.
"""

import json
import os
import shutil
import sys
import tempfile
import threading
import time


def _watch_parent(parent_pid, workspace):
    def watch():
        while os.getppid() == parent_pid:
            time.sleep(0.2)
        shutil.rmtree(workspace, ignore_errors=True)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _convert(spec):
    import keras
    import numpy as np

    from keras_groupnl.converters import _arguments
    from keras_groupnl.converters import _pipeline

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "The conversion subprocess did not get the TensorFlow backend "
            f"(it runs {keras.backend.backend()})."
        )
    model, _ = _arguments.load_model(spec["model_path"])
    twin = None
    if spec["twin_path"]:
        twin, _ = _arguments.load_model(spec["twin_path"], "compare_with")
    with np.load(os.path.join(spec["workspace"], "data.npz")) as arrays:
        data = {key: arrays[key] for key in arrays.files}
    report, files = _pipeline.run(model, data, spec["options"], twin)
    out = os.path.join(spec["workspace"], "out")
    os.makedirs(out, exist_ok=True)
    for filename, content in files:
        with open(os.path.join(out, filename), "wb") as f:
            f.write(content)
    return {"report": report.to_dict(), "files": [f for f, _ in files]}


def _error(error):
    from keras_groupnl.converters._errors import ConversionError

    if isinstance(error, ConversionError):
        kind = "ConversionError"
    elif isinstance(error, ValueError):
        kind = "ValueError"
    else:
        kind = type(error).__name__
    return {
        "error": {
            "type": kind,
            "message": str(error),
            "layer": getattr(error, "layer", None),
            "op": getattr(error, "op", None),
        }
    }


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as f:
        spec = json.load(f)
    _watch_parent(spec["parent_pid"], spec["workspace"])
    # Every temporary file of this process goes inside the workspace, so
    # removing the workspace removes them all, whoever does it.
    tempfile.tempdir = spec["workspace"]
    try:
        payload = _convert(spec)
    except Exception as error:  # Reported to the parent process.
        payload = _error(error)
    path = os.path.join(spec["workspace"], "result.json")
    with open(path + ".partial", "w") as f:
        json.dump(payload, f)
    os.replace(path + ".partial", path)
    return 0 if "error" not in payload else 1


if __name__ == "__main__":
    sys.exit(main())
