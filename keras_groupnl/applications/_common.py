"""What the GroupNL application families share.

- `ConvChoice`: the one place that decides, conv by conv, whether a model
  gets a `GroupNLConv2D`, a `SparseGroupNLConv2D` or the standard layer
  (`conv_type="dense" | "sparse" | "plain"`). Every family builds its plain
  counterpart with the same builder, so comparisons are like for like.
- Argument validation in the `keras.applications` style: everything is
  checked before the first layer is made, every error is a `ValueError` that
  says what is wrong and `Received: name=value`.
- Input, pooling and weight-loading helpers, and the docstring template that
  every public model function fills in.
"""

import math
import os
import tempfile
import zipfile

import h5py
import keras
import numpy as np

from keras_groupnl import _validation
from keras_groupnl.layers import GroupNLConv2D
from keras_groupnl.layers import SparseGroupNLConv2D

CONV_TYPES = ("dense", "sparse", "plain")
POOLING_MODES = (None, "avg", "max")
STEMS = ("auto", "imagenet", "small")

# With `stem="auto"`, inputs whose smaller known side is at most this many
# pixels get the small-input stem.
SMALL_INPUT_MAX_SIDE = 64
# Smallest spatial size accepted by `input_shape`.
MIN_INPUT_SIDE = 8


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def channel_axis():
    """The channel axis of 4D tensors for the global data format."""
    return -1 if keras.config.image_data_format() == "channels_last" else 1


def check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(
            f"`{name}` must be True or False. Received: {name}={value!r}"
        )
    return bool(value)


def check_rate(value, name):
    """A dropout-like rate in [0, 1)."""
    if (
        not isinstance(value, (int, float, np.number))
        or isinstance(value, bool)
        or not math.isfinite(value)
        or not 0 <= value < 1
    ):
        raise ValueError(
            f"`{name}` must be a number in [0, 1). Received: {name}={value!r}"
        )
    return float(value)


