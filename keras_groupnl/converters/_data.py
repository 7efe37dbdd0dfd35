"""The samples and labels `convert` calibrates and verifies on.

Data is an array with the batch axis first (NumPy, or anything `np.asarray`
takes: TF, JAX and torch tensors), or an iterable of such batches or of
`(x, y)` / `(x, y, sample_weight)` batches, as `tf.data` and
`keras.utils.PyDataset` yield them. An iterable is read only as far as
needed (`limit` samples), so an endless generator or a repeated dataset is
safe.
"""

import itertools

import numpy as np

# What "all the samples" means for an iterable: it may never end.
ITERABLE_LIMIT = 10_000


def _to_array(value, what):
    if isinstance(value, (str, bytes, dict)):
        raise ValueError(
            f"{what} must be an array or an iterable of arrays. "
            f"Received: a {type(value).__name__}"
        )
    try:
        return np.asarray(value)
    except Exception as error:
        raise ValueError(
            f"{what} could not be read as an array: {error}"
        ) from None


def _is_array(value):
    return (
        isinstance(value, np.ndarray)
        or hasattr(value, "__array__")
        or (hasattr(value, "shape") and hasattr(value, "dtype"))
    )


def _batches(data, argument, limit):
    """`(sample batches, label batches)` from an iterable, up to `limit`."""
    try:
        iterator = iter(data)
    except TypeError:
        raise ValueError(
            f"`{argument}` must be an array of samples or an iterable of "
            f"batches. Received: an object of type {type(data).__name__}"
        ) from None
    batches, labels, count = [], [], 0
    for item in itertools.takewhile(lambda _: count < limit, iterator):
        if isinstance(item, tuple) or (
            isinstance(item, list)
            and 1 <= len(item) <= 3
            and all(hasattr(e, "shape") for e in item)
        ):
            if not item:
                continue
            if len(item) > 1 and item[1] is not None:
                labels.append(_to_array(item[1], "A label batch"))
            item = item[0]
        batch = _to_array(item, f"A batch of `{argument}`")
        batches.append(batch)
        count += len(batch) if batch.ndim else 1
    return batches, labels


def collect(data, argument, limit, labels=None):
    """`(x, labels)` as NumPy arrays, at most `limit` samples from an
    iterable (arrays are taken whole)."""
    if data is None:
        raise ValueError(
            f"`{argument}` is required: the int8 targets calibrate every "
            "activation range on samples of the real inputs. "
            f"Received: {argument}=None"
        )
    if isinstance(data, (str, bytes, dict)):
        raise ValueError(
            f"`{argument}` must be an array of samples or an iterable of "
            f"batches (the CLI reads .npz files). Received: a "
            f"{type(data).__name__}"
        )
    if _is_array(data):
        batches, found = [_to_array(data, f"`{argument}`")], []
    else:
        batches, found = _batches(data, argument, limit)
    _check_numbers(batches, argument)
    batches = [b for b in batches if b.ndim == 0 or b.shape[0] != 0]
    if not batches:
        raise ValueError(
            f"`{argument}` is empty: the int8 targets need samples of the "
            "real inputs."
        )
    if (
        len({b.shape[1:] for b in batches}) != 1
        or len({b.ndim for b in batches}) != 1
    ):
        raise ValueError(
            f"The batches of `{argument}` have different shapes: "
            f"{sorted(str(b.shape) for b in batches)[:4]}"
        )
    x = np.concatenate(batches) if len(batches) > 1 else batches[0]
    if labels is None and found:
        labels = np.concatenate(found) if len(found) > 1 else found[0]
    if not _is_array(data):
        x = x[:limit]
        labels = None if labels is None else np.asarray(labels)[:limit]
    return x, labels


def _check_numbers(batches, argument):
    for batch in batches:
        if batch.dtype == object or batch.dtype.kind not in "iuf":
            raise ValueError(
                f"`{argument}` must hold real numbers (float or integer), "
                f"not booleans or other types. Received: dtype={batch.dtype}"
            )


def fit_to_model(x, input_shape, argument):
    """Checks the samples against the model input; float32 samples."""
    if x.ndim != len(input_shape):
        raise ValueError(
            f"`{argument}` does not fit the model: the model takes batches "
            f"of shape {_shape_str(input_shape)}, so the data needs "
            f"{len(input_shape)} axes with the batch first. "
            f"Received: {argument}.shape={x.shape}"
        )
    for got, want in zip(x.shape[1:], input_shape[1:]):
        if want is not None and got != want:
            raise ValueError(
                f"`{argument}` does not fit the model: samples have shape "
                f"{tuple(x.shape[1:])}, the model takes "
                f"{tuple(input_shape[1:])}. "
                f"Received: {argument}.shape={x.shape}"
            )
    x = x.astype(np.float32, copy=False)
    if not np.all(np.isfinite(x)):
        raise ValueError(
            f"`{argument}` contains NaN or infinite values, which cannot "
            "calibrate an int8 model."
        )
    return x


def class_labels(labels, num_samples, output_shape):
    """Integer class labels, one per sample, or `None`."""
    if labels is None:
        return None
    y = _to_array(labels, "`labels`")
    classes = output_shape[-1] if len(output_shape) == 2 else None
    if y.ndim == 2 and classes is not None and y.shape[1] == classes:
        y = np.argmax(y, axis=1)  # One-hot rows.
    elif y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.dtype.kind not in "iuf" or len(y) != num_samples:
        raise ValueError(
            "`labels` must hold one class index (or one-hot row) per sample "
            f"({num_samples} samples). Received: labels with shape {y.shape} "
            f"and dtype {y.dtype}"
        )
    if y.dtype.kind == "f" and not np.all(np.mod(y, 1) == 0):
        raise ValueError("`labels` must be integer class indices.")
    y = y.astype(np.int64)
    if classes is None:
        raise ValueError(
            "`labels` are given, but the model output is not a "
            f"(batch, classes) tensor: {output_shape}"
        )
    if y.min() < 0 or y.max() >= classes:
        raise ValueError(
            f"`labels` must be class indices in [0, {classes}). "
            f"Received: values from {y.min()} to {y.max()}"
        )
    return y


def _shape_str(shape):
    return (
        "(" + ", ".join("batch" if d is None else str(d) for d in shape) + ")"
    )


def subclassed_output_shape(model, x):
    """The output shape of a model without symbolic inputs, from one call."""
    if not model.built:
        raise ValueError(
            f"Model '{model.name}' is not built; call it on data before "
            "converting it."
        )
    try:
        output = model(x[:1], training=False)
    except Exception as error:
        raise ValueError(
            "`representative_data` does not fit the model: calling it on one "
            f"sample of shape {x.shape[1:]} failed: {error}"
        ) from None
    if isinstance(output, (list, tuple, dict)):
        raise ValueError(
            "`convert` supports models with one input and one output. "
            f"Received: model '{model.name}' returning a "
            f"{type(output).__name__}"
        )
    return (None,) + tuple(output.shape[1:])
