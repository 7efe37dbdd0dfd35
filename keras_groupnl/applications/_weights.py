"""The `weights=` argument: checking a weights file and loading it.

Keras matches weights by layer class and order and silently ignores what a
file holds beyond the model, so a file is compared variable by variable
(path and shape) with the model before it is loaded.
"""

import os
import tempfile
import zipfile

import h5py


def validate_weights(weights):
    """Checks `weights`: None or an existing `.weights.h5` / `.keras` file."""
    if weights is None:
        return None
    if isinstance(weights, str) and weights.lower() == "imagenet":
        raise ValueError(
            "No pretrained ImageNet weights exist for the keras-groupnl "
            "models: GroupNL models are trained from scratch (or from your "
            "own checkpoints). Use `weights=None` for random initialisation "
            "or the path to a `.weights.h5` / `.keras` file saved from the "
            f"same model. Received: weights={weights!r}"
        )
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(
            "`weights` must be None or the path to a `.weights.h5` or "
            "`.keras` file saved from the same model. "
            f"Received: weights={weights!r}"
        )
    path = os.fspath(weights)
    if not path.endswith((".weights.h5", ".keras")):
        raise ValueError(
            "`weights` must be a path ending in `.weights.h5` (from "
            "`model.save_weights`) or `.keras` (from `model.save`). "
            f"Received: weights={weights!r}"
        )
    if not os.path.isfile(path):
        raise ValueError(
            f"`weights` file does not exist. Received: weights={weights!r}"
        )
    return path


def _h5_shapes(h5file):
    """{variable path: shape} of the model variables in a Keras h5 store."""
    shapes = {}

    def visit(path, obj):
        if isinstance(obj, h5py.Dataset) and not path.startswith("optimizer"):
            shapes[path] = tuple(obj.shape)

    h5file.visititems(visit)
    return shapes


def _file_shapes(path):
    if path.endswith(".keras"):
        try:
            return _keras_archive_shapes(path)
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            raise ValueError(
                "`weights` file is not a complete Keras v3 `.keras` archive "
                f"(a zip file; {error}). Is it truncated? "
                f"Received: weights={path!r}"
            ) from None
    try:
        with h5py.File(path, "r") as h5file:
            return _h5_shapes(h5file)
    except OSError as error:
        raise ValueError(
            f"`weights` file is not a readable HDF5 file ({error}). "
            f"Received: weights={path!r}"
        ) from None


def _keras_archive_shapes(path):
    with zipfile.ZipFile(path) as archive:
        if "model.weights.h5" not in archive.namelist():
            raise ValueError(
                "`weights` file is not a Keras v3 `.keras` archive with "
                f"weights. Received: weights={path!r}"
            )
        with archive.open("model.weights.h5") as raw:
            with h5py.File(raw, "r") as h5file:
                return _h5_shapes(h5file)


def _model_shapes(model):
    with tempfile.TemporaryDirectory() as tmp:
        target = os.path.join(tmp, "expected.weights.h5")
        model.save_weights(target)
        with h5py.File(target, "r") as h5file:
            return _h5_shapes(h5file)


def load_weights(model, path):
    """Loads `path` into `model` after checking the architectures match.

    Keras matches weights by layer class and order, and silently ignores
    whatever a file holds beyond the model; comparing every variable path
    and shape first turns a file of another architecture (another depth,
    conv type, class count, head or input channel count) into one clear
    `ValueError`. Optimizer variables of a `.keras` file are not compared.
    """
    expected = _model_shapes(model)
    found = _file_shapes(path)
    if expected != found:
        missing = sorted(set(expected) - set(found))
        unexpected = sorted(set(found) - set(expected))
        mismatched = sorted(
            key
            for key in set(expected) & set(found)
            if expected[key] != found[key]
        )
        details = []
        if missing:
            details.append(
                f"{len(missing)} variables missing (e.g. {missing[0]})"
            )
        if unexpected:
            details.append(
                f"{len(unexpected)} unexpected variables (e.g. {unexpected[0]})"
            )
        if mismatched:
            key = mismatched[0]
            details.append(
                f"{len(mismatched)} shape mismatches (e.g. {key}: file "
                f"{found[key]}, model {expected[key]})"
            )
        raise ValueError(
            f"`weights` file holds weights of a different architecture than "
            f"model '{model.name}': {'; '.join(details)}. Load weights saved "
            "from the same model function with the same include_top, "
            "classes, conv_type, reduction_ratio, num_groups and input "
            f"channels. Received: weights={path!r}"
        )
    model.load_weights(path)
