"""The contract every Keras layer of this package keeps, in one call.

`run_layer_contract(cls, init_kwargs, input_shape, ...)` checks, as Keras'
own `run_layer_test` does for its layers:

- every constructor argument is in `get_config`, and the config survives
  `from_config` and JSON serialisation unchanged;
- symbolic, eager and `compute_output_shape` shapes agree;
- the expected numbers of trainable and non-trainable weights;
- a `.keras` save and load gives identical weights and outputs;
- one training step changes every trainable weight and no other;
- under a mixed-precision policy the layer computes in the half type, keeps
  float32 variables and gives finite outputs.
"""

import inspect
import json

import keras
import numpy as np

import keras_groupnl.layers  # noqa: F401  (registers the layers)


def _numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _sample(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def check_config(cls, init_kwargs):
    layer = cls(**init_kwargs)
    config = layer.get_config()
    arguments = [
        name
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if name != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD
    ]
    missing = [name for name in arguments if name not in config]
    assert not missing, f"get_config misses {missing}"
    assert cls.from_config(config).get_config() == config
    serialized = json.loads(
        json.dumps(keras.saving.serialize_keras_object(layer))
    )
    revived = keras.saving.deserialize_keras_object(serialized)
    assert type(revived) is cls
    assert revived.get_config() == config


def check_shapes(cls, init_kwargs, input_shape):
    layer = cls(**init_kwargs)
    expected = tuple(layer.compute_output_shape(input_shape))
    symbolic = layer(keras.Input(batch_shape=input_shape))
    assert tuple(symbolic.shape) == expected
    eager = cls(**init_kwargs)(_sample(input_shape))
    assert tuple(eager.shape) == expected
    return expected


def check_weights(cls, init_kwargs, input_shape, trainable, non_trainable):
    layer = cls(**init_kwargs)
    layer.build(input_shape)
    assert len(layer.trainable_weights) == trainable
    assert len(layer.non_trainable_weights) == non_trainable


def _model(cls, init_kwargs, input_shape):
    inputs = keras.Input(input_shape[1:])
    return keras.Model(inputs, cls(name="under_test", **init_kwargs)(inputs))


def check_save_and_load(cls, init_kwargs, input_shape, tmp_path):
    model = _model(cls, init_kwargs, input_shape)
    x = _sample(input_shape, seed=1)
    path = tmp_path / "contract.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.get_layer("under_test")) is cls
    for before, after in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(_numpy(after), _numpy(before))
    np.testing.assert_array_equal(_numpy(loaded(x)), _numpy(model(x)))


def check_training_step(cls, init_kwargs, input_shape):
    model = _model(cls, init_kwargs, input_shape)
    layer = model.get_layer("under_test")
    x = _sample(input_shape, seed=2)
    y = _sample((input_shape[0],) + tuple(model.output.shape[1:]), seed=3)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    before = [_numpy(w).copy() for w in layer.weights]
    assert np.isfinite(model.train_on_batch(x, y))
    trainable = {id(w) for w in layer.trainable_weights}
    for w, old in zip(layer.weights, before):
        changed = not np.allclose(_numpy(w), old)
        assert changed == (id(w) in trainable), w.path


def check_mixed_precision(cls, init_kwargs, input_shape, policy):
    previous = keras.config.dtype_policy()
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        layer = cls(**init_kwargs)
        y = layer(_sample(input_shape, seed=4))
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
    compute = policy.split("_")[1]
    assert keras.backend.standardize_dtype(y.dtype) == compute
    assert all(
        keras.backend.standardize_dtype(w.dtype) == "float32"
        for w in layer.weights
    )
    assert np.all(np.isfinite(_numpy(keras.ops.cast(y, "float32"))))


def run_layer_contract(
    cls,
    init_kwargs,
    input_shape,
    tmp_path,
    expected_output_shape=None,
    expected_trainable_weights=None,
    expected_non_trainable_weights=None,
    mixed_precision=("mixed_float16", "mixed_bfloat16"),
):
    """Runs the whole layer contract for one layer class and arguments.

    Args:
        cls: the layer class.
        init_kwargs: constructor arguments.
        input_shape: a full input shape, batch included.
        tmp_path: a directory for the `.keras` file.
        expected_output_shape: optional exact output shape.
        expected_trainable_weights, expected_non_trainable_weights:
            optional weight counts.
        mixed_precision: the dtype policies to check.
    """
    check_config(cls, init_kwargs)
    shape = check_shapes(cls, init_kwargs, input_shape)
    if expected_output_shape is not None:
        assert shape == tuple(expected_output_shape)
    if expected_trainable_weights is not None:
        check_weights(
            cls,
            init_kwargs,
            input_shape,
            expected_trainable_weights,
            expected_non_trainable_weights,
        )
    check_save_and_load(cls, init_kwargs, input_shape, tmp_path)
    check_training_step(cls, init_kwargs, input_shape)
    for policy in mixed_precision:
        check_mixed_precision(cls, init_kwargs, input_shape, policy)
