"""The phone target's Android step, applied to the converted bytes.

After the target's own conversion, and before the file is checked and
verified like any phone model:

1. `_android_io`: the input (and, for uint8, output) edges that Android's
   image clients need: RGB input for 1-channel models, normalisation in
   the graph where the clients cannot apply it, uint8 I/O;
2. `_metadata`: the TFLite model metadata (image properties,
   normalisation, stats, names, GroupNL settings) and the packed label
   file.

`check_clients` then runs the final file in Android's clients
(`_clients`).
"""

import dataclasses
import hashlib
import typing

import numpy as np

from keras_groupnl.converters import _android_io
from keras_groupnl.converters import _clients
from keras_groupnl.converters import _flatbuffer as fb
from keras_groupnl.converters import _metadata
from keras_groupnl.converters import _normalization
from keras_groupnl.converters import _report

LABELS_FILE = "labels.txt"


@dataclasses.dataclass
class Prepared:
    """A phone model made ready for Android.

    Attributes:
        converted: the target's `Converted`, with the final bytes.
        plan: the `InputPlan` (how verification samples reach the model).
        android: the report's `Android` section (clients still empty).
    """

    converted: typing.Any
    plan: _android_io.InputPlan
    android: _report.Android


def prepare(converted, model, calibration, options):
    """Rewrites the I/O edges and attaches the metadata; a `Prepared`."""
    normalization = _normalization.resolve(
        options["normalization"], calibration
    )
    plan = _android_io.plan(
        normalization,
        calibration.shape[-1],
        options["io_dtype"],
        options["rgb_input"],
    )
    core, op_layers = _android_io.apply(
        converted.model_bytes, converted.op_layers, plan
    )
    names = options["class_names"]
    info = _model_info(model, plan, core, names, calibration)
    final = _metadata.attach(core, info)
    mean_std = plan.client_normalization
    android = _report.Android(
        color_space=info.input.color_space,
        input_stage=plan.describe(),
        mean=None if mean_std is None else list(mean_std[0]),
        std=None if mean_std is None else list(mean_std[1]),
        normalization_source=(
            None if normalization is None else normalization.source
        ),
        class_names="given" if names else "class indices",
        labels_file=info.output.labels_file,
        # Against the same model written the same way without metadata.
        metadata_bytes=len(final) - len(fb.write_model(fb.read_model(core))),
    )
    converted = dataclasses.replace(
        converted, model_bytes=final, op_layers=op_layers
    )
    return Prepared(converted, plan, android)


def check_clients(prepared, x):
    """Runs the final file in Android's clients; fills `android.clients`."""
    prepared.android.clients = _clients.check(
        prepared.converted.model_bytes, prepared.plan, x
    )


def _model_info(model, plan, model_bytes, class_names, calibration):
    """The `ModelInfo` of a converted phone model."""
    flat = fb.read_model(model_bytes)
    subgraph = flat.subgraphs[0]
    output = subgraph.tensors[int(subgraph.outputs[0])]
    classes = int(output.shape[-1]) if len(output.shape) == 2 else None
    files = {}
    labels = None
    if classes is not None:
        names = class_names or [str(i) for i in range(classes)]
        files[LABELS_FILE] = ("\n".join(names) + "\n").encode("utf-8")
        labels = LABELS_FILE
    from keras_groupnl import __version__

    description = (
        f"{_what(plan, classes)}, converted to int8 for LiteRT (XNNPACK) "
        f"by keras-groupnl {__version__}. {groupnl_settings(model)}"
    )
    return _metadata.ModelInfo(
        name=model.name,
        description=description,
        version=hashlib.sha256(model_bytes).hexdigest()[:12],
        author=None,
        input=_input_info(plan, calibration),
        output=_metadata.TensorInfo(
            name="scores",
            description="Class scores (higher: more likely); the class "
            "names are in the label file."
            if labels
            else "The model output.",
            labels_file=labels,
        ),
        files=files,
    )


def _what(plan, classes):
    if plan.normalization is None:
        return "Model"
    what = f"Image classifier ({classes} classes)" if classes else "Image model"
    color = "RGB" if plan.client_channels == 3 else "grayscale"
    return f"{what} for {color} images"


def _input_info(plan, calibration):
    """The input's `TensorInfo`: an image, or a feature tensor."""
    if plan.normalization is None:
        return _metadata.TensorInfo(
            name="input",
            description="Model input (not taken for an image).",
            minimum=(float(calibration.min()),),
            maximum=(float(calibration.max()),),
        )
    mean, std = plan.client_normalization
    if plan.io_dtype == "float32":
        low = tuple((0.0 - m) / s for m, s in zip(mean, std))
        high = tuple((255.0 - m) / s for m, s in zip(mean, std))
    else:
        info = np.iinfo(plan.io_dtype)
        low, high = (float(info.min),), (float(info.max),)
    color = "RGB" if plan.client_channels == 3 else "GRAYSCALE"
    return _metadata.TensorInfo(
        name="image",
        description=f"{color} image; the model takes (pixel - mean) / std.",
        color_space=color,
        mean=mean,
        std=std,
        minimum=low,
        maximum=high,
    )


def groupnl_settings(model):
    """The GroupNL layers' settings in one sentence."""
    from keras_groupnl.layers import BaseGroupNLConv

    configs = {}
    for layer in _all_layers(model):
        if isinstance(layer, BaseGroupNLConv):
            configs.setdefault(type(layer).__name__, []).append(
                layer.get_config()
            )
    if not configs:
        return "No GroupNL layers."
    count = sum(len(c) for c in configs.values())
    kinds = ", ".join(f"{len(c)} {name}" for name, c in configs.items())
    every = [c for group in configs.values() for c in group]
    settings = []
    for key in (
        "reduction_ratio",
        "num_groups",
        "period_range",
        "shift_range",
        "trainable_nlf",
        "shuffle",
    ):
        values = sorted({repr(_plain(c[key])) for c in every})
        settings.append(f"{key} {' / '.join(values)}")
    return f"GroupNL: {count} layers ({kinds}); " + ", ".join(settings) + "."


def _plain(value):
    return tuple(value) if isinstance(value, list) else value


def _all_layers(model):
    for layer in getattr(model, "layers", []):
        yield layer
        yield from _all_layers(layer)
