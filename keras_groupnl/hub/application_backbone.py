"""`ApplicationBackbone`: a keras-hub Backbone built by an application."""

import contextlib

import keras
from keras_hub.models import Backbone

from keras_groupnl.applications import _conv_choice
from keras_groupnl.hub import _seed

# The GroupNL settings every family takes by keyword, as the application
# functions do, with their defaults; the config always holds all of them.
GROUPNL_SETTINGS = {
    "reduction_ratio": 2,
    "num_groups": 4,
    "seed": None,
    "groupnl_strided": True,
    "period_range": _conv_choice.DEFAULT_PERIOD_RANGE,
    "shift_range": _conv_choice.DEFAULT_SHIFT_RANGE,
    "trainable_nlf": False,
    "synchronized_batchnorm": False,
}


class ApplicationBackbone(Backbone):
    """A keras-hub `Backbone` made by a `keras_groupnl.applications` function.

    The base class of the GroupNL family backbones (`GroupNLResNetBackbone`,
    ...): each passes the application function that builds it and the
    arguments that function takes; the backbone is that model without its
    head (`include_top=False`, no pooling, no preprocessing layer), so its
    output is the last feature map, as with keras-hub's own backbones.

    The GroupNL settings (`GROUPNL_SETTINGS`: `reduction_ratio`,
    `num_groups`, `seed`, `groupnl_strided`, `period_range`, `shift_range`,
    `trainable_nlf`, `synchronized_batchnorm`) arrive by keyword, as with
    the application functions. The config holds `image_shape`, the
    family's own arguments and every GroupNL setting. The family classes
    are registered with Keras; this base class is not (it has no config of
    its own). `seed=None` becomes a seed drawn at construction (see
    `keras_groupnl.hub._seed`), so loading a preset rebuilds the same
    sinusoids before the weights are loaded.

    Args:
        application: the `keras_groupnl.applications` function.
        arguments: dict, the family's keyword arguments of `application`
            (`conv_type`, `stem`, ...), kept in the config.
        variant: dict, config entries that chose `application` and are not
            its arguments (`{"depth": 18}`).
        fixed: dict, arguments of `application` that every backbone of the
            family passes and the config does not hold
            (`include_preprocessing=False`). Defaults to `None`.
        image_shape: the input shape without the batch axis.
        dtype: `None`, a dtype policy or its name, for every layer.
        **kwargs: the GroupNL settings; `name`, `trainable`, passed to
            `Backbone`.
    """

    def __init__(
        self,
        application,
        arguments,
        variant,
        image_shape=(None, None, 3),
        dtype=None,
        fixed=None,
        **kwargs,
    ):
        settings = {k: kwargs.pop(k, v) for k, v in GROUPNL_SETTINGS.items()}
        # Pairs such as `period_range` come back from JSON as lists.
        arguments = {
            key: tuple(value) if isinstance(value, list) else value
            for key, value in {**arguments, **settings}.items()
        }
        arguments["seed"] = _seed.concrete(arguments["seed"])
        image_shape = tuple(image_shape)
        with _global_dtype_policy(dtype):
            model = application(
                include_top=False,
                weights=None,
                input_shape=image_shape,
                **arguments,
                **(fixed or {}),
            )
        super().__init__(
            inputs=model.input, outputs=model.output, dtype=dtype, **kwargs
        )
        self.image_shape = image_shape
        self.data_format = keras.config.image_data_format()
        self._family_config = {**variant, **arguments}

    def get_config(self):
        config = super().get_config()
        config["image_shape"] = self.image_shape
        config.update(self._family_config)
        return config


@contextlib.contextmanager
def _global_dtype_policy(dtype):
    """Builds layers under `dtype`: the applications take no dtype argument."""
    if dtype is None:
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(keras.dtype_policies.get(dtype))
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
