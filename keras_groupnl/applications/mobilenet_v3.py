"""GroupNL MobileNetV3 Small and Large.

The plain counterparts (`conv_type="plain"`) are layer for layer the
`keras.applications` MobileNetV3 models (same parameter count); the GroupNL
models replace the depthwise conv of every inverted-residual block by a
sparse GroupNL conv.
"""

import math

import keras

from keras_groupnl import _validation
from keras_groupnl.applications import _arguments
from keras_groupnl.applications import _assembly
from keras_groupnl.applications import _conv_choice
from keras_groupnl.applications import _docstring

# Stack descriptions, one row per inverted-residual block:
# (expansion, filters, kernel, stride, squeeze-excite, activation).
# kernel "k": 5, or 3 when minimalistic. activation "hswish": hard swish, or
# ReLU when minimalistic. Squeeze-excite is dropped when minimalistic.
_STACKS = {
    "small": (
        (
            (1, 16, 3, 2, True, "relu"),
            (72.0 / 16, 24, 3, 2, False, "relu"),
            (88.0 / 24, 24, 3, 1, False, "relu"),
            (4, 40, "k", 2, True, "hswish"),
            (6, 40, "k", 1, True, "hswish"),
            (6, 40, "k", 1, True, "hswish"),
            (3, 48, "k", 1, True, "hswish"),
            (3, 48, "k", 1, True, "hswish"),
            (6, 96, "k", 2, True, "hswish"),
            (6, 96, "k", 1, True, "hswish"),
            (6, 96, "k", 1, True, "hswish"),
        ),
        1024,
    ),
    "large": (
        (
            (1, 16, 3, 1, False, "relu"),
            (4, 24, 3, 2, False, "relu"),
            (3, 24, 3, 1, False, "relu"),
            (3, 40, "k", 2, True, "relu"),
            (3, 40, "k", 1, True, "relu"),
            (3, 40, "k", 1, True, "relu"),
            (6, 80, 3, 2, False, "hswish"),
            (2.5, 80, 3, 1, False, "hswish"),
            (2.3, 80, 3, 1, False, "hswish"),
            (2.3, 80, 3, 1, False, "hswish"),
            (6, 112, 3, 1, True, "hswish"),
            (6, 112, 3, 1, True, "hswish"),
            (6, 160, "k", 2, True, "hswish"),
            (6, 160, "k", 1, True, "hswish"),
            (6, 160, "k", 1, True, "hswish"),
        ),
        1280,
    ),
}
_STEM_FILTERS = 16
_SE_RATIO = 0.25
_KERNEL_INITIALIZER = "glorot_uniform"


def _depth(value, divisor=8, min_value=None):
    """Rounds a channel count to a multiple of 8 (the TF reference rule)."""
    if min_value is None:
        min_value = divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


def _batch_norm(name, synchronized):
    return keras.layers.BatchNormalization(
        axis=_assembly.channel_axis(),
        epsilon=1e-3,
        momentum=0.999,
        synchronized=synchronized,
        name=name,
    )


def _activation(kind, name):
    return keras.layers.Activation(
        "relu" if kind == "relu" else "hard_swish", name=name
    )


def _resolve_block(row, alpha, minimalistic):
    expansion, filters, kernel, stride, se, act = row
    if kernel == "k":
        kernel = 3 if minimalistic else 5
    if act == "hswish" and minimalistic:
        act = "relu"
    se_ratio = _SE_RATIO if se and not minimalistic else None
    return expansion, _depth(filters * alpha), kernel, stride, se_ratio, act


def _se_block(inputs, filters, se_ratio, prefix):
    x = keras.layers.GlobalAveragePooling2D(
        keepdims=True, name=f"{prefix}squeeze_excite_avg_pool"
    )(inputs)
    x = keras.layers.Conv2D(
        _depth(filters * se_ratio),
        1,
        padding="same",
        name=f"{prefix}squeeze_excite_conv",
    )(x)
    x = keras.layers.ReLU(name=f"{prefix}squeeze_excite_relu")(x)
    x = keras.layers.Conv2D(
        filters, 1, padding="same", name=f"{prefix}squeeze_excite_conv_1"
    )(x)
    x = keras.layers.Activation(
        "hard_sigmoid", name=f"{prefix}squeeze_excite_hard_sigmoid"
    )(x)
    return keras.layers.Multiply(name=f"{prefix}squeeze_excite_mul")(
        [inputs, x]
    )


