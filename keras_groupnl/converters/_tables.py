"""Swaps the NLF sections of a converted model for int8 lookup tables.

In the lookup graph (`_lookup`) every NLF `sin(T * (x - phi))` of one copy
and group reads an int8 piece of the normalised seed maps, and its output
quantization is fixed. TFLite's SIN has only a float kernel, so the TFLite
converter makes of it an int8 affine and a float island, e.g.

    int8 piece -> SUB -> MUL -> DEQUANTIZE -> SIN -> QUANTIZE -> int8 output

all named under the NLF's name scope. Its input has 256 possible values, so
the whole section is exactly a 256-entry int8 table: the NLF applied to
every dequantized input value, quantized as the section's output is. The
section becomes

    int8 piece p -> index (int32, value + 128 + 256 p) -> GATHER(table k)
                 -> int8 output

The 256-entry tables of one layer's copy `k` are stored as one table tensor,
block `p` for piece `p`, so the index of a piece, made once, serves every
copy: `"quantize"` makes it with one QUANTIZE int8 -> int32 (the zero point
shifted by `128 + 256 p`), which TensorFlow Lite Micro runs and LiteRT
refuses; `"cast_add"` with CAST + ADD, which both run.
"""

import collections
import dataclasses

import numpy as np

from keras_groupnl.converters import _flatbuffer as fb
from keras_groupnl.converters._errors import ConversionError

schema = fb.schema
INDEX_MODES = ("quantize", "cast_add")
# Operator versions for the types used here (as the TFLite converter writes
# them for int8 -> int32 QUANTIZE / CAST, int32 ADD and an int8 GATHER).
_VERSIONS = {"QUANTIZE": 2, "CAST": 3, "ADD": 1, "GATHER": 2}


# What `find_nlf` says of a tensor made inside an NLF section: `key` is the
# same for every tensor of one section, `copy` and `piece` place its table
# (`copy` is None for a section making all copies along a leading axis), and
# `nlf` is the NLF as a function of float arrays (values `(copies, n)` for
# all copies).
Section = collections.namedtuple("Section", "key layer copy piece nlf")


@dataclasses.dataclass
class _Island:
    ops: list  # every op of the section, in graph order
    source: int  # the int8 tensor the section reads
    output: int  # the int8 tensor it writes
    section: Section

    @property
    def layer(self):
        return self.section.layer


def replace_islands(model, find_nlf, index):
    """Replaces every NLF section by a table lookup.

    Args:
        model: `ModelT`, changed in place.
        find_nlf: `find_nlf(tensor name)` -> a `Section` for a tensor made
            inside an NLF section, `None` for any other tensor.
        index: `"quantize"` or `"cast_add"` (see the module docstring).

    Returns:
        `{layer: table bytes}` of every layer with tables.
    """
    if index not in INDEX_MODES:
        raise ValueError(f"index must be one of {INDEX_MODES}: {index!r}")
    subgraph = model.subgraphs[0]
    islands = _find_islands(model, find_nlf)
    tables = _table_tensors(model, islands)
    by_source, index_of, removed = {}, {}, set()
    for island in islands:
        if island.source not in by_source:
            by_source[island.source] = _index_ops(model, island, index)
            index_of[island.source] = int(
                by_source[island.source][-1].outputs[0]
            )
        table = tables[(island.layer, island.section.copy)]
        by_source[island.source].append(
            _gather(model, island, table, index_of[island.source])
        )
        removed.update(island.ops)
    _rebuild(subgraph, islands, by_source, removed)
    sizes = {}
    for (layer, _), tensor in tables.items():
        size = len(fb.buffer_data(model, subgraph.tensors[tensor]))
        sizes[layer] = sizes.get(layer, 0) + size
    return sizes


def _find_islands(model, find_nlf):
    subgraph = model.subgraphs[0]
    producers, consumers = fb.producers_and_consumers(subgraph)

    def inside(tensor, key):
        # The converter names its DEQUANTIZE outputs `tfl.dequantize`: the
        # float tensors of a section belong to it whatever their names.
        found = find_nlf(fb.tensor_name(subgraph.tensors[tensor]))
        is_float = subgraph.tensors[tensor].type in fb.FLOAT_TYPES
        return is_float or (found is not None and found.key == key)

    islands = []
    for op_index, op in enumerate(subgraph.operators):
        output = int(op.outputs[0])
        found = find_nlf(fb.tensor_name(subgraph.tensors[output]))
        if found is None or subgraph.tensors[output].type in fb.FLOAT_TYPES:
            continue
        readers = consumers.get(output, [])
        if any(
            inside(int(subgraph.operators[r].outputs[0]), found.key)
            for r in readers
        ):
            continue  # Not the section's last op.
        ops, source = _walk_back(model, producers, op_index, inside, found)
        islands.append(_Island(ops, source, output, found))
    return islands


