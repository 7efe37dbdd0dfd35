"""GroupNL ResNets: ResNet-8 (MLPerf Tiny), ResNet-18/34 and ResNet-50/101/152.

One private builder, `_resnet`, makes every member of the family from a stack
description; the public functions only pass that description.
"""

import collections

import keras
import numpy as np
from keras import ops

from keras_groupnl.applications import _arguments
from keras_groupnl.applications import _assembly
from keras_groupnl.applications import _conv_choice
from keras_groupnl.applications import _docstring

# How a ResNet variant is built, beyond its stack description.
_Style = collections.namedtuple(
    "_Style",
    [
        "stem_filters",  # filters of the stem conv
        "use_bias",  # biases on the convs that are not GroupNL
        "shortcut_bn",  # BatchNormalization after projection shortcuts
        "bn_momentum",
        "bn_epsilon",
        "dense_initializer",
        "synchronized_bn",  # BatchNormalization(synchronized=...)
    ],
)

# torchvision / timm ResNets (the method's reference code is timm based).
_IMAGENET_STYLE = _Style(
    stem_filters=64,
    use_bias=False,
    shortcut_bn=True,
    bn_momentum=0.9,
    bn_epsilon=1e-5,
    dense_initializer="glorot_uniform",
    synchronized_bn=False,
)
# MLPerf Tiny image classification reference (`resnet_v1_eembc`): convs with
# biases, projection shortcuts without BatchNormalization, Keras default
# BatchNormalization settings, he_normal classifier.
_MLPERF_STYLE = _Style(
    stem_filters=16,
    use_bias=True,
    shortcut_bn=False,
    bn_momentum=0.99,
    bn_epsilon=1e-3,
    dense_initializer="he_normal",
    synchronized_bn=False,
)

_KERNEL_INITIALIZER = "he_normal"

# Stack descriptions: (width, blocks, stride of the first block) per stage.
_STACKS = {
    "resnet8": ("basic", ((16, 1, 1), (32, 1, 2), (64, 1, 2))),
    "resnet18": ("basic", ((64, 2, 1), (128, 2, 2), (256, 2, 2), (512, 2, 2))),
    "resnet34": ("basic", ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))),
    "resnet50": (
        "bottleneck",
        ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)),
    ),
    "resnet101": (
        "bottleneck",
        ((64, 3, 1), (128, 4, 2), (256, 23, 2), (512, 3, 2)),
    ),
    "resnet152": (
        "bottleneck",
        ((64, 3, 1), (128, 8, 2), (256, 36, 2), (512, 3, 2)),
    ),
}


def _batch_norm(style, name):
    return keras.layers.BatchNormalization(
        axis=_assembly.channel_axis(),
        momentum=style.bn_momentum,
        epsilon=style.bn_epsilon,
        synchronized=style.synchronized_bn,
        name=name,
    )


def _shortcut(x, filters, stride, style, name):
    in_channels = x.shape[_assembly.channel_axis()]
    if stride == 1 and in_channels == filters:
        return x
    x = keras.layers.Conv2D(
        filters,
        1,
        strides=stride,
        padding="same",
        use_bias=style.use_bias or not style.shortcut_bn,
        kernel_initializer=_KERNEL_INITIALIZER,
        name=f"{name}_0_conv",
    )(x)
    if style.shortcut_bn:
        x = _batch_norm(style, f"{name}_0_bn")(x)
    return x


def _basic_block(x, width, stride, choice, style, name):
    """Two 3x3 convs (both replaceable); the stride is on the first."""
    shortcut = _shortcut(x, width, stride, style, name)
    x = choice.conv(width, 3, stride, f"{name}_1_conv", style.use_bias)(x)
    x = _batch_norm(style, f"{name}_1_bn")(x)
    x = keras.layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = choice.conv(width, 3, 1, f"{name}_2_conv", style.use_bias)(x)
    x = _batch_norm(style, f"{name}_2_bn")(x)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.Activation("relu", name=f"{name}_out")(x)


def _bottleneck_block(x, width, stride, choice, style, name):
    """1x1, 3x3 (replaceable, carries the stride: ResNet v1.5), 1x1 (x4)."""
    shortcut = _shortcut(x, 4 * width, stride, style, name)
    x = keras.layers.Conv2D(
        width,
        1,
        use_bias=style.use_bias,
        kernel_initializer=_KERNEL_INITIALIZER,
        name=f"{name}_1_conv",
    )(x)
    x = _batch_norm(style, f"{name}_1_bn")(x)
    x = keras.layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = choice.conv(width, 3, stride, f"{name}_2_conv", style.use_bias)(x)
    x = _batch_norm(style, f"{name}_2_bn")(x)
    x = keras.layers.Activation("relu", name=f"{name}_2_relu")(x)
    x = keras.layers.Conv2D(
        4 * width,
        1,
        use_bias=style.use_bias,
        kernel_initializer=_KERNEL_INITIALIZER,
        name=f"{name}_3_conv",
    )(x)
    x = _batch_norm(style, f"{name}_3_bn")(x)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.Activation("relu", name=f"{name}_out")(x)


