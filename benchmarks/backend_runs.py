"""One worker process per Keras backend, and the rows it reports.

The Keras backend is fixed per process, so each timing script re-runs
itself as `python SCRIPT --worker RUN ...` with `KERAS_BACKEND` set, once
per run, and collects what the worker prints:

- `PROGRESS <text>` lines (`report_progress`), echoed with the elapsed time;
- one `ROWS <json>` line (`report_rows`), the worker's result.

`write_json` saves the collected results atomically.
"""

import json
import os
import subprocess
import sys
import tempfile
import time


def report_progress(message):
    """Worker side: a progress line the driver echoes."""
    print(f"PROGRESS {message}", flush=True)


def report_rows(rows):
    """Worker side: the result, as the last line the driver reads."""
    print("ROWS " + json.dumps(rows), flush=True)


def run_worker(script, run, backend, args):
    """Runs `script --worker run *args` under `backend`; returns its rows.

    Echoes the worker's progress lines; on failure prints the end of its
    stderr and exits with a message naming the run.
    """
    env = dict(os.environ, KERAS_BACKEND=backend)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    cmd = [sys.executable, os.path.abspath(script), "--worker", run, *args]
    start = time.perf_counter()
    with tempfile.TemporaryFile(mode="w+") as stderr:
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
        rows = None
        for line in proc.stdout:
            if line.startswith("PROGRESS "):
                elapsed = time.perf_counter() - start
                print(
                    f"  [{elapsed:6.0f} s] {run}: {line[9:].rstrip()}",
                    flush=True,
                )
            elif line.startswith("ROWS "):
                rows = json.loads(line[5:])
        proc.wait()
        if proc.returncode != 0 or rows is None:
            stderr.seek(0)
            print(stderr.read()[-3000:], file=sys.stderr)
            raise SystemExit(
                f"the {run} worker failed (exit {proc.returncode})"
            )
    print(f"  {run} done in {time.perf_counter() - start:.0f} s", flush=True)
    return rows


def write_json(path, data):
    """Writes `data` as JSON to `path` atomically (temp file + rename)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".benchmark_", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
