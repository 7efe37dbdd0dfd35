"""The conversion report: dataclasses, JSON, and the printed table.

`ConversionReport` is what `convert` measured; `report.to_json()` is the
`<name>_report.json` file, `ConversionReport.from_json` reads it back (the
subprocess route does), and `report.summary()` is the table the CLI prints.
"""

import dataclasses
import json
import typing

import numpy as np

from keras_groupnl.converters import _summary

FORMAT_VERSION = 3


@dataclasses.dataclass
class Verification:
    """The converted model against Keras on the verification samples."""

    top1_agreement: typing.Optional[float]
    max_abs_error: float
    mean_abs_error: float
    accuracy: typing.Optional[float] = None


@dataclasses.dataclass
class Latency:
    """Per-sample latency on this CPU (one thread, batch 1)."""

    median_ms: float
    p90_ms: float
    runs: int
    note: str = ""


@dataclasses.dataclass
class Delegation:
    """How LiteRT's XNNPACK delegate split the model."""

    partitions: int
    delegated_ops: int
    undelegated_ops: typing.List[str]


@dataclasses.dataclass
class Arena:
    """The tensor arena measured in TFLite Micro (bytes)."""

    arena_bytes: int
    activation_bytes: int
    bookkeeping_bytes: int
    measured_with: str = (
        "tflite-micro Python interpreter (reference kernels, 64-bit host)"
    )


@dataclasses.dataclass
class GroupNLLayer:
    """How one GroupNL layer was converted."""

    layer: str
    variant: str
    seed_channels: int
    generated_channels: int
    folded_layers: typing.List[str]
    tables: int = 0
    table_bytes: int = 0


@dataclasses.dataclass
class Comparison:
    """A plain model converted the same way and measured in the same run."""

    model: str
    params: int
    sizes: typing.Dict[str, int]
    latency: typing.Dict[str, Latency]
    top1_agreement: typing.Optional[float]
    arena: typing.Optional[Arena] = None
    delegation: typing.Optional[Delegation] = None
    ratios: typing.Dict[str, float] = dataclasses.field(default_factory=dict)
    cortex_m: typing.Optional[typing.Dict[str, typing.Any]] = None


@dataclasses.dataclass
class ClientCheck:
    """One Android client run on the converted phone file.

    Attributes:
        client: e.g. `"MediaPipe Tasks ImageClassifier"`.
        version: the client package's version, when installed.
        accepted: whether it loaded and ran the file (`None`: not tried).
        top1_agreement: share of the images on which its top-1 class
            equals LiteRT Interpreter's.
        images: images it classified.
        message: what it said: the error when it refused the file.
    """

    client: str
    version: typing.Optional[str]
    accepted: typing.Optional[bool]
    top1_agreement: typing.Optional[float]
    images: int
    message: str = ""


