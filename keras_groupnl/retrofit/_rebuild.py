"""The copy of a model with some layers replaced, weights carried over.

`rebuild(model, replace)` returns a copy of a Functional or Sequential model
(nested ones too) in which every layer is a new layer made from its config,
with its weights copied once the copy is built, except the layers for which
`replace(layer)` returns `(new_layer, activation)`: `new_layer` takes their
place (same name) and `activation`, when not `None`, is a layer called right
after it.

Functional models are copied with `keras.models.clone_model(model,
clone_function=..., call_function=...)`; the `call_function` inserts the
activations. `clone_model` does not pass a `call_function` on to nested
Sequential models (Sequential models list their layers, they do not call
them), so nested models are copied here, by the same `clone_function`, and
Sequential models are rebuilt as `keras.Sequential` of the copied layers.
Nothing is shared with the source model: training the copy leaves it as it
was.
"""

import keras

from keras_groupnl.retrofit import _sites


class Rebuild:
    """One copy of one model, made by `Rebuild(replace).model(model)`."""

    def __init__(self, replace):
        self._replace = replace
        self._cache = {}  # id(source layer) -> its new layer.
        self._kept = []  # (source layer, copy) pairs, for their weights.
        self._after = {}  # id(new layer) -> the activation called after it.

    def model(self, model, name=None):
        """The copy of `model` (named `name`), kept weights copied."""
        copy = self._copy_model(model, name)
        for source, new in self._kept:
            try:
                new.set_weights(source.get_weights())
            except Exception as error:  # noqa: BLE001
                raise ValueError(
                    f"Layer '{source.name}' ({type(source).__name__}): the "
                    "copy made from its config does not take its weights "
                    f"({type(error).__name__}: {error}). to_groupnl copies "
                    "every layer it keeps through get_config() / "
                    "from_config(); make them round-trip."
                ) from None
        return copy

    def _copy_model(self, model, name=None):
        if isinstance(model, keras.Sequential):
            copy = self._sequential(model, name or model.name)
        else:
            copy = keras.models.clone_model(
                model,
                input_tensors=_inputs(model),
                clone_function=self._layer,
                call_function=self._call,
            )
            if name is not None and name != copy.name:
                copy = _renamed(copy, name)
        if not model.trainable:
            copy.trainable = False
        return copy

    def _layer(self, layer):
        """The `clone_function`: the new layer that stands for `layer`."""
        if id(layer) in self._cache:
            return self._cache[id(layer)]
        if _sites.is_graph_model(layer):
            new = self._copy_model(layer)
        else:
            made = self._replace(layer)
            if made is None:
                new = _copy_layer(layer)
                self._kept.append((layer, new))
            else:
                new, activation = made
                if activation is not None:
                    self._after[id(new)] = activation
        self._cache[id(layer)] = new
        return new

    def _call(self, layer, *args, **kwargs):
        """The `call_function`: calls a layer and the activation after it."""
        outputs = layer(*args, **kwargs)
        activation = self._after.get(id(layer))
        return outputs if activation is None else activation(outputs)

    def _sequential(self, model, name):
        try:
            spec = model.inputs[0]
        except (AttributeError, IndexError, TypeError, ValueError):
            raise ValueError(
                f"Sequential model '{model.name}' is not built, so its "
                "weights do not exist yet. Give it an input "
                "(keras.Input(shape) as first layer) or call it on data "
                "before to_groupnl."
            ) from None
        layers = [
            keras.Input(
                batch_shape=spec.shape, dtype=spec.dtype, name=spec.name
            )
        ]
        for layer in model.layers:
            new = self._layer(layer)
            layers.append(new)
            if id(new) in self._after:
                layers.append(self._after[id(new)])
        copy = keras.Sequential(layers, name=name)
        if model.compiled:
            copy.compile_from_config(model.get_compile_config())
        return copy


def _renamed(model, name):
    """The same Functional graph (same layers) under another name."""
    renamed = keras.Model(model.input, model.output, name=name)
    if model.compiled:
        renamed.compile_from_config(model.get_compile_config())
    return renamed


def _inputs(model):
    """New inputs for a Functional model, named as its input layers.

    `clone_model` names new inputs after the input tensors, which renames
    input layers whose name Keras chose (`input_layer_3`).
    """
    names = {
        id(layer.output): layer.name
        for layer in model.layers
        if isinstance(layer, keras.layers.InputLayer)
    }
    return keras.tree.map_structure(
        lambda tensor: keras.Input(
            batch_shape=tensor.shape,
            dtype=tensor.dtype,
            name=names.get(id(tensor), tensor.name),
        ),
        model.input,
    )


def _copy_layer(layer):
    """A new, unbuilt layer made from `layer`'s config."""
    try:
        return layer.__class__.from_config(layer.get_config())
    except Exception as error:  # noqa: BLE001 - any custom layer may fail.
        raise ValueError(
            f"Layer '{layer.name}' ({type(layer).__name__}) cannot be copied "
            f"from its config ({type(error).__name__}: {error}). to_groupnl "
            "makes every layer it keeps anew with from_config(get_config()) "
            "and copies its weights; give the layer a get_config() that "
            "lists its constructor arguments."
        ) from None
