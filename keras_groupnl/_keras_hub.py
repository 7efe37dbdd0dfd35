"""keras-hub models, recognised without importing keras-hub.

keras-hub is optional (the `hub` extra). `to_groupnl` and the converters
treat keras-hub backbones and tasks apart; they ask here. A model can only
be a keras-hub model if `keras_hub` is imported already, so nothing here
imports it, and without keras-hub every answer is `False`.
"""

import sys

import keras


def _models():
    hub = sys.modules.get("keras_hub")
    return getattr(hub, "models", None)


def is_backbone(model):
    """Whether `model` is a `keras_hub.models.Backbone`."""
    models = _models()
    return models is not None and isinstance(model, models.Backbone)


def is_task(model):
    """Whether `model` is a `keras_hub.models.Task` (an ImageClassifier...).

    A task preprocesses its inputs in `fit`, `predict` and `evaluate`;
    calling it runs only its network.
    """
    models = _models()
    return models is not None and isinstance(model, models.Task)


def functional_view(model):
    """A plain Functional model over the layers of a keras-hub model.

    keras-hub backbones and tasks are Functional subclasses with their own
    `get_config` (their constructor arguments, not their graph), and a task
    preprocesses in `predict`. The view has the same layers and weights
    (shared, not copied), the graph in its config, and a `predict` that
    runs only the network; nested keras-hub models (a task's backbone)
    become views too. Other layers are kept as they are.
    """
    view = keras.Model(model.input, model.output, name=model.name)
    if not any(is_backbone(layer) or is_task(layer) for layer in view.layers):
        return view
    return keras.models.clone_model(
        view,
        clone_function=lambda layer: (
            functional_view(layer)
            if is_backbone(layer) or is_task(layer)
            else layer
        ),
    )