def _walk_back(model, producers, last, inside, found):
    """The ops of one NLF section ending at `last`, and the tensor it reads.

    Every op of a section has one input that is not a constant.
    """
    subgraph = model.subgraphs[0]
    ops = [last]
    while True:
        op = subgraph.operators[ops[0]]
        variable = [
            int(t)
            for t in op.inputs
            if t >= 0
            and fb.buffer_data(model, subgraph.tensors[int(t)]) is None
        ]
        if len(variable) != 1:
            raise ConversionError(
                f"Layer '{found.layer}': an NLF op ({fb.op_name(model, op)}) "
                "reads more than one tensor; it cannot become a table.",
                layer=found.layer,
                op="SIN",
            )
        producer = producers.get(variable[0])
        if producer is None or not inside(variable[0], found.key):
            return ops, variable[0]
        ops.insert(0, producer)


def _table(model, island):
    """The int8 table of an island: its NLF on all 256 input values."""
    subgraph = model.subgraphs[0]
    in_scale, in_zero = _per_tensor(subgraph.tensors[island.source], island)
    values = in_scale * (np.arange(-128, 128, dtype=np.float64) - in_zero)
    values = island.section.nlf(values)
    out_scale, out_zero = _per_tensor(subgraph.tensors[island.output], island)
    q = values / out_scale
    q = np.sign(q) * np.floor(np.abs(q) + 0.5) + out_zero
    return np.clip(q, -128, 127).astype(np.int8)


def _table_tensors(model, islands):
    """One int8 table tensor per (layer, copy): block `p` for piece `p`."""
    blocks = {}
    for island in islands:
        key = (island.layer, island.section.copy)
        blocks.setdefault(key, {})[island.section.piece] = island
    subgraph = model.subgraphs[0]
    tensors = {}
    for (layer, copy), by_piece in blocks.items():
        if sorted(by_piece) != list(range(len(by_piece))):
            raise ConversionError(
                f"Layer '{layer}': the NLFs of copy {copy} do not cover "
                f"pieces 0..{len(by_piece) - 1}.",
                layer=layer,
            )
        quants = {
            _per_tensor(subgraph.tensors[i.output], i)
            for i in by_piece.values()
        }
        if len(quants) != 1:
            raise ConversionError(
                f"Layer '{layer}': its NLF outputs are quantized differently; "
                "their tables cannot share a tensor.",
                layer=layer,
            )
        table = np.concatenate(
            [_table(model, by_piece[p]) for p in range(len(by_piece))], axis=-1
        )
        tensors[(layer, copy)] = fb.add_tensor(
            model,
            subgraph,
            f"{layer}/nlf_table_{'all' if copy is None else copy}",
            schema.TensorType.INT8,
            list(table.shape),
            value=table,
            quant=quants.pop(),
        )
    return tensors


def _per_tensor(tensor, island):
    q = fb.quantization(tensor)
    if q is None or len(q[0]) != 1:
        raise ConversionError(
            f"Layer '{island.layer}': an NLF input or output is not "
            "per-tensor int8; it cannot become a lookup table.",
            layer=island.layer,
            op="SIN",
        )
    return q[0][0], q[1][0]


def _index_ops(model, island, mode):
    """The ops that turn the island's int8 source into table indices."""
    subgraph = model.subgraphs[0]
    source = subgraph.tensors[island.source]
    shape = [int(d) for d in source.shape]
    scale, zero = _per_tensor(source, island)
    offset = 128 + 256 * island.section.piece
    base = f"{fb.tensor_name(source)}/nlf_index"
    int32 = schema.TensorType.INT32
    index = fb.add_tensor(
        model,
        subgraph,
        base,
        int32,
        shape,
        quant=(scale, zero + offset) if mode == "quantize" else None,
    )
    if mode == "quantize":
        return [fb.make_op(model, "QUANTIZE", 2, [island.source], [index])]
    cast = fb.add_tensor(model, subgraph, base + "/cast", int32, shape)
    options = schema.CastOptionsT()
    options.inDataType = schema.TensorType.INT8
    options.outDataType = int32
    constant = fb.add_tensor(
        model,
        subgraph,
        base + "/offset",
        int32,
        [1],
        value=np.asarray([offset], np.int32),
    )
    return [
        fb.make_op(model, "CAST", 3, [island.source], [cast], options),
        fb.make_op(
            model, "ADD", 1, [cast, constant], [index], schema.AddOptionsT()
        ),
    ]


def _gather(model, island, table, index):
    """The GATHER from the table tensor `table` at the int32 `index`.

    A table of all copies is `(copies, pieces * 256)`: gathered on axis 1,
    it gives the copies along the output's leading axis.
    """
    options = schema.GatherOptionsT()
    options.axis = 1 if island.section.copy is None else 0
    options.batchDims = 0
    return fb.make_op(
        model, "GATHER", 2, [table, index], [island.output], options
    )


def _rebuild(subgraph, islands, by_source, removed):
    """The op list with the islands replaced.

    Where a piece is first read, its index ops and then every GATHER of
    its tables run, one after the other, so that the int32 index of a
    piece is freed before the next piece's is made.
    """
    insert_at = {}
    for island in islands:
        position = min(island.ops)
        insert_at[island.source] = min(
            insert_at.get(island.source, position), position
        )
    new_ops = {position: by_source[s] for s, position in insert_at.items()}
    operators = []
    for position, op in enumerate(subgraph.operators):
        operators.extend(new_ops.get(position, []))
        if position not in removed:
            operators.append(op)
    subgraph.operators = operators
