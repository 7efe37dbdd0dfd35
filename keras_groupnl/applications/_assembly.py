"""Model assembly shared by the families: input, global pooling, finish."""

import keras

from keras_groupnl.applications import _weights


def channel_axis():
    """The channel axis of 4D tensors for the global data format."""
    return -1 if keras.config.image_data_format() == "channels_last" else 1


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
        _weights.load_weights(model, weights_path)
    return model
