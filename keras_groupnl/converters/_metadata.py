"""TFLite model metadata: what Android's clients read about a model.

MediaPipe Tasks (and the LiteRT Support / Task libraries before it) learn
how to feed an image model and name its outputs from the model's metadata:
a flatbuffer of the TFLite metadata schema (file identifier `M001`) stored
in a buffer of the model, named by the model's `TFLITE_METADATA` metadata
entry, plus "associated files" (the label file) packed as a zip archive
appended to the `.tflite` file. `attach(model_bytes, ModelInfo(...))` adds
both.

The schema's generated Python code ships only inside `mediapipe` (which
pulls OpenCV) and `tflite-support` (last released 2023; it pins
protobuf 3.20, which TensorFlow 2.21 cannot import), so the few tables a
classifier needs are written here with the `flatbuffers` builder, from the
field numbers of the schema (`metadata_schema.fbs`, tflite-support /
MediaPipe). The tests read the result back with MediaPipe's own reader.
"""

import dataclasses
import io
import typing
import zipfile

import flatbuffers
import numpy as np

from keras_groupnl.converters import _flatbuffer as fb

METADATA_NAME = "TFLITE_METADATA"
FILE_IDENTIFIER = b"M001"
# The oldest metadata parser that reads every field written here: all of
# them are in the schema's first version. (Only later members raise it:
# vocabulary and index files, AssociatedFile.version, subgraph process
# units and tensor groups, tokenizers, audio, custom metadata; from
# MediaPipe's metadata_version.cc, which computes this for its writers.)
MIN_PARSER_VERSION = "1.0.0"

