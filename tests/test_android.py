"""Phone models in Android's own clients (TensorFlow backend).

The converted `.tflite` files are read back from disk and run, here and
not through the converter's report, in MediaPipe Tasks'
`vision.ImageClassifier` (the Python twin of the Android Tasks API), in
LiteRT's `CompiledModel` and in LiteRT's `Interpreter`, on the same uint8
images; the metadata is read with MediaPipe's generated reader of the
TFLite metadata schema, an implementation independent of the converter's
writer.
"""

import importlib
import io
import zipfile

# The test extra installs mediapipe: a missing one fails here, it is not
# skipped.
import keras
import mediapipe as mp
import numpy as np
import pytest
from mediapipe.tasks.python import vision
from mediapipe.tasks.python.core.base_options import BaseOptions

from keras_groupnl import applications
from keras_groupnl.converters import _flatbuffer
from keras_groupnl.converters import _normalization
from keras_groupnl.converters import convert

# MediaPipe's generated reader of the TFLite metadata schema.
metadata_fb = importlib.import_module(
    "mediapipe.tasks.metadata.metadata_schema_py_generated"
)

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="in-process conversion runs on the TensorFlow backend",
)

IMAGES = 32
NAMES = [f"class {chr(ord('a') + i)}" for i in range(10)]


def _images(shape, seed=0):
    """Camera-like uint8 images: smooth random blobs, some noise."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]] / max(shape[:2])
    images = []
    for _ in range(IMAGES * 2):
        frequency = rng.uniform(1, 6, (2, shape[2]))
        phase = rng.uniform(0, 6, shape[2])
        wave = np.sin(frequency[0] * rows[..., None] * 6 + phase)
        wave = wave * np.cos(frequency[1] * cols[..., None] * 6)
        noise = rng.normal(0, 0.1, shape)
        images.append(np.clip((wave + noise + 1) * 127.5, 0, 255))
    return np.asarray(images).round().astype(np.uint8)


def _trained(model, x, seed=0, from_logits=False):
    """A few steps on random labels: logits that are not near-ties."""
    keras.utils.set_random_seed(seed)
    y = np.random.default_rng(seed).integers(0, 10, len(x))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
    model.compile("adam", loss)
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    return model


@pytest.fixture(scope="module")
def rgb_models():
    """GroupNL ResNet-8 on 32x32 RGB images in [0, 1], and its plain twin."""
    pixels = _images((32, 32, 3))
    x = pixels.astype("float32") / 255.0
    kwargs = dict(input_shape=(32, 32, 3), classes=10, seed=0)
    return {
        kind: _trained(applications.GroupNLResNet8(conv_type=kind, **kwargs), x)
        for kind in ("dense", "plain")
    }, x


@pytest.fixture(scope="module")
def gray_model():
    """The demo's model: GroupNL ResNet-8 on 28x28x1 images in [0, 1]."""
    pixels = _images((28, 28, 1), seed=1)
    x = pixels.astype("float32") / 255.0
    model = applications.GroupNLResNet8(
        input_shape=(28, 28, 1), classes=10, classifier_activation=None
    )
    return _trained(model, x, seed=1, from_logits=True), x


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _metadata(model_bytes):
    """The model's `ModelMetadataT`, read with MediaPipe's reader."""
    model = _flatbuffer.read_model(model_bytes)
    (entry,) = [m for m in model.metadata if m.name == b"TFLITE_METADATA"]
    buffer = bytes(model.buffers[entry.buffer].data)
    assert metadata_fb.ModelMetadata.ModelMetadataBufferHasIdentifier(buffer, 0)
    root = metadata_fb.ModelMetadata.GetRootAs(buffer, 0)
    return metadata_fb.ModelMetadataT.InitFromObj(root)


def _image_spec(model_bytes):
    """`(mean, std)` of the input, from the metadata, as a client reads it."""
    tensor = _metadata(model_bytes).subgraphMetadata[0].inputTensorMetadata[0]
    (unit,) = tensor.processUnits
    return np.asarray(unit.options.mean), np.asarray(unit.options.std)


