"""An offline tensor-arena plan for TensorFlow Lite Micro.

TFLite Micro places activation buffers with its `GreedyMemoryPlanner`
(largest buffer first, each at the lowest offset that is free while it is
live). On graphs with many small tensors that leaves holes: GroupNL
ResNet-8 got a 57,344-byte head where 49,152 bytes are ever live at once.
TFLite Micro also reads a plan made offline, from the model's
`OfflineMemoryAllocation` metadata (format in TFLite Micro's
`docs/memory_management.md`: int32 `[version, subgraphs, n, offset of
tensor 0, ..., offset of tensor n-1]`, -1 for tensors it plans itself).

`add_offline_plan` tries several placement orders, keeps the smallest arena
(often exactly the largest amount of memory live at one time, the lower
bound), and writes it as that metadata. The output of a RESHAPE shares its
input's buffer (TFLite Micro's RESHAPE then copies nothing), so a reshape
costs no arena. Every model the "mcu" target writes gets a plan, the plain
twin of a comparison too.
"""

import numpy as np

from keras_groupnl.converters import _flatbuffer as fb

METADATA_NAME = "OfflineMemoryAllocation"
_ALIGNMENT = 16  # TFLite Micro aligns arena buffers to 16 bytes.


def _buffers(model):
    """`({buffer: (size, first op, last op)}, {tensor: buffer})` of the
    activation tensors; a RESHAPE's output shares its input's buffer."""
    subgraph = model.subgraphs[0]
    alias = _reshape_aliases(model)
    last_op = len(subgraph.operators) - 1
    first, last = {}, {}
    for t in subgraph.inputs:
        first[int(t)] = 0
    for k, op in enumerate(subgraph.operators):
        for t in op.outputs:
            first.setdefault(int(t), k)
        for t in op.inputs:
            if t >= 0:
                last[int(t)] = k
    for t in subgraph.outputs:
        last[int(t)] = last_op
    found, owner = {}, {}
    for t, start in first.items():
        tensor = subgraph.tensors[t]
        if fb.buffer_data(model, tensor) is not None:
            continue
        count = int(np.prod([max(int(d), 1) for d in tensor.shape]))
        size = count * np.dtype(fb.NUMPY_TYPES[tensor.type]).itemsize
        size = -(-size // _ALIGNMENT) * _ALIGNMENT
        stop = max(last.get(t, start), start)
        root = alias.get(t, t)
        owner[t] = root
        if root in found:
            old = found[root]
            found[root] = (old[0], min(old[1], start), max(old[2], stop))
        else:
            found[root] = (size, start, stop)
    return found, owner


def _reshape_aliases(model):
    """`{tensor: the tensor whose buffer it shares}` along RESHAPE chains."""
    subgraph = model.subgraphs[0]
    alias = {}
    for op in subgraph.operators:
        if fb.op_name(model, op) != "RESHAPE":
            continue
        source, target = int(op.inputs[0]), int(op.outputs[0])
        if fb.buffer_data(model, subgraph.tensors[source]) is None:
            alias[target] = alias.get(source, source)
    return alias


def _place(buffers, order):
    """First-fit placement in `order`; returns `({tensor: offset}, size)`."""
    offsets = {}
    for t in order:
        size, start, stop = buffers[t]
        busy = sorted(
            (offsets[o], offsets[o] + buffers[o][0])
            for o in offsets
            if buffers[o][1] <= stop and start <= buffers[o][2]
        )
        offset = 0
        for low, high in busy:
            if offset + size <= low:
                break
            offset = max(offset, high)
        offsets[t] = offset
    end = max((offsets[t] + buffers[t][0] for t in offsets), default=0)
    return offsets, end


def plan(model):
    """The best offline plan found: `({tensor: offset}, arena head bytes)`."""
    buffers, owner = _buffers(model)
    keys = {
        "size": lambda t: (-buffers[t][0], buffers[t][1]),
        "lifetime": lambda t: (buffers[t][1] - buffers[t][2], -buffers[t][0]),
        "first use": lambda t: (buffers[t][1], -buffers[t][0]),
        "area": lambda t: (
            -buffers[t][0] * (buffers[t][2] - buffers[t][1] + 1),
            buffers[t][1],
        ),
    }
    offsets, size = min(
        (_place(buffers, sorted(buffers, key=key)) for key in keys.values()),
        key=lambda result: result[1],
    )
    return {t: offsets[root] for t, root in owner.items()}, size


def live_peak(model):
    """The most activation bytes live at one time: no plan can do better."""
    buffers, _ = _buffers(model)
    steps = len(model.subgraphs[0].operators)
    return max(
        (
            sum(
                size
                for size, start, stop in buffers.values()
                if start <= k <= stop
            )
            for k in range(steps)
        ),
        default=0,
    )


def add_offline_plan(model):
    """Plans the arena offline and stores the plan in `model` (a ModelT).

    Returns the planned head size in bytes.
    """
    offsets, size = plan(model)
    subgraph = model.subgraphs[0]
    entries = [offsets.get(t, -1) for t in range(len(subgraph.tensors))]
    data = np.asarray([1, 1, len(entries)] + entries, dtype=np.int32)
    metadata = fb.schema.MetadataT()
    metadata.name = METADATA_NAME
    metadata.buffer = fb.add_buffer(model, data)
    # A plan read back from a file has a bytes name: replace it too.
    model.metadata = [
        m
        for m in (model.metadata or [])
        if m.name not in (METADATA_NAME, METADATA_NAME.encode())
    ] + [metadata]
    return size
