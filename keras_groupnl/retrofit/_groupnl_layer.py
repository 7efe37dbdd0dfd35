"""The GroupNL layer (and activation) that takes a conv's place."""

import keras


def make_layers(replacement, settings, taken_names):
    """`(groupnl_layer, activation_layer or None)` for a `Replacement`.

    The GroupNL layer has the conv's name, geometry (kernel size, strides,
    padding, dilation, data format), bias setting, initializers,
    regularizers, constraints, dtype policy and trainable flag. The conv's
    activation, if any, becomes an `Activation` layer named
    `"{conv name}_activation"` (made unique among `taken_names`, which is
    updated).
    """
    conv = replacement.site.layer
    config = conv.get_config()
    prefix = (
        "depthwise_"
        if isinstance(conv, keras.layers.DepthwiseConv2D)
        else "kernel_"
    )
    layer = replacement.layer_class(
        filters=replacement.filters,
        kernel_size=config["kernel_size"],
        strides=config["strides"],
        padding=config["padding"],
        dilation_rate=config["dilation_rate"],
        reduction_ratio=settings.reduction_ratio,
        num_groups=settings.num_groups,
        use_bias=config["use_bias"],
        data_format=config["data_format"],
        kernel_initializer=config[prefix + "initializer"],
        bias_initializer=config["bias_initializer"],
        kernel_regularizer=config[prefix + "regularizer"],
        bias_regularizer=config["bias_regularizer"],
        kernel_constraint=config[prefix + "constraint"],
        bias_constraint=config["bias_constraint"],
        activity_regularizer=config.get("activity_regularizer"),
        seed=replacement.seed,
        name=conv.name,
        trainable=conv.trainable,
        dtype=conv.dtype_policy,
    )
    if config.get("activation") in (None, "linear"):
        return layer, None
    name = _unique(f"{conv.name}_activation", taken_names)
    taken_names.add(name)
    activation = keras.layers.Activation(
        conv.activation, name=name, dtype=conv.dtype_policy
    )
    return layer, activation


def _unique(name, taken):
    if name not in taken:
        return name
    index = 1
    while f"{name}_{index}" in taken:
        index += 1
    return f"{name}_{index}"
