"""The `keras.applications` arguments of every GroupNL model, checked.

Everything is checked before the first layer is made; every error is a
`ValueError` that says what is wrong and `Received: name=value`.
"""

import math

import keras

from keras_groupnl import _validation
from keras_groupnl.applications import _weights

POOLING_MODES = (None, "avg", "max")
STEMS = ("auto", "imagenet", "small")

# With `stem="auto"`, inputs whose smaller known side is at most this many
# pixels get the small-input stem.
SMALL_INPUT_MAX_SIDE = 64
# Smallest spatial size accepted by `input_shape`.
MIN_INPUT_SIDE = 8


def check_rate(value, name):
    """A dropout-like rate in [0, 1)."""
    if (
        not _validation.is_number(value)
        or not math.isfinite(value)
        or not 0 <= value < 1
    ):
        raise ValueError(
            f"`{name}` must be a number in [0, 1). Received: {name}={value!r}"
        )
    return float(value)


def validate_common(
    *,
    include_top,
    weights,
    input_tensor,
    input_shape,
    pooling,
    classes,
    classifier_activation,
    default_size,
):
    """Validates the `keras.applications` arguments, before any building.

    Returns:
        `(weights_path, input_shape)`, the shape resolved from `input_shape`,
        `input_tensor` and the defaults: `default_size` x `default_size` x 3
        with `include_top=True`, `(None, None, 3)` without (channels first
        with the `"channels_first"` data format).
    """
    include_top = _validation.boolean(include_top, "include_top")
    weights_path = _weights.validate_weights(weights)
    if pooling not in POOLING_MODES:
        raise ValueError(
            "`pooling` must be None, 'avg' or 'max'. "
            f"Received: pooling={pooling!r}"
        )
    if not _validation.is_int(classes) or classes < 1:
        raise ValueError(
            "`classes` must be a positive integer. "
            f"Received: classes={classes!r}"
        )
    if classifier_activation is not None and not callable(
        classifier_activation
    ):
        try:
            keras.activations.get(classifier_activation)
        except (ValueError, TypeError):
            raise ValueError(
                "`classifier_activation` must be None, a callable or the "
                "name of a Keras activation such as 'softmax'. "
                f"Received: classifier_activation={classifier_activation!r}"
            ) from None

    channels_last = keras.config.image_data_format() == "channels_last"
    if input_tensor is not None:
        if not isinstance(input_tensor, keras.KerasTensor):
            raise ValueError(
                "`input_tensor` must be a Keras tensor, the output of "
                "`keras.Input(...)` or of a Keras layer. "
                f"Received: input_tensor={input_tensor!r}"
            )
        if len(input_tensor.shape) != 4:
            raise ValueError(
                "`input_tensor` must be a 4D image batch. "
                f"Received: input_tensor with shape {input_tensor.shape}"
            )
        tensor_shape = tuple(input_tensor.shape[1:])
        if input_shape is not None and (
            len(tuple(input_shape)) != 3
            or any(
                a is not None and b is not None and a != b
                for a, b in zip(tuple(input_shape), tensor_shape)
            )
        ):
            raise ValueError(
                "`input_shape` and `input_tensor` disagree. Received: "
                f"input_shape={input_shape!r}, input_tensor shape="
                f"{input_tensor.shape}"
            )
        input_shape = tensor_shape
    elif input_shape is None:
        size = default_size if include_top else None
        input_shape = (size, size, 3) if channels_last else (3, size, size)

    try:
        input_shape = tuple(input_shape)
    except TypeError:
        input_shape = None
    rule = (
        "`input_shape` must be a tuple of 3 entries, (rows, cols, channels) "
        "for channels_last or (channels, rows, cols) for channels_first, "
        "with a positive number of channels and rows and cols None or at "
        f"least {MIN_INPUT_SIDE}."
    )
    if input_shape is None or len(input_shape) != 3:
        raise ValueError(f"{rule} Received: input_shape={input_shape!r}")
    channels = input_shape[-1] if channels_last else input_shape[0]
    spatial = input_shape[:2] if channels_last else input_shape[1:]
    if not _validation.is_int(channels) or channels < 1:
        raise ValueError(f"{rule} Received: input_shape={input_shape!r}")
    for side in spatial:
        too_small = not _validation.is_int(side) or side < MIN_INPUT_SIDE
        if side is not None and too_small:
            raise ValueError(f"{rule} Received: input_shape={input_shape!r}")
    return weights_path, input_shape


def resolve_stem(stem, input_shape):
    """Chooses "imagenet" or "small" for `stem="auto"`."""
    if not isinstance(stem, str) or stem not in STEMS:
        raise ValueError(
            "`stem` must be 'auto', 'imagenet' or 'small'. "
            f"Received: stem={stem!r}"
        )
    if stem != "auto":
        return stem
    if keras.config.image_data_format() == "channels_last":
        spatial = input_shape[:2]
    else:
        spatial = input_shape[1:]
    known = [side for side in spatial if side is not None]
    if known and min(known) <= SMALL_INPUT_MAX_SIDE:
        return "small"
    return "imagenet"


def check_synchronized_batchnorm(value):
    """Checks `synchronized_batchnorm`: a bool, `True` only on TensorFlow.

    Keras' `BatchNormalization(synchronized=True)` reduces the batch
    statistics across the replicas of a `tf.distribute` strategy and raises
    on the other backends; saying so here names the model argument.
    """
    value = _validation.boolean(value, "synchronized_batchnorm")
    if value and keras.backend.backend() != "tensorflow":
        raise ValueError(
            "`synchronized_batchnorm=True` needs the TensorFlow backend: it "
            "builds `BatchNormalization(synchronized=True)`, which reduces "
            "batch statistics across `tf.distribute` replicas. JAX's "
            "`keras.distribution` computes them over the global batch "
            "already. Received: synchronized_batchnorm=True with the "
            f"{keras.backend.backend()!r} backend"
        )
    return value


def check_name(name, default):
    if name is None:
        return default
    if not isinstance(name, str) or not name:
        raise ValueError(
            "`name` must be None or a non-empty string. "
            f"Received: name={name!r}"
        )
    return name
