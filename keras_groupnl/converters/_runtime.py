"""Running converted models: LiteRT (XNNPACK) and TensorFlow Lite Micro."""

import contextlib
import os
import re
import sys
import tempfile
import time

import numpy as np


def _quantize(x, detail):
    dtype = np.dtype(detail["dtype"])
    if dtype == np.float32:
        return x.astype(np.float32)
    scale, zero_point = detail["scale"], detail["zero_point"]
    info = np.iinfo(dtype)
    q = np.round(x / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def _dequantize(y, detail):
    if np.dtype(detail["dtype"]) == np.float32:
        return np.asarray(y, np.float32)
    return (np.asarray(y, np.float32) - detail["zero_point"]) * detail["scale"]


class _Runner:
    """What both interpreters share: float in, float out, one sample a call.

    Subclasses set `input_detail` / `output_detail` (dtype, scale, zero
    point) and implement `invoke_raw` on an already quantized batch of one.
    """

    def predict(self, x, progress=None):
        outputs = []
        for i in range(len(x)):
            raw = _quantize(x[i : i + 1], self.input_detail)
            raw_out = self.invoke_raw(raw)
            outputs.append(_dequantize(raw_out, self.output_detail))
            if progress is not None:
                progress(1)
        return np.concatenate(outputs, axis=0)


class LiteRTRunner(_Runner):
    """LiteRT interpreter on CPU with its default XNNPACK delegate."""

    def __init__(self, model_bytes, num_threads=1):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(
            model_content=model_bytes, num_threads=num_threads
        )
        self.interpreter.allocate_tensors()
        # XNNPACK (the default delegate) shows up as DELEGATE nodes, one per
        # partition of the graph it took over.
        try:
            ops = self.interpreter._get_ops_details()
            self.xnnpack_partitions = sum(
                1 for op in ops if op.get("op_name") == "DELEGATE"
            )
        except Exception:  # pragma: no cover - private LiteRT API
            self.xnnpack_partitions = None
        (inp,) = self.interpreter.get_input_details()
        (out,) = self.interpreter.get_output_details()
        self.input_index = inp["index"]
        self.output_index = out["index"]
        self.input_detail = {
            "dtype": inp["dtype"],
            "scale": inp["quantization"][0],
            "zero_point": inp["quantization"][1],
        }
        self.output_detail = {
            "dtype": out["dtype"],
            "scale": out["quantization"][0],
            "zero_point": out["quantization"][1],
        }

    def invoke_raw(self, raw):
        self.interpreter.set_tensor(self.input_index, raw)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output_index)

    def latency_ms(self, sample, runs=50, max_seconds=2.0):
        raw = _quantize(sample[None], self.input_detail)
        return _time_calls(lambda: self.invoke_raw(raw), runs, max_seconds)


@contextlib.contextmanager
def _captured_stderr():
    """Captures what C++ code writes to file descriptor 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        result = {"text": ""}
        try:
            yield result
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            result["text"] = capture.read().decode("utf-8", "replace")


class TFLMError(RuntimeError):
    """TFLite Micro could not run the model; `log` holds what it printed."""

    def __init__(self, message, log=""):
        super().__init__(message)
        self.log = log


class TFLMRunner(_Runner):
    """The TensorFlow Lite Micro interpreter (reference kernels, on host)."""

    def __init__(self, model_bytes, arena_size=None):
        import tflite_micro

        self._runtime = tflite_micro.runtime
        self.model_bytes = model_bytes
        if arena_size is None:
            # Generous: every activation at once, plus room for TFLM's own
            # structures; `measure_arena` finds what is really needed.
            from keras_groupnl.converters import _flatbuffer

            activations = _flatbuffer.activation_bytes(
                _flatbuffer.read_model(model_bytes)
            )
            arena_size = max(1 << 20, 2 * activations + len(model_bytes))
        with _captured_stderr() as log:
            try:
                self.interpreter = self._runtime.Interpreter.from_bytes(
                    model_bytes, arena_size=arena_size
                )
            except RuntimeError as error:
                failed = error
            else:
                failed = None
        if failed is not None:
            raise TFLMError(
                f"TFLite Micro could not load the model: {failed}",
                log["text"],
            )
        self.arena_size = arena_size
        inp = self.interpreter.get_input_details(0)
        out = self.interpreter.get_output_details(0)
        self.input_detail = _tflm_detail(inp)
        self.output_detail = _tflm_detail(out)

    def invoke_raw(self, raw):
        self.interpreter.set_input(raw, 0)
        self.interpreter.invoke()
        return self.interpreter.get_output(0)

    def latency_ms(self, sample, runs=20, max_seconds=2.0):
        raw = _quantize(sample[None], self.input_detail)
        return _time_calls(lambda: self.invoke_raw(raw), runs, max_seconds)

    def measure_arena(self, sample):
        """The tensor-arena size TFLite Micro needs for this model.

        TFLM's recording allocator reports the bytes it used after one
        inference; the figure is rounded up to 16 bytes and checked by
        running the model again in an arena of exactly that size.
        """
        raw = _quantize(sample[None], self.input_detail)
        self.invoke_raw(raw)
        with _captured_stderr() as log:
            self.interpreter.print_allocations()
        match = re.search(r"Arena allocation total (\d+) bytes", log["text"])
        if match is None:
            raise TFLMError(
                "TFLite Micro did not report its arena usage.", log["text"]
            )
        used = int(match.group(1))
        size = -(-used // 16) * 16
        # Confirm: the model allocates and runs in exactly `size` bytes.
        for attempt in range(8):
            try:
                check = TFLMRunner(self.model_bytes, arena_size=size)
                with _captured_stderr():
                    check.invoke_raw(raw)
                break
            except (TFLMError, RuntimeError):
                size = -(-int(size * 1.05 + 16) // 16) * 16
        else:
            raise TFLMError(
                f"TFLite Micro reported {used} arena bytes but the model does "
                f"not run in {size} bytes."
            )
        return {"used_bytes": used, "arena_bytes": size}


def _tflm_detail(detail):
    params = detail.get("quantization_parameters", {})
    scales = list(params.get("scales", []))
    zero_points = list(params.get("zero_points", []))
    return {
        "dtype": detail["dtype"],
        "scale": float(scales[0]) if scales else 0.0,
        "zero_point": int(zero_points[0]) if zero_points else 0,
    }


def _time_calls(fn, runs, max_seconds):
    for _ in range(3):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < runs and time.perf_counter() - start < max_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times = np.asarray(times) * 1000.0
    return {
        "median_ms": float(np.median(times)),
        "p90_ms": float(np.percentile(times, 90)),
        "runs": int(len(times)),
    }