class ConvChoice:
    """Decides which layer implements each replaceable conv of a model.

    A family builder creates one `ConvChoice` from the user's GroupNL
    arguments and asks it for every conv the method may replace: the 3x3
    convs of residual blocks (`conv`) and the depthwise convs of
    inverted-residual blocks (`depthwise`). Stems, pointwise convs,
    shortcuts, squeeze-excite convs and heads are made by the builders
    directly and are never replaced.

    - `conv_type="dense"`: `GroupNLConv2D` (full seed conv).
    - `conv_type="sparse"`: `SparseGroupNLConv2D` (seed conv grouped by
      `gcd(in_channels, seed_channels)`).
    - `conv_type="plain"`: the standard `Conv2D` / `DepthwiseConv2D` the
      method replaces, which gives the plain counterpart of the model.

    A depthwise conv only ever becomes a sparse GroupNL conv: a dense seed
    conv would cost more than the depthwise conv it replaces, so the
    inverted-residual families accept only `"sparse"` and `"plain"`.

    With `groupnl_strided=False`, convs with a stride above 1 stay standard,
    as in the public reference ResNets of the method.

    GroupNL layer number `k` (in build order, from 0) gets the NLF seed
    `seed + k` when `seed` is an int, so a model is reproducible from one
    seed while every layer draws different sinusoids.
    """

    def __init__(
        self,
        conv_type,
        reduction_ratio,
        num_groups,
        seed,
        groupnl_strided,
        kernel_initializer,
        allowed_conv_types=CONV_TYPES,
    ):
        self.validate(
            conv_type,
            reduction_ratio,
            num_groups,
            seed,
            groupnl_strided,
            allowed_conv_types,
        )
        self.conv_type = conv_type
        self.reduction_ratio = reduction_ratio
        self.num_groups = num_groups
        self.seed = seed
        self.groupnl_strided = groupnl_strided
        self.kernel_initializer = kernel_initializer
        self._count = 0

    @staticmethod
    def validate(
        conv_type,
        reduction_ratio,
        num_groups,
        seed,
        groupnl_strided,
        allowed_conv_types=CONV_TYPES,
    ):
        """Checks the GroupNL arguments that do not depend on channels."""
        if not isinstance(conv_type, str) or conv_type not in CONV_TYPES:
            raise ValueError(
                "`conv_type` must be one of 'dense' (GroupNLConv2D), "
                "'sparse' (SparseGroupNLConv2D) or 'plain' (the standard "
                "conv, the plain counterpart). "
                f"Received: conv_type={conv_type!r}"
            )
        if conv_type not in allowed_conv_types:
            raise ValueError(
                "This model replaces depthwise convs, which only have a "
                "sparse GroupNL counterpart: a dense seed conv would cost "
                "more than the depthwise conv it replaces. `conv_type` must "
                f"be one of {allowed_conv_types}. "
                f"Received: conv_type={conv_type!r}"
            )
        if (
            not isinstance(reduction_ratio, (int, float, np.number))
            or isinstance(reduction_ratio, bool)
            or not math.isfinite(reduction_ratio)
            or reduction_ratio < 1
        ):
            raise ValueError(
                "`reduction_ratio` must be a number >= 1 (the seed conv "
                "makes ceil(filters / reduction_ratio) maps). "
                f"Received: reduction_ratio={reduction_ratio!r}"
            )
        if not _is_int(num_groups) or num_groups < 1:
            raise ValueError(
                "`num_groups` must be a positive integer. "
                f"Received: num_groups={num_groups!r}"
            )
        if seed is not None and (not _is_int(seed) or seed < 0):
            raise ValueError(
                "`seed` must be None or a non-negative integer. "
                f"Received: seed={seed!r}"
            )
        check_bool(groupnl_strided, "groupnl_strided")

    def replaces(self, strides):
        """Whether a replaceable conv with these strides becomes GroupNL."""
        return self.conv_type != "plain" and (
            strides == 1 or self.groupnl_strided
        )

    def check_plan(self, convs):
        """Checks every conv the model will replace before building it.

        Args:
            convs: iterable of `(in_channels, filters, strides, name)` for
                every replaceable conv of the model.
        """
        for in_channels, filters, strides, name in convs:
            if not self.replaces(strides):
                continue
            seeds = math.ceil(filters / self.reduction_ratio)
            if self.num_groups > seeds:
                raise ValueError(
                    "`num_groups` cannot exceed the number of seed maps "
                    "ceil(filters / reduction_ratio) of any GroupNL conv; "
                    f"conv '{name}' has filters={filters}, so at most "
                    f"{seeds} groups with reduction_ratio="
                    f"{self.reduction_ratio}. Received: "
                    f"num_groups={self.num_groups}"
                )
            if self.conv_type == "sparse" and math.gcd(in_channels, seeds) == 1:
                raise ValueError(
                    "`conv_type='sparse'` groups each seed conv by "
                    "gcd(in_channels, seed_maps), which must exceed 1; conv "
                    f"'{name}' has in_channels={in_channels} and "
                    f"{seeds} seed maps. Choose another reduction_ratio or "
                    "conv_type='dense'. Received: "
                    f"reduction_ratio={self.reduction_ratio}"
                )

    def _next_seed(self):
        seed = None if self.seed is None else self.seed + self._count
        self._count += 1
        return seed

    def _groupnl_kwargs(self):
        return dict(
            reduction_ratio=self.reduction_ratio,
            num_groups=self.num_groups,
            kernel_initializer=self.kernel_initializer,
            seed=self._next_seed(),
        )

    def conv(self, filters, kernel_size, strides, name, use_bias=False):
        """A full conv of a residual block, GroupNL or standard."""
        if not self.replaces(strides):
            return keras.layers.Conv2D(
                filters,
                kernel_size,
                strides=strides,
                padding="same",
                use_bias=use_bias,
                kernel_initializer=self.kernel_initializer,
                name=name,
            )
        layer_class = (
            GroupNLConv2D if self.conv_type == "dense" else SparseGroupNLConv2D
        )
        return layer_class(
            filters,
            kernel_size,
            strides=strides,
            padding="same",
            name=name,
            **self._groupnl_kwargs(),
        )

    def depthwise(self, channels, kernel_size, strides, name):
        """A depthwise conv, or the sparse GroupNL conv replacing it."""
        if not self.replaces(strides):
            return keras.layers.DepthwiseConv2D(
                kernel_size,
                strides=strides,
                padding="same",
                use_bias=False,
                depthwise_initializer=self.kernel_initializer,
                name=name,
            )
        return SparseGroupNLConv2D(
            channels,
            kernel_size,
            strides=strides,
            padding="same",
            name=name,
            **self._groupnl_kwargs(),
        )


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
    include_top = check_bool(include_top, "include_top")
    weights_path = validate_weights(weights)
    if pooling not in POOLING_MODES:
        raise ValueError(
            "`pooling` must be None, 'avg' or 'max'. "
            f"Received: pooling={pooling!r}"
        )
    if not _is_int(classes) or classes < 1:
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
    if not _is_int(channels) or channels < 1:
        raise ValueError(f"{rule} Received: input_shape={input_shape!r}")
    for side in spatial:
        if side is not None and (not _is_int(side) or side < MIN_INPUT_SIDE):
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


