"""The docstring template every public model function fills in."""

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
    period_range: `(low, high)`, the range every NLF period `T` is drawn
        from. Defaults to `(1.0, 2.0)`, the method's.
    shift_range: `(low, high)`, the range every NLF shift `phi` is drawn
        from. Defaults to `(1.0, 5.0)`, the method's.
    trainable_nlf: bool, whether the NLF periods and shifts are trained
        with the weights instead of frozen. Defaults to `False`.
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

The GroupNL settings (`stem` where the family has it, `conv_type`,
`reduction_ratio`, `num_groups`, `seed`, `groupnl_strided`,
`synchronized_batchnorm`, `period_range`, `shift_range`, `trainable_nlf`)
are keyword arguments; the others keep the
`keras.applications` signature.

Returns:
    A `keras.Model`.

Example:

>>> model = {example}
>>> model.compile(optimizer="adam",
...               loss="sparse_categorical_crossentropy",
...               metrics=["accuracy"])
"""
