"""The "mcu" target: a compact full-integer model for TensorFlow Lite Micro.

The lookup graph of `_lookup` (int8 ops and one 256-byte table per NLF),
with table indices made by QUANTIZE int8 -> int32, which TFLite Micro runs
(LiteRT does not, so the model is verified in TFLite Micro). The file keeps
nothing TFLite Micro does not read: tensor names, signatures and metadata
are stripped after every op has been mapped to its Keras layer. It gains
one thing TFLite Micro does read: an offline arena plan (`_memory_plan`),
which packs the activations tighter than TFLite Micro's own planner.

With `mcu_kernel="fused"` (or `"fused_channel_tables"`) every GroupNL tail
becomes one `KERAS_GROUPNL_TAIL` custom op (`_fused_graph`), whose C kernel
is written beside the model.
"""

from keras_groupnl.converters import _flatbuffer as fb
from keras_groupnl.converters import _fused_graph
from keras_groupnl.converters import _lookup
from keras_groupnl.converters import _memory_plan
from keras_groupnl.converters import _names
from keras_groupnl.converters._job import Converted

# `mcu_kernel` -> the fused op's table mode (`_fused`).
FUSED_MODES = {"fused": "nlf_tables", "fused_channel_tables": "channel_tables"}


def convert(model, job):
    """Converts `model` for a microcontroller; returns a `Converted`."""
    tfl, deployed, tables = _lookup.convert(model, job, index="quantize")
    op_layers = _names.op_layers(tfl, job.layer_names)
    runtime = "tflm"
    if job.mcu_kernel != "builtin" and deployed:
        mode = FUSED_MODES[job.mcu_kernel]
        op_layers, tails = _fused_graph.fuse(tfl, op_layers, deployed, mode)
        tables = {tail.layer: int(tail.tables.nbytes) for tail in tails}
        for layer in deployed:
            layer.variant = f"fused {_fused_graph.CUSTOM_CODE} op, {mode}"
        runtime = "tflm_fused"
    fb.strip_for_microcontrollers(tfl)
    _memory_plan.add_offline_plan(tfl)
    return Converted(fb.write_model(tfl), op_layers, deployed, tables, runtime)