def _replaceable_convs(block, stack, stem_filters):
    """(in_channels, filters, strides, name) of every replaceable conv."""
    expansion = 4 if block == "bottleneck" else 1
    in_channels = stem_filters
    convs = []
    for stage, (width, blocks, stride) in enumerate(stack, start=2):
        for index in range(1, blocks + 1):
            prefix = f"conv{stage}_block{index}"
            block_stride = stride if index == 1 else 1
            if block == "basic":
                convs.append(
                    (in_channels, width, block_stride, f"{prefix}_1_conv")
                )
                convs.append((width, width, 1, f"{prefix}_2_conv"))
            else:
                convs.append((width, width, block_stride, f"{prefix}_2_conv"))
            in_channels = width * expansion
    return convs


def _resnet(
    model_id,
    include_top,
    weights,
    input_tensor,
    input_shape,
    pooling,
    classes,
    classifier_activation,
    name,
    *,
    stem=None,
    conv_type="dense",
    reduction_ratio=2,
    num_groups=4,
    seed=None,
    groupnl_strided=True,
    synchronized_batchnorm=False,
    period_range=_conv_choice.DEFAULT_PERIOD_RANGE,
    shift_range=_conv_choice.DEFAULT_SHIFT_RANGE,
    trainable_nlf=False,
):
    """Builds the ResNet `model_id` (a key of `_STACKS`).

    The public functions pass the `keras.applications` arguments; the
    GroupNL settings arrive as keywords, with these defaults.
    """
    tiny = model_id == "resnet8"
    if tiny and stem is not None:
        raise ValueError(
            "`stem` does not apply to ResNet-8, which always has the MLPerf "
            f"Tiny stem. Received: stem={stem!r}"
        )
    style = _MLPERF_STYLE if tiny else _IMAGENET_STYLE
    block, stack = _STACKS[model_id]

    weights_path, input_shape = _arguments.validate_common(
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        default_size=32 if tiny else 224,
    )
    style = style._replace(
        synchronized_bn=_arguments.check_synchronized_batchnorm(
            synchronized_batchnorm
        )
    )
    stem = (
        "mlperf"
        if tiny
        else _arguments.resolve_stem(stem or "auto", input_shape)
    )
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
        period_range=period_range,
        shift_range=shift_range,
        trainable_nlf=trainable_nlf,
    )
    choice.check_plan(_replaceable_convs(block, stack, style.stem_filters))

    inputs, x = _assembly.make_input(input_tensor, input_shape)
    stem_kernel, stem_stride = (7, 2) if stem == "imagenet" else (3, 1)
    x = keras.layers.Conv2D(
        style.stem_filters,
        stem_kernel,
        strides=stem_stride,
        padding="same",
        use_bias=style.use_bias,
        kernel_initializer=_KERNEL_INITIALIZER,
        name="conv1_conv",
    )(x)
    x = _batch_norm(style, "conv1_bn")(x)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    if stem == "imagenet":
        x = keras.layers.MaxPooling2D(
            3, strides=2, padding="same", name="pool1_pool"
        )(x)

    block_fn = _basic_block if block == "basic" else _bottleneck_block
    for stage, (width, blocks, stride) in enumerate(stack, start=2):
        for index in range(1, blocks + 1):
            x = block_fn(
                x,
                width,
                stride if index == 1 else 1,
                choice,
                style,
                name=f"conv{stage}_block{index}",
            )

    if include_top:
        x = _assembly.global_pool(x, pooling or "avg")
        x = keras.layers.Dense(
            classes,
            activation=classifier_activation,
            kernel_initializer=style.dense_initializer,
            name="predictions",
        )(x)
    elif pooling is not None:
        x = _assembly.global_pool(x, pooling)
    return _assembly.finish(inputs, x, name, weights_path)


