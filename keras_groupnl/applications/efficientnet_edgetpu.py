"""GroupNL EfficientNet-EdgeTPU-S (EfficientNet-ES), the ImageNet-C model.

The architecture is that of the TensorFlow TPU reference
`efficientnet-edgetpu-S` (timm's `efficientnet_es`): a stride-2 stem, three
stages of fused inverted-residual blocks (one kxk expansion conv, no
depthwise conv), three stages of inverted-residual (MBConv) blocks without
squeeze-excite, ReLU throughout, and a 1280-channel head.
"""

import keras

from keras_groupnl import _validation
from keras_groupnl.applications import _arguments
from keras_groupnl.applications import _assembly
from keras_groupnl.applications import _conv_choice
from keras_groupnl.applications import _docstring

# Stack description, one row per stage:
# (kind, repeats, kernel, stride, expand ratio, input filters, output filters,
#  skip). The first stage's expansion uses its nominal 24 input filters
# (96 channels) although the stem gives 32, as in the reference.
_ES_STAGES = (
    ("fused", 1, 3, 1, 4, 24, 24, False),
    ("fused", 2, 3, 2, 8, 24, 32, True),
    ("fused", 4, 3, 2, 8, 32, 48, True),
    ("mbconv", 5, 5, 2, 8, 48, 96, True),
    ("mbconv", 4, 5, 1, 8, 96, 144, True),
    ("mbconv", 2, 5, 2, 8, 144, 192, True),
)
_STEM_FILTERS = 32
_TOP_FILTERS = 1280

# As in keras.applications.EfficientNet.
_CONV_KERNEL_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {
        "scale": 2.0,
        "mode": "fan_out",
        "distribution": "truncated_normal",
    },
}
_DENSE_KERNEL_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {
        "scale": 1.0 / 3.0,
        "mode": "fan_out",
        "distribution": "uniform",
    },
}


def _batch_norm(name, synchronized):
    return keras.layers.BatchNormalization(
        axis=_assembly.channel_axis(),
        momentum=0.99,
        epsilon=1e-3,
        synchronized=synchronized,
        name=name,
    )


def _conv(filters, kernel_size, strides, name):
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer=_CONV_KERNEL_INITIALIZER,
        name=name,
    )


def _blocks(stages):
    """Expands the stage rows into one tuple per block, with its name."""
    blocks = []
    for stage, row in enumerate(stages):
        kind, repeats, kernel, stride, expand, filters_in, filters_out, skip = (
            row
        )
        for index in range(repeats):
            blocks.append(
                (
                    f"block{stage + 1}{chr(index + 97)}_",
                    kind,
                    kernel,
                    stride if index == 0 else 1,
                    (filters_in if index == 0 else filters_out) * expand,
                    filters_out,
                    skip,
                )
            )
    return blocks


def _block(x, block, drop_rate, choice, synchronized):
    prefix, kind, kernel, stride, mid, filters_out, skip = block
    inputs = x
    filters_in = x.shape[_assembly.channel_axis()]
    if kind == "fused":
        x = _conv(mid, kernel, stride, f"{prefix}expand_conv")(x)
        x = _batch_norm(f"{prefix}expand_bn", synchronized)(x)
        x = keras.layers.Activation("relu", name=f"{prefix}expand_activation")(
            x
        )
    else:
        x = _conv(mid, 1, 1, f"{prefix}expand_conv")(x)
        x = _batch_norm(f"{prefix}expand_bn", synchronized)(x)
        x = keras.layers.Activation("relu", name=f"{prefix}expand_activation")(
            x
        )
        x = choice.depthwise(mid, kernel, stride, f"{prefix}dwconv")(x)
        x = _batch_norm(f"{prefix}bn", synchronized)(x)
        x = keras.layers.Activation("relu", name=f"{prefix}activation")(x)
    x = _conv(filters_out, 1, 1, f"{prefix}project_conv")(x)
    x = _batch_norm(f"{prefix}project_bn", synchronized)(x)
    if skip and stride == 1 and filters_in == filters_out:
        if drop_rate > 0:
            x = keras.layers.Dropout(
                drop_rate, noise_shape=(None, 1, 1, 1), name=f"{prefix}drop"
            )(x)
        x = keras.layers.Add(name=f"{prefix}add")([x, inputs])
    return x