def make_input(input_tensor, input_shape):
    """Returns `(model_inputs, image_tensor)`."""
    if input_tensor is None:
        image = keras.Input(shape=input_shape, name="input_layer")
        return image, image
    sources = keras.utils.get_source_inputs(input_tensor)
    return (sources[0] if len(sources) == 1 else sources), input_tensor


def global_pool(x, pooling, keepdims=False):
    """Global pooling named as in keras.applications ('avg_pool'/'max_pool')."""
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(
            keepdims=keepdims, name="max_pool"
        )(x)
    return keras.layers.GlobalAveragePooling2D(
        keepdims=keepdims, name="avg_pool"
    )(x)


def finish(inputs, x, name, weights_path):
    """Makes the functional model and loads `weights_path` if given."""
    model = keras.Model(inputs, x, name=name)
    if weights_path is not None:
        load_weights(model, weights_path)
    return model


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


BASE_DOCSTRING = """Instantiates the {title} architecture{with_groupnl}.

{summary}

The function follows `keras.applications`: same arguments, same
`include_top` / `pooling` behaviour, stable layer names. There are no
pretrained ImageNet weights; models start from random initialisation or
from weights you saved.

Which convs become GroupNL:
{groupnl_convs}

Small inputs:
{small_inputs}

Preprocessing:
{preprocessing}

Reference:
- GroupNL: Low-Resource and Robust CNN Design over Cloud and Device
  (Xie et al., IEEE TMC 2026).
{reference}

Args:
    include_top: bool, whether to include the classifier head.
        Defaults to `True`.
    weights: `None` (random initialisation) or the path to a
        `.weights.h5` / `.keras` file saved from a model built by this
        function with the same arguments. `"imagenet"` raises a
        `ValueError`: no pretrained weights exist. Defaults to `None`.
    input_tensor: optional Keras tensor (output of `keras.Input()` or of a
        layer) to use as the image input.
    input_shape: optional shape tuple without the batch axis,
        `(rows, cols, channels)` for channels_last. Any number of channels
        (1 for grayscale) and any rows / cols of at least 8, or `None`.
        Defaults to `{default_shape}` with `include_top=True` and
        `(None, None, 3)` without.
    pooling: `None`, `"avg"` or `"max"`. Without the head, the global
        pooling applied to the last feature map (`None` returns the 4D
        feature map); with the head, the pooling before the classifier
        (`None` means `"avg"`). Defaults to `None`.
    classes: int, number of classes of the head. Defaults to `{classes}`.
    classifier_activation: `None`, a callable or the name of a Keras
        activation for the head; `None` returns logits. Defaults to
        `"softmax"`.
{family_args}    conv_type: `"dense"`, `"sparse"` or `"plain"`: which layer
        implements the replaceable convs (see above). `"plain"` builds the
        standard-conv counterpart with the same builder, for like-for-like
        comparisons. {conv_type_note} Defaults to `"{default_conv_type}"`.
    reduction_ratio: number >= 1, the GroupNL seed ratio `r`: each GroupNL
        conv makes `ceil(filters / r)` seed maps. Defaults to `2`.
    num_groups: int, number of NLF groups per GroupNL conv (at most the
        number of seed maps of every GroupNL conv). Defaults to `4`.
    seed: `None` or int. GroupNL layer `k` (build order) draws its fixed
        sinusoids from `seed + k`; the NLF parameters are stored as weights
        either way, so saving and loading restores them exactly.
        Defaults to `None`.
    groupnl_strided: bool, whether convs with stride 2 become GroupNL as
        well; `False` keeps them standard, as in the public reference code.
        Defaults to `True`.
    synchronized_batchnorm: bool, whether every BatchNormalization layer
        is `BatchNormalization(synchronized=True)`: under a `tf.distribute`
        strategy (`MirroredStrategy`, ...) it normalises with the
        statistics of the global batch, as one device would; with `False`
        each replica uses those of its own share of the batch. TensorFlow
        backend only (`True` raises on the others; JAX's
        `keras.distribution` uses the global batch anyway). A `.keras` file
        of such a model loads on TensorFlow only; its weights load into the
        same model built with `False` anywhere. See `docs/distributed.md`.
        Defaults to `False`.
    name: model name. Defaults to `"{default_name}"`, or
        `"{plain_name}"` with `conv_type="plain"`.

Returns:
    A `keras.Model`.

Example:

>>> model = {example}
>>> model.compile(optimizer="adam",
...               loss="sparse_categorical_crossentropy",
...               metrics=["accuracy"])
"""