def _interpreter_top1(model_bytes, pixels):
    """LiteRT Interpreter's top-1 on uint8 RGB images, fed the way the
    metadata says (float: (pixel - mean) / std; uint8: the pixels)."""
    from ai_edge_litert.interpreter import Interpreter

    mean, std = _image_spec(model_bytes)
    interpreter = Interpreter(model_content=model_bytes, num_threads=1)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    scores = []
    for image in pixels:
        if inp["dtype"] == np.uint8:
            value = image[None]
        else:
            value = ((image - mean) / std).astype(np.float32)[None]
        interpreter.set_tensor(inp["index"], value)
        interpreter.invoke()
        scores.append(interpreter.get_tensor(out["index"])[0].astype(float))
    return np.asarray(scores)


def _mediapipe(model_bytes, pixels):
    """MediaPipe ImageClassifier's top category of each image."""
    options = vision.ImageClassifierOptions(
        base_options=BaseOptions(model_asset_buffer=model_bytes),
        max_results=1,
    )
    found = []
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for image in pixels:
            result = classifier.classify(
                mp.Image(image_format=mp.ImageFormat.SRGB, data=image)
            )
            (category,) = result.classifications[0].categories
            found.append((category.index, category.category_name))
    return found


def _compiled_model_top1(model_bytes, pixels):
    from ai_edge_litert.compiled_model import CompiledModel

    mean, std = _image_spec(model_bytes)
    model = CompiledModel.from_buffer(model_bytes)
    inputs = model.create_input_buffers(0)
    outputs = model.create_output_buffers(0)
    dtype = inputs[0].get_tensor_details()["dtype"]
    out_dtype = outputs[0].get_tensor_details()["dtype"]
    top1 = []
    for image in pixels:
        if np.dtype(dtype) == np.uint8:
            inputs[0].write(image)
        else:
            inputs[0].write(((image - mean) / std).astype(np.float32))
        model.run_by_index(0, inputs, outputs)
        top1.append(int(np.argmax(outputs[0].read(10, np.dtype(out_dtype)))))
    return np.asarray(top1)


def _assert_same_top1(scores, top1):
    """`top1` is the reference's top-1 (a tie of the best scores counts)."""
    chosen = scores[np.arange(len(scores)), top1]
    assert np.all(chosen == scores.max(axis=1)), (top1, scores.argmax(1))


def _assert_android_clients(model_bytes, pixels, names):
    """MediaPipe and CompiledModel give the Interpreter's top-1, with the
    class names."""
    assert len(pixels) >= 32
    scores = _interpreter_top1(model_bytes, pixels)
    categories = _mediapipe(model_bytes, pixels)
    _assert_same_top1(scores, np.asarray([index for index, _ in categories]))
    assert [name for _, name in categories] == [
        names[index] for index, _ in categories
    ]
    _assert_same_top1(scores, _compiled_model_top1(model_bytes, pixels))


# --------------------------------------------------------------------------
# The acceptance cases: an RGB application model and its plain twin, and
# the demo's grayscale model, float32 and uint8, in MediaPipe.


@pytest.mark.slow
@pytest.mark.parametrize("io_dtype", ["float32", "uint8"])
@pytest.mark.parametrize("kind", ["dense", "plain"])
def test_rgb_application_runs_in_mediapipe(
    rgb_models, tmp_path, kind, io_dtype
):
    models, x = rgb_models
    result = convert(
        models[kind],
        "phone",
        x,
        tmp_path,
        class_names=NAMES,
        io_dtype=None if io_dtype == "float32" else io_dtype,
        verbose=0,
    )
    model_bytes = _read(result.tflite_path)
    pixels = _images((32, 32, 3), seed=5)[:IMAGES]
    _assert_android_clients(model_bytes, pixels, NAMES)
    android = result.report.android
    assert android.input_stage == []  # RGB in [0, 1]: nothing to add.
    assert (android.mean, android.std) == ([0.0], [255.0])
    clients = {c.client: c for c in android.clients}
    assert set(clients) == {
        "LiteRT Interpreter",
        "LiteRT CompiledModel",
        "MediaPipe Tasks ImageClassifier",
    }
    assert all(c.accepted and c.top1_agreement == 1.0 for c in clients.values())
    assert result.report.input["dtype"] == io_dtype


