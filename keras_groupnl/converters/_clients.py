"""The converted phone file in the clients Android apps run it with.

`check` runs the final `.tflite` bytes (metadata and packed label file
included) on the same camera-like uint8 images in:

- LiteRT's `Interpreter` (the reference: what the report verified),
- LiteRT's `CompiledModel` API (`ai_edge_litert.compiled_model`, the
  Python twin of the Kotlin / C++ `CompiledModel`),
- MediaPipe Tasks' `vision.ImageClassifier` (PyPI `mediapipe`, the Python
  twin of the Android Tasks API), when `mediapipe` is installed: it reads
  the metadata (normalisation, label file) itself,

and records, per client, whether it accepted the file and how often its
top-1 class equals the Interpreter's (a tie of the highest scores counts
as equal: quantized outputs tie).
"""

import importlib.metadata

import numpy as np

from keras_groupnl.converters import _native_logs
from keras_groupnl.converters import _report
from keras_groupnl.converters import _runtime

# Images each client classifies.
IMAGES = 32
INTERPRETER = "LiteRT Interpreter"
COMPILED_MODEL = "LiteRT CompiledModel"
MEDIAPIPE = "MediaPipe Tasks ImageClassifier"


def check(model_bytes, input_plan, x):
    """`[ClientCheck]` of `model_bytes` on the images of samples `x`."""
    x = x[:IMAGES]
    if input_plan.normalization is not None:
        pixels = input_plan.to_pixels(x)
        client_x = input_plan.from_pixels(pixels)
    else:
        pixels, client_x = None, input_plan.to_client(x)
    runner = _runtime.LiteRTRunner(model_bytes)
    reference = runner.predict(client_x)
    results = [
        _report.ClientCheck(
            client=INTERPRETER,
            version=_version("ai-edge-litert"),
            accepted=True,
            top1_agreement=1.0,
            images=len(x),
            message="the reference: the runtime the report verified",
        ),
        _compiled_model(model_bytes, runner, client_x, reference),
        _mediapipe(model_bytes, pixels, reference),
    ]
    return results


def _version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def agreement(reference, top1):
    """Share of images whose `top1` is (tied for) the reference's top-1;
    `None` for a model that is not a classifier (outputs not `(n, k)`)."""
    if reference.ndim != 2:
        return None
    best = reference.max(axis=1)
    chosen = reference[np.arange(len(reference)), top1]
    return float(np.mean(chosen >= best))


def _refused(client, error, images):
    text = " ".join(str(error).split())[:400]
    package = "mediapipe" if client == MEDIAPIPE else "ai-edge-litert"
    return _report.ClientCheck(
        client=client,
        version=_version(package),
        accepted=False,
        top1_agreement=None,
        images=images,
        message=f"{type(error).__name__}: {text}",
    )


def _compiled_model(model_bytes, runner, client_x, reference):
    """LiteRT's CompiledModel API on the CPU."""
    from ai_edge_litert.compiled_model import CompiledModel

    raw = [_runtime.quantize(s[None], runner.input_detail) for s in client_x]
    out_detail = runner.output_detail
    try:
        with _native_logs.captured():
            model = CompiledModel.from_buffer(bytes(model_bytes))
            inputs = model.create_input_buffers(0)
            outputs = model.create_output_buffers(0)
            size = int(np.prod(reference.shape[1:]))
            top1 = []
            for sample in raw:
                inputs[0].write(sample)
                model.run_by_index(0, inputs, outputs)
                y = outputs[0].read(size, np.dtype(out_detail["dtype"]))
                top1.append(int(np.argmax(y)))
    except Exception as error:  # LiteRT raises several types.
        return _refused(COMPILED_MODEL, error, len(raw))
    return _report.ClientCheck(
        client=COMPILED_MODEL,
        version=_version("ai-edge-litert"),
        accepted=True,
        top1_agreement=agreement(reference, np.asarray(top1)),
        images=len(raw),
        message="CPU",
    )


def _mediapipe(model_bytes, pixels, reference):
    """MediaPipe Tasks' ImageClassifier, from the model buffer."""
    version = _version("mediapipe")
    if version is None or pixels is None or reference.ndim != 2:
        if version is None:
            why = "mediapipe is not installed"
        elif pixels is None:
            why = "the input is not taken for images (pass `normalization`)"
        else:
            why = "the model is not an image classifier"
        return _report.ClientCheck(
            client=MEDIAPIPE,
            version=version,
            accepted=None,
            top1_agreement=None,
            images=0,
            message=f"not tried: {why}",
        )
    try:
        top1, names = _classify(model_bytes, pixels)
    except Exception as error:  # MediaPipe raises several types.
        return _refused(MEDIAPIPE, error, len(pixels))
    named = all(names)
    return _report.ClientCheck(
        client=MEDIAPIPE,
        version=version,
        accepted=True,
        top1_agreement=agreement(reference, np.asarray(top1)),
        images=len(pixels),
        message=(
            "named categories, e.g. " + repr(names[0])
            if named
            else "categories without names"
        ),
    )


def _classify(model_bytes, pixels):
    """Top-1 index and name of each image from MediaPipe."""
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    options = vision.ImageClassifierOptions(
        base_options=BaseOptions(model_asset_buffer=bytes(model_bytes)),
        max_results=1,
    )
    top1, names = [], []
    with _native_logs.captured():
        with vision.ImageClassifier.create_from_options(options) as classifier:
            for image in pixels:
                if image.shape[-1] == 1:
                    image = image[..., 0]
                    kind = mp.ImageFormat.GRAY8
                else:
                    kind = mp.ImageFormat.SRGB
                data = np.ascontiguousarray(image)
                result = classifier.classify(
                    mp.Image(image_format=kind, data=data)
                )
                (category,) = result.classifications[0].categories
                top1.append(category.index)
                names.append(category.category_name)
    return top1, names