def _prefix(block_id):
    return f"expanded_conv_{block_id}_" if block_id else "expanded_conv_"


def _inverted_res_block(x, block, block_id, choice, synchronized):
    expansion, filters, kernel, stride, se_ratio, act = block
    shortcut = x
    prefix = _prefix(block_id)
    in_filters = x.shape[_assembly.channel_axis()]
    mid = _depth(in_filters * expansion) if block_id else in_filters
    if block_id:
        x = keras.layers.Conv2D(
            mid,
            1,
            padding="same",
            use_bias=False,
            kernel_initializer=_KERNEL_INITIALIZER,
            name=f"{prefix}expand",
        )(x)
        x = _batch_norm(f"{prefix}expand_bn", synchronized)(x)
        x = _activation(act, f"{prefix}expand_act")(x)
    x = choice.depthwise(mid, kernel, stride, f"{prefix}depthwise")(x)
    x = _batch_norm(f"{prefix}depthwise_bn", synchronized)(x)
    x = _activation(act, f"{prefix}depthwise_act")(x)
    if se_ratio:
        x = _se_block(x, mid, se_ratio, prefix)
    x = keras.layers.Conv2D(
        filters,
        1,
        padding="same",
        use_bias=False,
        kernel_initializer=_KERNEL_INITIALIZER,
        name=f"{prefix}project",
    )(x)
    x = _batch_norm(f"{prefix}project_bn", synchronized)(x)
    if stride == 1 and in_filters == filters:
        x = keras.layers.Add(name=f"{prefix}add")([shortcut, x])
    return x


