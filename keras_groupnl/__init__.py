"""keras-groupnl: GroupNL convolutions, models and converters for Keras 3.

Subpackages load on first use (`keras_groupnl.applications`, ...), and so
does `keras_groupnl.to_groupnl` (from `keras_groupnl.retrofit`), so that
`import keras_groupnl.robustness` (NumPy only) and the `keras-groupnl`
command line start without importing TensorFlow. Keras needs the GroupNL
layers registered before it can load a saved model that contains them:
import `keras_groupnl.layers` (any of `applications`, `converters` or
`to_groupnl` imports it too) before `keras.saving.load_model`. When Keras is
already imported, `import keras_groupnl` registers them at once.
"""

import importlib
import sys

__version__ = "0.1.0"

_SUBPACKAGES = (
    "analysis",
    "applications",
    "converters",
    "datasets",
    "hub",
    "layers",
    "retrofit",
    "robustness",
)
# Functions exported at the top level: name -> the subpackage defining it.
_FUNCTIONS = {"to_groupnl": "retrofit"}

__all__ = list(_SUBPACKAGES) + list(_FUNCTIONS) + ["__version__"]


def __getattr__(name):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _FUNCTIONS:
        module = importlib.import_module(f"{__name__}.{_FUNCTIONS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBPACKAGES) + list(_FUNCTIONS))


if "keras" in sys.modules:
    importlib.import_module(f"{__name__}.layers")