_RESNET_GROUPNL_CONVS = """\
    Both 3x3 convs of every basic block (ResNet-8/18/34) and the 3x3 conv
    of every bottleneck (ResNet-50/101/152) become GroupNL convs, each
    still followed by its BatchNormalization; GroupNL replaces the conv
    only. The stem, the 1x1 convs, the projection shortcuts and the
    classifier stay standard.

    Stride-2 blocks: the stride sits on the first 3x3 conv of the first
    block of each downsampling stage (ResNet v1.5, as in torchvision and
    the timm code the method builds on). These convs become GroupNL too by
    default. The GroupNL layer handles strides natively (the seed conv is
    strided; the sinusoids act per pixel), the method's own
    inverted-residual blocks replace their stride-2 depthwise convs, and
    these convs widen the channels (n -> 2n), so leaving them standard
    keeps some of the largest 3x3 kernels of the network uncompressed
    (ResNet-18 dense: 60% of the plain trainable parameters with them
    standard, 53% replaced). The public reference ResNets keep them
    standard (no reason is given there); `groupnl_strided=False`
    reproduces that.

    `conv_type="dense"` (the default) runs as one standard convolution on
    every runtime, microcontrollers included; `"sparse"` groups each seed
    conv by gcd(in_channels, seed_maps), as the reference's
    `gnl_resnet50/101` do, and `"dense"` with `reduction_ratio=2` or `4`
    matches its `gnl_std_r2/r4` variants (all with
    `groupnl_strided=False`)."""

_RESNET_SMALL_INPUTS = """\
    `stem="auto"` (the default) picks the ImageNet stem (7x7 conv with
    stride 2, then 3x3 max pooling with stride 2; total stride 32) unless
    the smaller known input side is at most 64 pixels, where it picks the
    small-input stem: one 3x3 conv with stride 1 and no pooling, as in the
    usual CIFAR ResNets (total stride 8, so 32x32 inputs end in 4x4 maps
    and 28x28 Fashion-MNIST inputs in 4x4). Force either with
    `stem="imagenet"` or `stem="small"`."""

_RESNET8_SMALL_INPUTS = """\
    ResNet-8 is the small-input model: a 3x3 stride-1 stem conv with 16
    filters and three stages of one basic block (16, 32, 64 filters; total
    stride 4). It has no `stem` argument."""

_RESNET_PREPROCESSING = """\
    Call `keras_groupnl.applications.resnet.preprocess_input` on images
    with values in [0, 255]: it scales them to [0, 1] and normalises each
    channel with the ImageNet mean and standard deviation (torchvision's
    convention), or with their average for 1-channel images."""

_RESNET8_SUMMARY = """\
ResNet-8 with the topology of the MLPerf Tiny image classification
reference model (`resnet_v1_eembc`: 32x32x3 input, 10 classes, 78,666
parameters as a plain-conv model): a 3x3 stem conv and three basic blocks
of 16, 32 and 64 filters, projection shortcuts of 1x1 convs (stride 2, no
BatchNormalization), biases on the convs and he_normal initialisation. The
reference's 8x8 average pooling plus Flatten is a global average pooling
here (identical at 32x32, and defined for any input size). Its L2 kernel
regulariser is a training setting and is not added: attach one if you
reproduce the MLPerf recipe. GroupNL convs take no bias (their seed maps
are L2-normalised and followed by BatchNormalization)."""

_RESNET_SUMMARY = """\
{depth}-layer ResNet with {blocks} (ResNet v1.5: torchvision layout, no
conv biases, BatchNormalization momentum 0.9 and epsilon 1e-5, he_normal
initialisation). The plain model has the trainable parameter count of
torchvision's `resnet{depth}`."""


def _doc(model_id, title, summary, small_inputs, stem_arg, classes, size):
    family_args = ""
    if stem_arg:
        family_args = (
            '    stem: `"auto"`, `"imagenet"` or `"small"`, see "Small '
            'inputs". Defaults to `"auto"`.\n'
        )
    example_input = "(32, 32, 3)" if size == 32 else "(28, 28, 1)"
    function_name = "GroupNL" + title.replace("-", "")
    return _docstring.BASE_DOCSTRING.format(
        title=title,
        with_groupnl=" with GroupNL convolutions",
        summary=summary,
        groupnl_convs=_RESNET_GROUPNL_CONVS,
        small_inputs=small_inputs,
        preprocessing=_RESNET_PREPROCESSING,
        reference=(
            "- Deep Residual Learning for Image Recognition (He et al., "
            "CVPR 2016)."
            + (
                "\n- MLPerf Tiny Benchmark (Banbury et al., NeurIPS 2021)."
                if model_id == "resnet8"
                else ""
            )
        ),
        default_shape=f"({size}, {size}, 3)",
        classes=classes,
        family_args=family_args,
        conv_type_note="",
        default_conv_type="dense",
        default_name=f"groupnl_{model_id}",
        plain_name=model_id,
        example=(
            f"keras_groupnl.applications.{function_name}(\n"
            f"...     input_shape={example_input}, classes=10, seed=0)"
        ),
    )