@pytest.mark.slow
@pytest.mark.parametrize("io_dtype", ["float32", "uint8"])
def test_grayscale_model_takes_rgb_in_mediapipe(gray_model, tmp_path, io_dtype):
    model, x = gray_model
    names_file = tmp_path / "labels.txt"
    names_file.write_text("\n".join(NAMES) + "\n")
    result = convert(
        model,
        "phone",
        x,
        tmp_path / "out",
        class_names=str(names_file),
        io_dtype=io_dtype,
        verbose=0,
    )
    model_bytes = _read(result.tflite_path)
    gray = _images((28, 28, 1), seed=6)[:IMAGES]
    rgb = np.repeat(gray, 3, axis=-1)
    _assert_android_clients(model_bytes, rgb, NAMES)
    # A gray image given as RGB is the model's own input: the same class
    # as Keras on the gray image for nearly every image (int8 rounding).
    keras_top1 = model.predict(gray / 255.0, verbose=0).argmax(1)
    agreement = np.mean(
        keras_top1 == _interpreter_top1(model_bytes, rgb).argmax(1)
    )
    assert agreement >= 0.9
    report = result.report
    assert report.input["shape"] == [1, 28, 28, 3]
    (stage,) = report.android.input_stage
    assert stage.startswith("RGB -> gray")
    assert report.android.color_space == "RGB"
    assert report.delegation.partitions == 1


# --------------------------------------------------------------------------
# The metadata itself.


@pytest.mark.slow
def test_metadata_describes_the_model(rgb_models, tmp_path):
    models, x = rgb_models
    result = convert(
        models["dense"], "phone", x, tmp_path, class_names=NAMES, verbose=0
    )
    model_bytes = _read(result.tflite_path)
    metadata = _metadata(model_bytes)
    assert metadata.name == models["dense"].name.encode()
    assert metadata.minParserVersion == b"1.0.0"
    description = metadata.description.decode()
    assert "GroupNL: 6 layers (6 GroupNLConv2D)" in description
    assert "reduction_ratio 2" in description and "num_groups 4" in description
    # The version is the SHA-256 of the model without metadata: stable
    # across conversions of the same model.
    assert len(metadata.version) == 12
    again = convert(models["dense"], "phone", x, tmp_path / "again", verbose=0)
    assert _metadata(_read(again.tflite_path)).version == metadata.version

    (subgraph,) = metadata.subgraphMetadata
    (image,) = subgraph.inputTensorMetadata
    assert image.content.contentPropertiesType == 2  # ImageProperties
    assert image.content.contentProperties.colorSpace == 1  # RGB
    options = image.processUnits[0].options
    assert list(options.mean) == [0.0] and list(options.std) == [255.0]
    assert list(image.stats.min) == [0.0] and list(image.stats.max) == [1.0]
    (scores,) = subgraph.outputTensorMetadata
    (labels,) = scores.associatedFiles
    assert labels.name == b"labels.txt" and labels.type == 2  # AXIS_LABELS

    # The label file is packed as the zip the metadata spec appends.
    with zipfile.ZipFile(io.BytesIO(model_bytes)) as archive:
        assert archive.namelist() == ["labels.txt"]
        assert archive.read("labels.txt").decode().splitlines() == NAMES
    # Its cost, as reported: the metadata buffer, the archive, framing.
    plain = _flatbuffer.read_model(model_bytes)
    (entry,) = [m for m in plain.metadata if m.name == b"TFLITE_METADATA"]
    plain.metadata.remove(entry)
    plain.buffers[entry.buffer].data = None
    without = _flatbuffer.write_model(plain)
    cost = result.report.android.metadata_bytes
    assert abs(len(model_bytes) - len(without) - cost) <= 32
    assert 500 < cost < 4096


