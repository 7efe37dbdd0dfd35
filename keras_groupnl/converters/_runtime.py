"""Running converted models: LiteRT (XNNPACK) and TensorFlow Lite Micro.

Both runners take float samples, quantize them as the model input says,
run one sample at a time and return float outputs. `interleaved_latency`
times several runners in alternating rounds, so that load on a shared
machine hits them alike.
"""

import re
import time

import numpy as np

from keras_groupnl.converters import _flatbuffer as fb
from keras_groupnl.converters import _inspect
from keras_groupnl.converters import _native_logs
from keras_groupnl.converters import _private


def quantize(x, detail):
    dtype = np.dtype(detail["dtype"])
    if dtype == np.float32:
        return x.astype(np.float32)
    info = np.iinfo(dtype)
    q = np.round(x / detail["scale"]) + detail["zero_point"]
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
            raw = quantize(x[i : i + 1], self.input_detail)
            outputs.append(
                _dequantize(self.invoke_raw(raw), self.output_detail)
            )
            if progress is not None:
                progress(1)
        return np.concatenate(outputs, axis=0)

    def timed_call(self, sample):
        """A no-argument function running the model on `sample`."""
        raw = quantize(sample[None], self.input_detail)
        return lambda: self.invoke_raw(raw)


class LiteRTRunner(_Runner):
    """LiteRT interpreter on CPU with its default XNNPACK delegate."""

    def __init__(self, model_bytes, num_threads=1):
        from ai_edge_litert.interpreter import Interpreter

        with _native_logs.captured():
            self.interpreter = Interpreter(
                model_content=model_bytes, num_threads=num_threads
            )
            self.interpreter.allocate_tensors()
        (inp,) = self.interpreter.get_input_details()
        (out,) = self.interpreter.get_output_details()
        self.input_index = inp["index"]
        self.output_index = out["index"]
        self.input_detail = _litert_detail(inp)
        self.output_detail = _litert_detail(out)
        self.model_bytes = model_bytes

    def invoke_raw(self, raw):
        self.interpreter.set_tensor(self.input_index, raw)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output_index)

    def delegation(self):
        """How XNNPACK split the graph.

        Returns `{"partitions", "delegated", "undelegated"}`: the number of
        XNNPACK partitions (DELEGATE nodes) and the indices of the model's
        ops that XNNPACK took and did not take.
        """
        plan = _private.execution_plan(self.interpreter)
        count = len(fb.read_model(self.model_bytes).subgraphs[0].operators)
        original = plan[:count]
        delegates = [op for op in plan[count:] if op["op_name"] == "DELEGATE"]
        producer = {}
        for op in original:
            for t in op["outputs"]:
                producer[int(t)] = op["index"]
        delegated = set()
        for delegate in delegates:
            delegated |= _nodes_between(
                delegate["inputs"], delegate["outputs"], producer, original
            )
        return {
            "partitions": len(delegates),
            "delegated": sorted(delegated),
            "undelegated": sorted(set(range(count)) - delegated),
        }


def _nodes_between(inputs, outputs, producer, ops):
    """The ops between a delegate node's input and output tensors."""
    stop = {int(t) for t in inputs}
    stack = [int(t) for t in outputs]
    seen, nodes = set(), set()
    while stack:
        t = stack.pop()
        if t in seen or t in stop or t not in producer:
            continue
        seen.add(t)
        node = producer[t]
        nodes.add(node)
        stack.extend(int(x) for x in ops[node]["inputs"] if x >= 0)
    return nodes


def _litert_detail(detail):
    scale, zero_point = detail["quantization"]
    return {"dtype": detail["dtype"], "scale": scale, "zero_point": zero_point}


class TFLMError(RuntimeError):
    """TFLite Micro could not run the model; `log` holds what it printed."""

    def __init__(self, message, log=""):
        super().__init__(message)
        self.log = log