# Enum values of the schema.
COLOR_SPACES = {"RGB": 1, "GRAYSCALE": 2}
_FEATURE_PROPERTIES, _IMAGE_PROPERTIES = 1, 2
_NORMALIZATION_OPTIONS = 1
_TENSOR_AXIS_LABELS = 2
# A fixed date for the packed files, so that a conversion is reproducible.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """The metadata of one input or output tensor.

    Attributes:
        name, description: shown to developers.
        color_space: `"RGB"` or `"GRAYSCALE"` for an image input, else
            `None` (a feature tensor).
        mean, std: the `NormalizationOptions`: the tensor takes
            `(pixel - mean) / std` (one value, or one per channel).
        minimum, maximum: the `Stats` of the tensor's values.
        labels_file: name of the packed file naming the classes along the
            last axis (`TENSOR_AXIS_LABELS`), or `None`.
    """

    name: str
    description: str
    color_space: typing.Optional[str] = None
    mean: typing.Optional[typing.Tuple[float, ...]] = None
    std: typing.Optional[typing.Tuple[float, ...]] = None
    minimum: typing.Optional[typing.Tuple[float, ...]] = None
    maximum: typing.Optional[typing.Tuple[float, ...]] = None
    labels_file: typing.Optional[str] = None


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """The model-level metadata and the files packed after the model.

    Attributes:
        name, description, version, author: shown to developers.
        input, output: `TensorInfo` of the (single) input and output.
        files: `{file name: bytes}` packed in the appended zip archive.
    """

    name: str
    description: str
    version: str
    author: typing.Optional[str]
    input: TensorInfo
    output: TensorInfo
    files: typing.Dict[str, bytes] = dataclasses.field(default_factory=dict)


def attach(model_bytes, info):
    """The model with `info` as its metadata and its files appended."""
    model = fb.read_model(model_bytes)
    entries = [
        entry
        for entry in model.metadata or []
        if _text(entry.name) != METADATA_NAME
    ]
    entry = fb.schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = fb.add_buffer(
        model, np.frombuffer(build(info), dtype=np.uint8)
    )
    model.metadata = entries + [entry]
    return pack_files(fb.write_model(model), info.files)


def pack_files(model_bytes, files):
    """`model_bytes` followed by a zip archive of `files` (if any).

    The archive is appended the way the metadata spec reads it: member
    offsets count from the start of the `.tflite` file, files are stored
    uncompressed.
    """
    if not files:
        return bytes(model_bytes)
    stream = io.BytesIO(bytes(model_bytes))
    stream.seek(0, io.SEEK_END)
    with zipfile.ZipFile(stream, "a", zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(name, _ZIP_DATE), data)
    return stream.getvalue()


def _text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else value


# --------------------------------------------------------------------------
# The flatbuffer. Each table is built from its field numbers in the schema
# (`(field number, kind, value)`; `None` values are left out).


def build(info):
    """The metadata flatbuffer (`ModelMetadata`, identifier `M001`)."""
    builder = flatbuffers.Builder(1024)
    inputs = _vector(builder, [_tensor(builder, info.input)])
    outputs = _vector(builder, [_tensor(builder, info.output)])
    subgraph = _table(
        builder,
        10,
        [(2, "offset", inputs), (3, "offset", outputs)],
    )
    strings = [
        _string(builder, text)
        for text in (
            info.name,
            info.description,
            info.version,
            info.author,
            MIN_PARSER_VERSION,
        )
    ]
    root = _table(
        builder,
        8,
        [
            (0, "offset", strings[0]),
            (1, "offset", strings[1]),
            (2, "offset", strings[2]),
            (3, "offset", _vector(builder, [subgraph])),
            (4, "offset", strings[3]),
            (7, "offset", strings[4]),
        ],
    )
    builder.Finish(root, file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def _tensor(builder, tensor):
    """A `TensorMetadata` table."""
    content = _content(builder, tensor.color_space)
    units = stats = None
    if tensor.mean is not None:
        # NormalizationOptions: mean (field 0), std (field 1).
        options = _float_pair(builder, tensor.mean, tensor.std)
        unit = _table(
            builder,
            2,
            [(0, "uint8", _NORMALIZATION_OPTIONS), (1, "offset", options)],
        )
        units = _vector(builder, [unit])
    if tensor.minimum is not None:
        # Stats: max (field 0), min (field 1).
        stats = _float_pair(builder, tensor.maximum, tensor.minimum)
    files = None
    if tensor.labels_file is not None:
        files = _vector(builder, [_labels_file(builder, tensor.labels_file)])
    name = _string(builder, tensor.name)
    description = _string(builder, tensor.description)
    return _table(
        builder,
        7,
        [
            (0, "offset", name),
            (1, "offset", description),
            (3, "offset", content),
            (4, "offset", units),
            (5, "offset", stats),
            (6, "offset", files),
        ],
    )


def _content(builder, color_space):
    """A `Content` table: image properties, or feature properties."""
    if color_space is None:
        kind, properties = _FEATURE_PROPERTIES, _table(builder, 0, [])
    else:
        kind = _IMAGE_PROPERTIES
        properties = _table(
            builder, 2, [(0, "int8", COLOR_SPACES[color_space])]
        )
    return _table(builder, 3, [(0, "uint8", kind), (1, "offset", properties)])


def _labels_file(builder, name):
    """An `AssociatedFile` table for a label file."""
    description = _string(builder, "Class names, one per line, in order.")
    return _table(
        builder,
        5,
        [
            (0, "offset", _string(builder, name)),
            (1, "offset", description),
            (2, "int8", _TENSOR_AXIS_LABELS),
        ],
    )


def _float_pair(builder, first, second):
    """A table of two float vectors (fields 0 and 1)."""
    first, second = _floats(builder, first), _floats(builder, second)
    return _table(builder, 2, [(0, "offset", first), (1, "offset", second)])


def _table(builder, num_fields, fields):
    builder.StartObject(num_fields)
    for number, kind, value in fields:
        if value is None:
            continue
        if kind == "offset":
            builder.PrependUOffsetTRelativeSlot(number, value, 0)
        elif kind == "uint8":
            builder.PrependUint8Slot(number, value, 0)
        else:
            builder.PrependInt8Slot(number, value, 0)
    return builder.EndObject()


def _string(builder, text):
    return None if text is None else builder.CreateString(text)


def _vector(builder, offsets):
    builder.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return builder.EndVector()


def _floats(builder, values):
    values = [float(v) for v in values]
    builder.StartVector(4, len(values), 4)
    for value in reversed(values):
        builder.PrependFloat32(value)
    return builder.EndVector()
