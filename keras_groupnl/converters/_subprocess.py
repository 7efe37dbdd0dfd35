"""Converting from a JAX or PyTorch process, in a TensorFlow subprocess.

The model (and the `compare_with` model) is saved as `.keras`, the samples as
`.npz`, in a private temporary folder; a worker process on the TensorFlow
backend (`_worker`) converts and leaves the report and the artefacts' bytes
in that folder, and this process writes them to the output folder. So:

- the worker never writes to the output folder: if this process dies,
  nothing is written there;
- the worker stops when this process stops: a watchdog thread in the worker
  removes the temporary folder and exits as soon as its parent is gone
  (the thread, not a signal, so that the cleanup happens);
- Ctrl-C here (KeyboardInterrupt, or SIGTERM in the CLI) stops the worker
  at once, removes the temporary folder and re-raises;
- the temporary folder is in the system's temporary directory, removed on
  every exit path, and left to the OS only if both processes are killed.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

from keras_groupnl.converters._errors import ConversionError
from keras_groupnl.converters._report import ConversionReport


def run(model, data, options, twin):
    """Runs the conversion in a worker; returns `(report, files)`.

    Args:
        model, twin: `(keras.Model or None, .keras path or None)` pairs.
        data: the checked samples (see `_convert._samples`).
        options: the validated options.
    """
    workspace = tempfile.mkdtemp(prefix="keras_groupnl_convert_")
    process = None
    try:
        spec = _write_spec(workspace, model, data, options, twin)
        process = _start(spec, workspace, options["verbose"])
        status = process.wait()
        return _read_result(workspace, status)
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        shutil.rmtree(workspace, ignore_errors=True)


def _save(model_and_path, workspace, filename):
    model, path = model_and_path
    if model is None or path is not None:
        return None if path is None else os.path.abspath(path)
    path = os.path.join(workspace, filename)
    try:
        model.save(path)
    except Exception as error:
        raise ValueError(
            "This backend converts in a TensorFlow subprocess, and saving "
            f"model '{model.name}' to a .keras file for it failed: "
            f"{type(error).__name__}: {error}"
        ) from None
    return path


def _write_spec(workspace, model, data, options, twin):
    np.savez(os.path.join(workspace, "data.npz"), **data)
    spec = {
        "model_path": _save(model, workspace, "model.keras"),
        "twin_path": _save(twin, workspace, "twin.keras"),
        "workspace": workspace,
        "parent_pid": os.getpid(),
        "options": options,
    }
    path = os.path.join(workspace, "spec.json")
    with open(path, "w") as f:
        json.dump(spec, f)
    return path


def _start(spec, workspace, verbose):
    import keras

    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if verbose:
        print(
            f"[keras-groupnl] the process runs the {keras.backend.backend()} "
            "backend: converting in a TensorFlow subprocess",
            flush=True,
        )
    stderr = open(os.path.join(workspace, "stderr.txt"), "wb")
    with stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "keras_groupnl.converters._worker", spec],
            env=env,
            stdout=None if verbose else subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )


def _read_result(workspace, status):
    path = os.path.join(workspace, "result.json")
    if not os.path.exists(path):
        with open(os.path.join(workspace, "stderr.txt"), "rb") as f:
            detail = f.read().decode("utf-8", "replace")[-2000:]
        raise RuntimeError(
            "The TensorFlow conversion subprocess ended without a result "
            f"(exit status {status}). {detail}"
        )
    with open(path) as f:
        result = json.load(f)
    if "error" in result:
        error = result["error"]
        if error["type"] == "ConversionError":
            raise ConversionError(
                error["message"], layer=error.get("layer"), op=error.get("op")
            )
        if error["type"] == "ValueError":
            raise ValueError(error["message"])
        raise RuntimeError(f"{error['type']}: {error['message']}")
    files = []
    for filename in result["files"]:
        with open(os.path.join(workspace, "out", filename), "rb") as f:
            files.append((filename, f.read()))
    return ConversionReport.from_dict(result["report"]), files