@pytest.mark.slow
def test_uint8_input_carries_the_pixels_normalization(gray_model, tmp_path):
    """uint8 input: quantization (scale 1 / std, zero point mean) is the
    metadata's normalisation; int8 inputs are refused by MediaPipe, and the
    report says so."""
    model, x = gray_model
    result = convert(
        model, "phone", x, tmp_path / "u8", io_dtype="uint8", verbose=0
    )
    report = result.report
    assert report.input["dtype"] == report.output["dtype"] == "uint8"
    mean, std = _image_spec(_read(result.tflite_path))
    assert report.input["zero_point"] == mean[0] == 0
    assert report.input["scale"] == pytest.approx(1 / std[0])
    result = convert(
        model, "phone", x, tmp_path / "i8", io_dtype="int8", verbose=0
    )
    clients = {c.client: c for c in result.report.android.clients}
    mediapipe = clients["MediaPipe Tasks ImageClassifier"]
    assert mediapipe.accepted is False
    assert "got INT8" in mediapipe.message
    assert clients["LiteRT CompiledModel"].accepted


@pytest.mark.slow
def test_per_channel_normalization_goes_into_the_graph(tmp_path):
    """ImageNet mean / std per channel (the ResNets' preprocess_input):
    MediaPipe refuses per-channel values, so the model takes raw pixels
    and normalises them itself."""
    pixels = _images((32, 32, 3), seed=2)
    x = applications.resnet.preprocess_input(pixels.astype("float32"))
    model = _trained(
        applications.GroupNLResNet8(input_shape=(32, 32, 3), classes=10), x
    )
    result = convert(model, "phone", x, tmp_path, class_names=NAMES, verbose=0)
    android = result.report.android
    assert "ImageNet" in android.normalization_source
    assert (android.mean, android.std) == ([0.0], [1.0])
    (stage,) = android.input_stage
    assert "per-channel" in stage
    model_bytes = _read(result.tflite_path)
    _assert_android_clients(
        model_bytes, _images((32, 32, 3), seed=7)[:IMAGES], NAMES
    )
    assert result.report.top1_agreement >= 0.9


# --------------------------------------------------------------------------
# Choices and refusals.


@pytest.mark.slow
def test_grayscale_kept_when_asked_and_mediapipe_says_why(gray_model, tmp_path):
    model, x = gray_model
    result = convert(model, "phone", x, tmp_path, rgb_input=False, verbose=0)
    android = result.report.android
    assert android.color_space == "GRAYSCALE" and android.input_stage == []
    assert result.report.input["shape"] == [1, 28, 28, 1]
    image = _metadata(_read(result.tflite_path)).subgraphMetadata[0]
    content = image.inputTensorMetadata[0].content.contentProperties
    assert content.colorSpace == 2  # GRAYSCALE
    clients = {c.client: c for c in android.clients}
    mediapipe = clients["MediaPipe Tasks ImageClassifier"]
    assert mediapipe.accepted is False
    assert "RGB" in mediapipe.message or "depth" in mediapipe.message


def test_normalization_is_inferred_from_the_data():
    pixels = np.linspace(0, 255, 4 * 8 * 8 * 3).reshape(4, 8, 8, 3)
    cases = {
        "raw pixels": (pixels, (0.0,) * 3, (1.0,) * 3),
        "pixels / 255, in [0, 1]": (pixels / 255, (0.0,) * 3, (255.0,) * 3),
        "pixels / 127.5 - 1, in [-1, 1]": (
            pixels / 127.5 - 1,
            (127.5,) * 3,
            (127.5,) * 3,
        ),
    }
    for source, (x, mean, std) in cases.items():
        found = _normalization.infer(x.astype("float32"))
        assert (found.source, found.mean, found.std) == (source, mean, std)
    imagenet = applications.resnet.preprocess_input(pixels.astype("float32"))
    found = _normalization.infer(imagenet)
    assert found.per_channel and "ImageNet" in found.source
    np.testing.assert_allclose(found.mean, (123.675, 116.28, 103.53), rtol=1e-4)
    np.testing.assert_allclose(found.std, (58.395, 57.12, 57.375), rtol=1e-4)
    noise = np.random.default_rng(0).normal(0, 3, (4, 8, 8, 3))
    assert _normalization.infer(noise.astype("float32")) is None


