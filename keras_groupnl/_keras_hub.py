"""keras-hub models, recognised without importing keras-hub.

keras-hub is optional (the `hub` extra). `to_groupnl` and the converters
treat keras-hub backbones and tasks apart; they ask here. A model can only
be a keras-hub model if `keras_hub` is imported already, so nothing here
imports it, and without keras-hub every answer is `False`.
"""

import sys


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