@dataclasses.dataclass
class Android:
    """What the phone file gives Android's clients (metadata, input).

    Attributes:
        color_space: `"RGB"`, `"GRAYSCALE"`, or `None` for a model whose
            input is not taken for images.
        input_stage: what the converter put in front of the model (an
            empty list: nothing).
        mean, std: the metadata's `NormalizationOptions` (the client
            input is `(pixel - mean) / std`); `None` without image input.
        normalization_source: where the model's normalization came from.
        class_names: `"given"` (from `class_names`) or `"class indices"`.
        labels_file: the packed label file.
        metadata_bytes: what the metadata and the packed files add to the
            file.
        clients: `ClientCheck` per client.
    """

    color_space: typing.Optional[str]
    input_stage: typing.List[str]
    mean: typing.Optional[typing.List[float]]
    std: typing.Optional[typing.List[float]]
    normalization_source: typing.Optional[str]
    class_names: str
    labels_file: typing.Optional[str]
    metadata_bytes: int
    clients: typing.List[ClientCheck] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class ConversionReport:
    """What `convert` made and measured.

    Attributes:
        target: `"phone"` or `"mcu"`.
        integer_only: whether the phone model is full-integer.
        model, params: the Keras model's name and parameter count.
        files: artefact role -> file name.
        sizes: bytes of the file, the NLF tables, the other weights, and
            everything else (`"file"`, `"tables"`, `"weights"`, `"other"`).
        input, output: shape, dtype, scale and zero point (for float I/O,
            those of the int8 tensors inside).
        op_histogram: op name -> count.
        float_ops: ops that read or write a float tensor.
        float_ops_outside_io: the same, leaving out the QUANTIZE /
            DEQUANTIZE of a float input / output.
        float_ops_by_layer: layer -> its float ops (outside I/O).
        weights: conv/dense ops, how many have int8 and per-channel weights.
        groupnl: how each GroupNL layer was converted.
        num_samples, calibration_samples: verification / calibration counts.
        verification: runtime -> `Verification`.
        keras_accuracy: the Keras model's accuracy (with labels).
        latency: runtime -> `Latency`.
        delegation: XNNPACK partitions (phone).
        arena: the TFLite Micro tensor arena (mcu).
        resolver_ops: `MicroMutableOpResolver` methods (mcu).
        comparison: the plain twin, when `compare_with` was given.
        android: metadata, input stage and Android clients (phone).
        toolchain: package versions.
        cortex_m: "mcu": estimated instructions per inference on a
            Cortex-M4F and a Cortex-M55, with CMSIS-NN and with reference
            kernels (`{target: {"instructions", "by_op", "unmodelled"}}`,
            the cost model of `_cortex_m`), instead of a host latency.
        machine: the CPU the latencies were measured on
            (`keras_groupnl.analysis.Machine.to_dict()`: model name, vector
            ISA, cores, TensorFlow oneDNN on or off).
    """

    target: str
    integer_only: bool
    model: str
    params: int
    files: typing.Dict[str, str]
    sizes: typing.Dict[str, int]
    input: typing.Dict[str, typing.Any]
    output: typing.Dict[str, typing.Any]
    op_histogram: typing.Dict[str, int]
    float_ops: int
    float_ops_outside_io: int
    float_ops_by_layer: typing.Dict[str, typing.List[str]]
    weights: typing.Dict[str, int]
    groupnl: typing.List[GroupNLLayer]
    num_samples: int
    calibration_samples: int
    verification: typing.Dict[str, Verification]
    keras_accuracy: typing.Optional[float]
    latency: typing.Dict[str, Latency]
    delegation: typing.Optional[Delegation] = None
    arena: typing.Optional[Arena] = None
    resolver_ops: typing.Optional[typing.List[str]] = None
    comparison: typing.Optional[Comparison] = None
    android: typing.Optional[Android] = None
    toolchain: typing.Dict[str, typing.Optional[str]] = dataclasses.field(
        default_factory=dict
    )
    machine: typing.Dict[str, typing.Any] = dataclasses.field(
        default_factory=dict
    )
    cortex_m: typing.Optional[typing.Dict[str, typing.Any]] = None
    format_version: int = FORMAT_VERSION

    @property
    def top1_agreement(self):
        """The lowest top-1 agreement with Keras over the runtimes."""
        values = [
            v.top1_agreement
            for v in self.verification.values()
            if v.top1_agreement is not None
        ]
        return min(values) if values else None

    @property
    def size_bytes(self):
        return self.sizes["file"]

    def to_dict(self):
        """The report as plain data, with `top1_agreement` added."""
        data = _plain(dataclasses.asdict(self))
        data["top1_agreement"] = self.top1_agreement
        return data

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data):
        return _build(cls, data)

    @classmethod
    def from_json(cls, text):
        return cls.from_dict(json.loads(text))

    def summary(self):
        """The report as a plain-text table."""
        return _summary.format_report(self)


def _plain(value):
    """NumPy scalars and arrays to Python values, recursively."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _build(kind, data):
    """Rebuilds a (possibly nested) report dataclass from plain data."""
    if data is None:
        return None
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin is typing.Union:
        real = [a for a in args if a is not type(None)]
        return _build(real[0], data)
    if origin in (list, typing.List):
        return [_build(args[0], v) for v in data]
    if origin in (dict, typing.Dict):
        return {k: _build(args[1], v) for k, v in data.items()}
    if dataclasses.is_dataclass(kind):
        hints = typing.get_type_hints(kind)
        return kind(
            **{
                f.name: _build(hints[f.name], data[f.name])
                for f in dataclasses.fields(kind)
                if f.name in data
            }
        )
    return data
