"""The "mcu" target: a compact full-integer model for TensorFlow Lite Micro.

The lookup graph of `_lookup` (int8 ops and one 256-byte table per NLF),
with table indices made by QUANTIZE int8 -> int32, which TFLite Micro runs
(LiteRT does not, so the model is verified in TFLite Micro). The file keeps
nothing TFLite Micro does not read: tensor names, signatures and metadata
are stripped after every op has been mapped to its Keras layer. It gains
one thing TFLite Micro does read: an offline arena plan (`_memory_plan`),
which packs the activations tighter than TFLite Micro's own planner.
"""

from keras_groupnl.converters import _flatbuffer as fb
from keras_groupnl.converters import _lookup
from keras_groupnl.converters import _memory_plan
from keras_groupnl.converters import _names
from keras_groupnl.converters._job import Converted


def convert(model, job):
    """Converts `model` for a microcontroller; returns a `Converted`."""
    tfl, deployed, tables = _lookup.convert(model, job, index="quantize")
    op_layers = _names.op_layers(tfl, job.layer_names)
    fb.strip_for_microcontrollers(tfl)
    _memory_plan.add_offline_plan(tfl)
    return Converted(fb.write_model(tfl), op_layers, deployed, tables, "tflm")
