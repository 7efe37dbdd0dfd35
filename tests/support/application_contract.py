"""The contract every GroupNL application keeps, in one call.

`run_application_contract(function, ...)` checks, as keras-hub's
`run_backbone_test` does for its backbones:

- the model has the requested input and class count, and its GroupNL
  layers; the plain twin (`conv_type="plain"`) has the same layer names and
  none;
- layer names are stable from build to build (weights load by name);
- a `.keras` save and load gives identical configs and weights (and, with
  `numeric=True`, identical outputs);
- `weights=` loads a `.weights.h5` saved from the same model;
- with `numeric=True`, one `fit` step runs with a finite loss.
"""

import keras
import numpy as np

from keras_groupnl.layers import BaseGroupNLConv


def _numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _names(model):
    return [layer.name for layer in model.layers]


def check_twin(model, plain, input_shape, classes):
    assert tuple(model.input.shape) == (None,) + tuple(input_shape)
    assert tuple(model.output.shape) == (None, classes)
    assert any(isinstance(lay, BaseGroupNLConv) for lay in model.layers)
    assert not any(isinstance(lay, BaseGroupNLConv) for lay in plain.layers)
    assert _names(plain) == _names(model)


def check_save_and_load(model, tmp_path, x=None):
    path = tmp_path / "application.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.name == model.name
    assert [lay.get_config() for lay in loaded.layers] == [
        lay.get_config() for lay in model.layers
    ]
    for before, after in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(_numpy(after), _numpy(before))
    if x is not None:
        np.testing.assert_allclose(
            _numpy(loaded(x, training=False)),
            _numpy(model(x, training=False)),
            rtol=1e-5,
            atol=1e-6,
        )


def check_weights_argument(build, model, tmp_path):
    path = str(tmp_path / "application.weights.h5")
    model.save_weights(path)
    reloaded = build(weights=path)
    for before, after in zip(model.weights, reloaded.weights):
        np.testing.assert_array_equal(_numpy(after), _numpy(before))


def check_fit_step(model, x, classes):
    y = np.arange(len(x)) % classes
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = model.fit(x, y, batch_size=len(x), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])


def run_application_contract(
    function, input_shape, classes, tmp_path, numeric=True, **kwargs
):
    """Runs the whole application contract for one model function.

    Args:
        function: e.g. `applications.GroupNLResNet8`.
        input_shape: `(rows, cols, channels)`.
        classes: the number of classes.
        tmp_path: a directory for the saved files.
        numeric: also run the model (outputs after loading, a fit step).
        **kwargs: further arguments of `function` (e.g. `conv_type`).
    """

    def build(**extra):
        return function(
            input_shape=input_shape,
            classes=classes,
            classifier_activation=None,
            seed=0,
            **{**kwargs, **extra},
        )

    model = build()
    check_twin(model, build(conv_type="plain"), input_shape, classes)
    assert _names(build()) == _names(model)
    x = None
    if numeric:
        rng = np.random.default_rng(0)
        x = rng.uniform(0, 255, (2,) + tuple(input_shape)).astype("float32")
    check_save_and_load(model, tmp_path, x)
    check_weights_argument(build, model, tmp_path)
    if numeric:
        check_fit_step(model, x, classes)