class TFLMRunner(_Runner):
    """The TensorFlow Lite Micro interpreter (reference kernels, on host)."""

    def __init__(self, model_bytes, arena_size=None):
        import tflite_micro

        self.model_bytes = model_bytes
        if arena_size is None:
            # Generous: every activation at once, plus room for TFLM's own
            # structures; `measure_arena` finds what is really needed.
            activations = _inspect.activation_bytes(fb.read_model(model_bytes))
            arena_size = max(1 << 20, 2 * activations + len(model_bytes))
        with _native_logs.captured() as log:
            try:
                self.interpreter = tflite_micro.runtime.Interpreter.from_bytes(
                    model_bytes, arena_size=arena_size
                )
                failed = None
            except RuntimeError as error:
                failed = error
        if failed is not None:
            raise TFLMError(
                f"TFLite Micro could not load the model: {failed}", log["text"]
            )
        self.input_detail = _tflm_detail(self.interpreter.get_input_details(0))
        self.output_detail = _tflm_detail(
            self.interpreter.get_output_details(0)
        )

    def invoke_raw(self, raw):
        return self.invoke_all([raw], outputs=1)[0]

    def invoke_all(self, raws, outputs):
        """Runs the model on its inputs `raws`; its first `outputs` outputs."""
        with _native_logs.captured() as log:
            try:
                for index, raw in enumerate(raws):
                    self.interpreter.set_input(raw, index)
                self.interpreter.invoke()
                failed = None
            except RuntimeError as error:
                failed = error
        if failed is not None:
            raise TFLMError(f"TFLite Micro failed: {failed}", log["text"])
        return [self.interpreter.get_output(i) for i in range(outputs)]

    def measure_arena(self, sample):
        """The smallest tensor arena TFLite Micro runs the model in.

        TFLM's recording allocator reports, after one inference, the bytes
        it used: the head (activations, planned to overlap) and the tail
        (persistent bookkeeping: tensor and node structs, kernel data).
        Their total can be a little short of what loading needs (temporary
        allocations while kernels prepare), so the arena is the smallest
        16-byte multiple, from that total up, in which the model loads and
        runs, found by bisection.

        Returns `{"arena_bytes", "activation_bytes", "bookkeeping_bytes"}`.
        """
        return self.measure_arena_raw(quantize(sample[None], self.input_detail))

    def measure_arena_raw(self, raw):
        """`measure_arena` for an already quantized batch of one."""
        self.invoke_raw(raw)
        with _native_logs.captured() as log:
            self.interpreter.print_allocations()
        found = {
            key: re.search(rf"Arena allocation {key} (\d+) bytes", log["text"])
            for key in ("total", "head", "tail")
        }
        if not all(found.values()):
            raise TFLMError(
                "TFLite Micro did not report its arena.", log["text"]
            )
        used = {key: int(match.group(1)) for key, match in found.items()}
        return {
            "arena_bytes": self._smallest_arena(used["total"], raw),
            "activation_bytes": used["head"],
            "bookkeeping_bytes": used["tail"],
        }

    def _smallest_arena(self, total, raw):
        def runs(size):
            try:
                TFLMRunner(self.model_bytes, arena_size=size).invoke_raw(raw)
                return True
            except TFLMError:
                return False

        low = -(-total // 16)  # In units of 16 bytes.
        high = low
        while not runs(16 * high):
            low, high = high + 1, high + max(16, (high - low + 1) * 2)
        while low < high:
            middle = (low + high) // 2
            if runs(16 * middle):
                high = middle
            else:
                low = middle + 1
        return 16 * high


def _tflm_detail(detail):
    params = detail.get("quantization_parameters", {})
    scales = list(params.get("scales", []))
    zero_points = list(params.get("zero_points", []))
    return {
        "dtype": detail["dtype"],
        "scale": float(scales[0]) if scales else 0.0,
        "zero_point": int(zero_points[0]) if zero_points else 0,
    }


def interleaved_latency(calls, rounds=15, calls_per_round=5, max_seconds=6.0):
    """Median latency of each call, timed in alternating rounds.

    Args:
        calls: `{name: no-argument function}`.

    Returns:
        `{name: {"median_ms", "p90_ms", "runs"}}`, from the per-round
        medians; rounds stop early after `max_seconds`.
    """
    names = list(calls)
    for name in names:
        for _ in range(2):
            calls[name]()
    medians = {name: [] for name in names}
    start = time.perf_counter()
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            times = []
            for _ in range(calls_per_round):
                t0 = time.perf_counter()
                calls[name]()
                times.append(time.perf_counter() - t0)
            medians[name].append(np.median(times) * 1000.0)
        if time.perf_counter() - start > max_seconds and r >= 2:
            break
    return {
        name: {
            "median_ms": float(np.median(values)),
            "p90_ms": float(np.percentile(values, 90)),
            "runs": len(values) * calls_per_round,
        }
        for name, values in medians.items()
    }
