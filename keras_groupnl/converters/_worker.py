"""Runs `convert` in a TensorFlow-backend process (see `_convert`).

Usage: python -m keras_groupnl.converters._worker SPEC.json

The spec names the `.keras` model, an `.npz` with the samples (`x` to
calibrate, `x_check` and, with labels, `y_check` to verify), the output
directory and the options. The result, or the error, is written as JSON to
the spec's `result_path`.
"""

import json
import os
import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as f:
        spec = json.load(f)
    os.environ["KERAS_BACKEND"] = "tensorflow"
    result_path = spec["result_path"]
    try:
        import keras
        import numpy as np

        if keras.backend.backend() != "tensorflow":
            raise RuntimeError(
                "The conversion subprocess did not get the TensorFlow backend "
                f"(it runs {keras.backend.backend()})."
            )
        from keras_groupnl.converters import _convert

        model, _ = _convert._load_model(spec["model_path"])
        with np.load(spec["data_path"]) as arrays:
            data = {key: arrays[key] for key in arrays.files}
        result = _convert._convert_validated(
            model, data, spec["output_dir"], spec["options"]
        )
        payload = {
            "tflite_path": result.tflite_path,
            "report_path": result.report_path,
            "report": result.report,
            "files": result.files,
        }
    except Exception as error:  # Reported to the parent process.
        from keras_groupnl.converters._errors import ConversionError

        if isinstance(error, ConversionError):
            kind = "ConversionError"
        elif isinstance(error, ValueError):
            kind = "ValueError"
        else:
            kind = type(error).__name__
        payload = {
            "error": {
                "type": kind,
                "message": str(error),
                "layer": getattr(error, "layer", None),
                "op": getattr(error, "op", None),
            }
        }
    with open(result_path + ".tmp", "w") as f:
        json.dump(payload, f)
    os.replace(result_path + ".tmp", result_path)
    return 0 if "error" not in payload else 1


if __name__ == "__main__":
    sys.exit(main())