def _mobilenet_v3(
    model_type,
    *,
    input_shape,
    alpha,
    minimalistic,
    include_top,
    weights,
    input_tensor,
    classes,
    pooling,
    dropout_rate,
    classifier_activation,
    include_preprocessing,
    name,
    stem="auto",
    conv_type="sparse",
    reduction_ratio=2,
    num_groups=4,
    seed=None,
    groupnl_strided=True,
    synchronized_batchnorm=False,
    period_range=_conv_choice.DEFAULT_PERIOD_RANGE,
    shift_range=_conv_choice.DEFAULT_SHIFT_RANGE,
    trainable_nlf=False,
):
    """Builds MobileNetV3 `model_type` ("small" or "large")."""
    weights_path, input_shape = _arguments.validate_common(
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        default_size=224,
    )
    if (
        not isinstance(alpha, (int, float))
        or isinstance(alpha, bool)
        or not math.isfinite(alpha)
        or alpha <= 0
    ):
        raise ValueError(
            "`alpha` must be a positive number (the width multiplier). "
            f"Received: alpha={alpha!r}"
        )
    minimalistic = _validation.boolean(minimalistic, "minimalistic")
    dropout_rate = _arguments.check_rate(dropout_rate, "dropout_rate")
    include_preprocessing = _validation.boolean(
        include_preprocessing, "include_preprocessing"
    )
    synchronized_batchnorm = _arguments.check_synchronized_batchnorm(
        synchronized_batchnorm
    )
    stem = _arguments.resolve_stem(stem, input_shape)
    model_id = f"mobilenet_v3_{model_type}"
    name = _arguments.check_name(
        name, model_id if conv_type == "plain" else f"groupnl_{model_id}"
    )
    choice = _conv_choice.ConvChoice(
        conv_type,
        reduction_ratio,
        num_groups,
        seed,
        groupnl_strided,
        kernel_initializer=_KERNEL_INITIALIZER,
        allowed_conv_types=("sparse", "plain"),
        period_range=period_range,
        shift_range=shift_range,
        trainable_nlf=trainable_nlf,
    )
    rows, last_point_ch = _STACKS[model_type]
    blocks = [_resolve_block(row, alpha, minimalistic) for row in rows]
    plan, in_filters = [], _STEM_FILTERS
    for block_id, (expansion, filters, _, stride, _, _) in enumerate(blocks):
        mid = _depth(in_filters * expansion) if block_id else in_filters
        plan.append((mid, mid, stride, f"{_prefix(block_id)}depthwise"))
        in_filters = filters
    choice.check_plan(plan)
    model_act = "relu" if minimalistic else "hswish"

    inputs, x = _assembly.make_input(input_tensor, input_shape)
    if include_preprocessing:
        x = keras.layers.Rescaling(
            scale=1.0 / 127.5, offset=-1.0, name="rescaling"
        )(x)
    x = keras.layers.Conv2D(
        _STEM_FILTERS,
        3,
        strides=2 if stem == "imagenet" else 1,
        padding="same",
        use_bias=False,
        kernel_initializer=_KERNEL_INITIALIZER,
        name="conv",
    )(x)
    x = _batch_norm("conv_bn", synchronized_batchnorm)(x)
    x = _activation(model_act, "conv_act")(x)
    for block_id, block in enumerate(blocks):
        x = _inverted_res_block(
            x, block, block_id, choice, synchronized_batchnorm
        )

    last_conv_ch = _depth(x.shape[_assembly.channel_axis()] * 6)
    if alpha > 1.0:
        last_point_ch = _depth(last_point_ch * alpha)
    x = keras.layers.Conv2D(
        last_conv_ch,
        1,
        padding="same",
        use_bias=False,
        kernel_initializer=_KERNEL_INITIALIZER,
        name="conv_1",
    )(x)
    x = _batch_norm("conv_1_bn", synchronized_batchnorm)(x)
    x = _activation(model_act, "conv_1_act")(x)
    if include_top:
        x = _assembly.global_pool(x, pooling or "avg", keepdims=True)
        x = keras.layers.Conv2D(
            last_point_ch, 1, padding="same", use_bias=True, name="conv_2"
        )(x)
        x = _activation(model_act, "conv_2_act")(x)
        if dropout_rate > 0:
            x = keras.layers.Dropout(dropout_rate, name="dropout")(x)
        x = keras.layers.Conv2D(classes, 1, padding="same", name="logits")(x)
        x = keras.layers.Flatten(name="flatten")(x)
        x = keras.layers.Activation(classifier_activation, name="predictions")(
            x
        )
    elif pooling is not None:
        x = _assembly.global_pool(x, pooling)
    return _assembly.finish(inputs, x, name, weights_path)


_GROUPNL_CONVS = """\
    The depthwise conv of every inverted-residual block becomes a
    `SparseGroupNLConv2D` making `mid` channels from `ceil(mid / r)` seed
    maps, each seed map seeing `r` of the `mid` input channels (with the
    default `r = 2`, the method's `s = mid / 2`); its BatchNormalization
    and activation stay. The stem, the 1x1 expansion and projection convs,
    the squeeze-excite convs and the head stay standard.

    The cost of a sparse GroupNL conv equals that of the depthwise conv it
    replaces (`k*k*mid` weights for any `r` dividing `mid`), so these
    models have the trainable parameter count of the plain model, plus
    `2 * num_groups * (r - 1)` frozen NLF values per replaced conv;
    what changes is the feature maps (the method reports gains in
    robustness, e.g. on ImageNet-C), not the size. A dense seed conv would
    cost far more than a depthwise conv, so `conv_type="dense"` is refused.

    Stride-2 blocks: their depthwise convs become GroupNL too, as in the
    method's reference code for this family (the GroupNL layer is strided
    like the conv it replaces). `groupnl_strided=False` keeps them
    standard."""

_SMALL_INPUTS = """\
    `stem="auto"` (the default) keeps the stride-2 stem conv (total stride
    32) unless the smaller known input side is at most 64 pixels; then
    the stem conv has stride 1 (total stride 16: 32x32 inputs end in 2x2
    maps, 28x28 in 2x2). Force either with `stem="imagenet"` or
    `stem="small"`."""