@pytest.fixture(scope="module")
def tiny_model():
    inputs = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(4, 3)(inputs)
    y = keras.layers.GlobalAveragePooling2D()(y)
    return keras.Model(inputs, keras.layers.Dense(3)(y))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(class_names=["a", "b"]), r"`class_names` has 2 names.*needs one"),
        (dict(class_names=["a", "", "c"]), r"non-empty one-line"),
        (dict(class_names=[1, 2, 3]), r"non-empty one-line.*Received"),
        (dict(class_names="missing.txt"), r"Cannot read `class_names`"),
        (dict(normalization=(0,)), r"`normalization` must be `\(mean, std\)`"),
        (dict(normalization=(0, -1)), r"std > 0.*normalization=\(0, -1\)"),
        (dict(normalization=((0, 0), 1)), r"has 2 values.*3 channel"),
        (dict(rgb_input="yes"), r"`rgb_input` must be True or False"),
        (dict(rgb_input=True), r"`rgb_input=True` needs image inputs"),
        (dict(io_dtype="uint16"), r"'float32', 'uint8' or 'int8'"),
    ],
)
def test_bad_android_arguments_write_nothing(
    tiny_model, tmp_path, kwargs, match
):
    x = np.zeros((4, 8, 8, 3), "float32")
    with pytest.raises(ValueError, match=match):
        convert(tiny_model, "phone", x, tmp_path / "out", verbose=0, **kwargs)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(class_names=["a", "b", "c"]),
        dict(normalization=(0, 255)),
        dict(rgb_input=False),
        dict(io_dtype="uint8"),
    ],
)
def test_mcu_takes_no_android_options(tiny_model, tmp_path, kwargs):
    """TFLite Micro reads no metadata: the options are refused, and the
    MCU file stays stripped (tests in test_converters check the rest)."""
    x = np.zeros((4, 8, 8, 3), "float32")
    with pytest.raises(ValueError, match=r"phone|full-integer"):
        convert(tiny_model, "mcu", x, tmp_path / "out", verbose=0, **kwargs)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_mcu_file_has_no_metadata_or_packed_files(gray_model, tmp_path):
    model, x = gray_model
    result = convert(model, "mcu", x[:32], tmp_path, verbose=0)
    model_bytes = _read(result.tflite_path)
    entries = _flatbuffer.read_model(model_bytes).metadata
    # Only the offline arena plan, which TFLite Micro reads.
    assert [m.name for m in entries] == [b"OfflineMemoryAllocation"]
    assert not zipfile.is_zipfile(io.BytesIO(model_bytes))
    assert result.report.android is None
    assert result.report.input["shape"] == [1, 28, 28, 1]


@pytest.mark.slow
def test_uint8_io_for_a_model_that_takes_no_images(tmp_path):
    """uint8 I/O works for any model: the uint8 input has the int8 input's
    scale (zero point + 128); the classes are named by index."""
    from keras_groupnl.layers import GroupNLConv2D

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    y = GroupNLConv2D(8, 3, padding="same", seed=0)(inputs)
    y = keras.layers.GlobalAveragePooling2D()(y)
    model = keras.Model(inputs, keras.layers.Dense(3)(y))
    x = np.random.default_rng(0).normal(0, 1, (64, 8, 8, 3)).astype("float32")
    result = convert(model, "phone", x, tmp_path, io_dtype="uint8", verbose=0)
    model_bytes = _read(result.tflite_path)
    assert result.report.android.color_space is None
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_bytes)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    assert inp["dtype"] == out["dtype"] == np.uint8
    scale, zero = inp["quantization"]
    out_scale, out_zero = out["quantization"]
    scores = []
    for sample in x:
        q = np.clip(np.round(sample / scale) + zero, 0, 255).astype(np.uint8)
        interpreter.set_tensor(inp["index"], q[None])
        interpreter.invoke()
        raw = interpreter.get_tensor(out["index"])[0].astype(float)
        scores.append((raw - out_zero) * out_scale)
    reference = model.predict(x, verbose=0)
    agreement = np.mean(np.argmax(scores, 1) == reference.argmax(1))
    assert agreement >= 0.9
    with zipfile.ZipFile(io.BytesIO(model_bytes)) as archive:
        assert archive.read("labels.txt").decode().split() == ["0", "1", "2"]