def _efficientnet_edgetpu(
    model_id,
    stages,
    *,
    include_top,
    weights,
    input_tensor,
    input_shape,
    pooling,
    classes,
    classifier_activation,
    dropout_rate,
    drop_connect_rate,
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
    """Builds an EfficientNet-EdgeTPU model from its stage rows."""
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
    dropout_rate = _arguments.check_rate(dropout_rate, "dropout_rate")
    drop_connect_rate = _arguments.check_rate(
        drop_connect_rate, "drop_connect_rate"
    )
    include_preprocessing = _validation.boolean(
        include_preprocessing, "include_preprocessing"
    )
    synchronized_batchnorm = _arguments.check_synchronized_batchnorm(
        synchronized_batchnorm
    )
    stem = _arguments.resolve_stem(stem, input_shape)
    name = _arguments.check_name(
        name, model_id if conv_type == "plain" else f"groupnl_{model_id}"
    )
    choice = _conv_choice.ConvChoice(
        conv_type,
        reduction_ratio,
        num_groups,
        seed,
        groupnl_strided,
        kernel_initializer=_CONV_KERNEL_INITIALIZER,
        allowed_conv_types=("sparse", "plain"),
        period_range=period_range,
        shift_range=shift_range,
        trainable_nlf=trainable_nlf,
    )
    blocks = _blocks(stages)
    choice.check_plan(
        (mid, mid, stride, f"{prefix}dwconv")
        for prefix, kind, _, stride, mid, _, _ in blocks
        if kind == "mbconv"
    )

    inputs, x = _assembly.make_input(input_tensor, input_shape)
    if include_preprocessing:
        # The reference normalises with mean 127 and standard deviation 128.
        x = keras.layers.Rescaling(
            scale=1.0 / 128.0, offset=-127.0 / 128.0, name="rescaling"
        )(x)
    x = _conv(_STEM_FILTERS, 3, 2 if stem == "imagenet" else 1, "stem_conv")(x)
    x = _batch_norm("stem_bn", synchronized_batchnorm)(x)
    x = keras.layers.Activation("relu", name="stem_activation")(x)
    for index, block in enumerate(blocks):
        x = _block(
            x,
            block,
            drop_connect_rate * index / len(blocks),
            choice,
            synchronized_batchnorm,
        )
    x = _conv(_TOP_FILTERS, 1, 1, "top_conv")(x)
    x = _batch_norm("top_bn", synchronized_batchnorm)(x)
    x = keras.layers.Activation("relu", name="top_activation")(x)

    if include_top:
        x = _assembly.global_pool(x, pooling or "avg")
        if dropout_rate > 0:
            x = keras.layers.Dropout(dropout_rate, name="top_dropout")(x)
        x = keras.layers.Dense(
            classes,
            activation=classifier_activation,
            kernel_initializer=_DENSE_KERNEL_INITIALIZER,
            name="predictions",
        )(x)
    elif pooling is not None:
        x = _assembly.global_pool(x, pooling)
    return _assembly.finish(inputs, x, name, weights_path)


_GROUPNL_CONVS = """\
    The 5x5 depthwise conv of every inverted-residual (MBConv) block of
    stages 4 to 6 becomes a `SparseGroupNLConv2D` making `mid` channels
    from `ceil(mid / r)` seed maps (with the default `r = 2`, the method's
    `s = mid / 2`); its BatchNormalization and ReLU stay. The fused blocks
    of stages 1 to 3 have no depthwise conv: their 3x3 conv is the
    expansion conv and stays standard, as do the stem, the 1x1 convs and
    the head, exactly as in the method's reference code.

    A sparse GroupNL conv costs what the depthwise conv costs (`k*k*mid`
    weights), so the trainable parameter count equals the plain model's;
    the frozen NLF values add `2 * num_groups * (r - 1)` per replaced conv.
    The method's point for this model is robustness (ImageNet-C), not
    size. `conv_type="dense"` is refused: a dense seed conv would cost far
    more than the depthwise conv.

    Stride-2 blocks: their depthwise convs become GroupNL too, as in the
    method's reference code for this family. `groupnl_strided=False` keeps
    them standard."""

_SMALL_INPUTS = """\
    `stem="auto"` (the default) keeps the stride-2 stem conv (total stride
    32) unless the smaller known input side is at most 64 pixels; then
    the stem conv has stride 1 (total stride 16: 32x32 and 28x28 inputs
    end in 2x2 maps). Force either with `stem="imagenet"` or
    `stem="small"`."""

_PREPROCESSING = """\
    With `include_preprocessing=True` (the default) the model starts with
    a `Rescaling` layer computing `(x - 127) / 128`, the EdgeTPU
    reference's normalisation, so raw [0, 255] pixels go in and
    `preprocess_input` is a pass-through. With
    `include_preprocessing=False`, apply `(x - 127) / 128` yourself."""

_FAMILY_ARGS = """\
    dropout_rate: float in [0, 1), dropout before the classifier.
        Defaults to `0.2`.
    drop_connect_rate: float in [0, 1), stochastic depth rate of the
        residual blocks, growing linearly with depth to this value.
        Defaults to `0.2`.
    include_preprocessing: bool, see "Preprocessing". Defaults to `True`.
    stem: `"auto"`, `"imagenet"` or `"small"`, see "Small inputs".
        Defaults to `"auto"`.
"""


def GroupNLEfficientNetES(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    dropout_rate=0.2,
    drop_connect_rate=0.2,
    include_preprocessing=True,
    name=None,
    **kwargs,
):
    return _efficientnet_edgetpu(
        "efficientnet_es",
        _ES_STAGES,
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        dropout_rate=dropout_rate,
        drop_connect_rate=drop_connect_rate,
        include_preprocessing=include_preprocessing,
        name=name,
        **kwargs,
    )


GroupNLEfficientNetES.__doc__ = _docstring.BASE_DOCSTRING.format(
    title="EfficientNet-EdgeTPU-S (EfficientNet-ES)",
    with_groupnl=" with sparse GroupNL convolutions",
    summary=(
        "EfficientNet-EdgeTPU-S: stem conv (32), fused blocks "
        "[1, 2, 4] x (24, 32, 48 filters), MBConv blocks [5, 4, 2] x "
        "(96, 144, 192 filters, 5x5 kernels, expansion 8), 1280-channel "
        "head, ReLU, no squeeze-excite; stochastic depth and dropout as in "
        "`keras.applications.EfficientNet`."
    ),
    groupnl_convs=_GROUPNL_CONVS,
    small_inputs=_SMALL_INPUTS,
    preprocessing=_PREPROCESSING,
    reference=(
        "- EfficientNet-EdgeTPU: Creating Accelerator-Optimized Neural "
        "Networks with AutoML (Google AI blog, 2019); TensorFlow TPU "
        "reference `efficientnet-edgetpu-S`."
    ),
    default_shape="(224, 224, 3)",
    classes=1000,
    family_args=_FAMILY_ARGS,
    conv_type_note='`"dense"` is refused, see above.',
    default_conv_type="sparse",
    default_name="groupnl_efficientnet_es",
    plain_name="efficientnet_es",
    example=(
        "keras_groupnl.applications.GroupNLEfficientNetES(\n"
        "...     input_shape=(32, 32, 3), classes=10, seed=0)"
    ),
)


def preprocess_input(x, data_format=None):
    """A pass-through: GroupNL EfficientNet-ES models preprocess inside.

    With `include_preprocessing=True` (the default) the model's first layer
    computes `(x - 127) / 128` on raw [0, 255] pixels, as the EdgeTPU
    reference does. Models built with `include_preprocessing=False` expect
    that normalisation applied beforehand.

    Args:
        x: NumPy array or tensor of images.
        data_format: unused, kept for the `keras.applications` signature.

    Returns:
        `x`, unchanged.
    """
    return x