def GroupNLResNet8(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    name=None,
    **kwargs,
):
    return _resnet(
        "resnet8",
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        name,
        **kwargs,
    )


def GroupNLResNet18(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name=None,
    **kwargs,
):
    return _resnet(
        "resnet18",
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        name,
        **kwargs,
    )


def GroupNLResNet34(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name=None,
    **kwargs,
):
    return _resnet(
        "resnet34",
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        name,
        **kwargs,
    )


def GroupNLResNet50(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name=None,
    **kwargs,
):
    return _resnet(
        "resnet50",
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        name,
        **kwargs,
    )


def GroupNLResNet101(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name=None,
    **kwargs,
):
    return _resnet(
        "resnet101",
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        name,
        **kwargs,
    )


def GroupNLResNet152(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name=None,
    **kwargs,
):
    return _resnet(
        "resnet152",
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        name,
        **kwargs,
    )


GroupNLResNet8.__doc__ = _doc(
    "resnet8",
    "ResNet-8",
    _RESNET8_SUMMARY,
    _RESNET8_SMALL_INPUTS,
    False,
    10,
    32,
)
for _function, _depth, _blocks in (
    (GroupNLResNet18, 18, "basic blocks [2, 2, 2, 2]"),
    (GroupNLResNet34, 34, "basic blocks [3, 4, 6, 3]"),
    (GroupNLResNet50, 50, "bottleneck blocks [3, 4, 6, 3]"),
    (GroupNLResNet101, 101, "bottleneck blocks [3, 4, 23, 3]"),
    (GroupNLResNet152, 152, "bottleneck blocks [3, 8, 36, 3]"),
):
    _function.__doc__ = _doc(
        f"resnet{_depth}",
        f"ResNet-{_depth}",
        _RESNET_SUMMARY.format(depth=_depth, blocks=_blocks),
        _RESNET_SMALL_INPUTS,
        True,
        1000,
        224,
    )
del _function, _depth, _blocks

# ImageNet statistics of images scaled to [0, 1] (torchvision convention).
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def preprocess_input(x, data_format=None):
    """Preprocesses images for the GroupNL ResNets.

    Scales values from [0, 255] to [0, 1], then subtracts the ImageNet
    channel means `(0.485, 0.456, 0.406)` and divides by the standard
    deviations `(0.229, 0.224, 0.225)` (RGB order, torchvision convention).
    1-channel (grayscale) images use the averages of those, `0.449` and
    `0.226`. The input is not modified in place.

    Args:
        x: NumPy array or tensor of images, 3D (one image) or 4D (a batch),
            with 1 or 3 channels and values in [0, 255].
        data_format: `"channels_last"`, `"channels_first"` or `None` for
            `keras.config.image_data_format()`. Defaults to `None`.

    Returns:
        A float32 NumPy array for a NumPy (or list) input, a tensor
        otherwise, of the same shape.

    Raises:
        ValueError: for another data format, rank or number of channels.
    """
    if data_format is None:
        data_format = keras.config.image_data_format()
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(
            "`data_format` must be 'channels_last' or 'channels_first'. "
            f"Received: data_format={data_format!r}"
        )
    is_numpy = not ops.is_tensor(x)
    if is_numpy:
        x = np.asarray(x)
    if len(x.shape) not in (3, 4):
        raise ValueError(
            "`x` must be one image (3D) or a batch of images (4D). "
            f"Received: x with shape {tuple(x.shape)}"
        )
    channel_axis = -1 if data_format == "channels_last" else len(x.shape) - 3
    channels = x.shape[channel_axis]
    if channels == 3:
        mean, std = _IMAGENET_MEAN, _IMAGENET_STD
    elif channels == 1:
        mean, std = (
            (float(np.mean(_IMAGENET_MEAN)),),
            (float(np.mean(_IMAGENET_STD)),),
        )
    else:
        raise ValueError(
            "`preprocess_input` handles 1 or 3 channels. "
            f"Received: x with shape {tuple(x.shape)} and "
            f"data_format={data_format!r}"
        )
    shape = (channels,) if data_format == "channels_last" else (channels, 1, 1)
    mean = np.reshape(np.asarray(mean, "float32") * 255.0, shape)
    scale = np.reshape(1.0 / (np.asarray(std, "float32") * 255.0), shape)
    if is_numpy:
        return ((x.astype("float32") - mean) * scale).astype("float32")
    x = ops.cast(x, "float32")
    return ops.multiply(ops.subtract(x, mean), scale)