_PREPROCESSING = """\
    With `include_preprocessing=True` (the default) the model starts with
    a `Rescaling` layer mapping [0, 255] to [-1, 1], as in
    `keras.applications`; feed it raw pixels. `preprocess_input` is then a
    pass-through. With `include_preprocessing=False`, scale inputs to
    [-1, 1] yourself (`x / 127.5 - 1`)."""

_FAMILY_ARGS = """\
    alpha: float, width multiplier of the blocks, as in
        `keras.applications.MobileNetV3*`. Defaults to `1.0`.
    minimalistic: bool, the minimalistic variant: 3x3 kernels, ReLU, no
        squeeze-excite. Defaults to `False`.
    dropout_rate: float in [0, 1), dropout before the logits. Defaults to
        `0.2`.
    include_preprocessing: bool, see "Preprocessing". Defaults to `True`.
    stem: `"auto"`, `"imagenet"` or `"small"`, see "Small inputs".
        Defaults to `"auto"`.
"""


def _doc(model_type):
    title = f"MobileNetV3{model_type.capitalize()}"
    model_id = f"mobilenet_v3_{model_type}"
    return _docstring.BASE_DOCSTRING.format(
        title=title,
        with_groupnl=" with sparse GroupNL convolutions",
        summary=(
            f"{title} (Howard et al.) with the layout of "
            f'`keras.applications.{title}`: with `conv_type="plain"` it '
            "is that model, layer for layer (same parameter count), with "
            "named activation layers and 'same' padding on strided "
            "depthwise convs."
        ),
        groupnl_convs=_GROUPNL_CONVS,
        small_inputs=_SMALL_INPUTS,
        preprocessing=_PREPROCESSING,
        reference=("- Searching for MobileNetV3 (Howard et al., ICCV 2019)."),
        default_shape="(224, 224, 3)",
        classes=1000,
        family_args=_FAMILY_ARGS,
        conv_type_note='`"dense"` is refused, see above.',
        default_conv_type="sparse",
        default_name=f"groupnl_{model_id}",
        plain_name=model_id,
        example=(
            f"keras_groupnl.applications.GroupNL{title}(\n"
            "...     input_shape=(32, 32, 3), classes=10, seed=0)"
        ),
    )


def GroupNLMobileNetV3Small(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    alpha=1.0,
    minimalistic=False,
    dropout_rate=0.2,
    include_preprocessing=True,
    name=None,
    **kwargs,
):
    return _mobilenet_v3(
        "small",
        input_shape=input_shape,
        alpha=alpha,
        minimalistic=minimalistic,
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        classes=classes,
        pooling=pooling,
        dropout_rate=dropout_rate,
        classifier_activation=classifier_activation,
        include_preprocessing=include_preprocessing,
        name=name,
        **kwargs,
    )


def GroupNLMobileNetV3Large(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    alpha=1.0,
    minimalistic=False,
    dropout_rate=0.2,
    include_preprocessing=True,
    name=None,
    **kwargs,
):
    return _mobilenet_v3(
        "large",
        input_shape=input_shape,
        alpha=alpha,
        minimalistic=minimalistic,
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        classes=classes,
        pooling=pooling,
        dropout_rate=dropout_rate,
        classifier_activation=classifier_activation,
        include_preprocessing=include_preprocessing,
        name=name,
        **kwargs,
    )


GroupNLMobileNetV3Small.__doc__ = _doc("small")
GroupNLMobileNetV3Large.__doc__ = _doc("large")


def preprocess_input(x, data_format=None):
    """A pass-through: GroupNL MobileNetV3 models preprocess inside.

    With `include_preprocessing=True` (the default) the model's first layer
    maps [0, 255] to [-1, 1], so raw pixels go in unchanged, as with
    `keras.applications.mobilenet_v3.preprocess_input`. Models built with
    `include_preprocessing=False` expect `x / 127.5 - 1`.

    Args:
        x: NumPy array or tensor of images.
        data_format: `None`, `"channels_last"` or `"channels_first"`; no
            effect (the layout is unchanged), checked and kept for the
            `keras.applications` signature.

    Returns:
        `x`, unchanged.
    """
    if data_format is not None:
        _validation.data_format(data_format)
    return x
