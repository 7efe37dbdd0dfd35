"""Trains a small GroupNL model on simulated devices, for test_distributed.py.

Run as a script in a fresh process, because the simulated devices must be
configured before the engine starts:

    python distributed_worker.py jax OUT_DIR
        4 XLA host devices (XLA_FLAGS, set here before jax is imported):
        single-device, `DataParallel` and `ModelParallel` training.
    python distributed_worker.py tensorflow OUT_DIR
        2 logical CPU devices: single-device and `MirroredStrategy`
        training of GroupNLResNet8, with and without synchronized
        BatchNormalization.
    python distributed_worker.py torch OUT_DIR RANK WORLD_SIZE PORT
        one rank of a gloo process group: DistributedDataParallel with the
        torch training loop Keras documents, then `model.fit` in the same
        job (which does not average gradients).

Each mode writes `OUT_DIR/<name>.npz` files (losses and variables after
training, per-device copies of the NLF tables) and `.keras` files with
their outputs. JAX and TensorFlow also train on one device here
(`single.npz`); for torch the test process does it, a third process. Last,
every mode writes the NLF tables of GroupNLResNet8 built with `seed=None`
after `keras.utils.set_random_seed(NLF_SEED)` (`resnet8_nlf.npz`,
`rank<i>_resnet8_nlf.npz` for torch), which the test compares with the
tables drawn in its own process. The test process imports this module
too, so nothing here may touch the engine at import time.
"""

import os
import sys

import numpy as np

# Every run draws its model and data from these, in every process.
RANDOM_SEED = 1234
NLF_SEED = 2024
STEPS = 3
GLOBAL_BATCH = 8
IMAGE_SIDE = 12
CLASSES = 10
LEARNING_RATE = 0.05
RESNET_SIDE = 16


def data():
    """`STEPS` global batches of images and labels (NumPy, float32)."""
    rng = np.random.default_rng(0)
    count = STEPS * GLOBAL_BATCH
    x = rng.normal(size=(count, IMAGE_SIDE, IMAGE_SIDE, 3))
    y = rng.integers(0, CLASSES, count)
    return x.astype("float32"), y.astype("int32")


def resnet_data():
    """Like `data`, at the input size of the GroupNLResNet8 runs."""
    rng = np.random.default_rng(1)
    count = STEPS * GLOBAL_BATCH
    x = rng.normal(size=(count, RESNET_SIDE, RESNET_SIDE, 3))
    y = rng.integers(0, CLASSES, count)
    return x.astype("float32"), y.astype("int32")


def batches(x, y):
    for step in range(STEPS):
        part = slice(step * GLOBAL_BATCH, (step + 1) * GLOBAL_BATCH)
        yield x[part], y[part]


def small_model(batchnorm=True):
    """Two GroupNL convs (`seed=None`: the NLF draw follows the global seed).

    Layer names end in `_conv`, as in the applications, so the layout map
    of the JAX recipe applies.
    """
    import keras

    from keras_groupnl.layers import GroupNLConv2D
    from keras_groupnl.layers import SparseGroupNLConv2D

    keras.utils.set_random_seed(RANDOM_SEED)
    inputs = keras.Input((IMAGE_SIDE, IMAGE_SIDE, 3))
    x = GroupNLConv2D(16, 3, padding="same", name="gnl1_conv")(inputs)
    if batchnorm:
        x = keras.layers.BatchNormalization(name="gnl1_bn")(x)
    x = keras.layers.ReLU(name="gnl1_relu")(x)
    x = SparseGroupNLConv2D(16, 3, strides=2, padding="same", name="gnl2_conv")(
        x
    )
    if batchnorm:
        x = keras.layers.BatchNormalization(name="gnl2_bn")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(CLASSES, name="predictions")(x)
    return keras.Model(inputs, outputs)


def compile_model(model):
    import keras

    model.compile(
        optimizer=keras.optimizers.SGD(LEARNING_RATE),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def train_with_keras(model, x, y):
    """`STEPS` steps of `model.fit`; returns the loss of every step.

    One `fit` call per batch, to read every step's loss. Not
    `train_on_batch`: under `MirroredStrategy` it hands every replica the
    whole batch instead of splitting it.
    """
    losses = []
    for xb, yb in batches(x, y):
        history = model.fit(
            xb, yb, batch_size=GLOBAL_BATCH, shuffle=False, verbose=0
        )
        losses.append(history.history["loss"][0])
    return losses


def trained(model, x, y):
    """Compiles and trains `model`; returns its losses and variables.

    It runs on the devices of the current distribution, if any.
    """
    losses = train_with_keras(compile_model(model), x, y)
    return {"losses": np.asarray(losses), **weights(model)}


def weights(model):
    """{variable path: value} of every variable of `model`."""
    import keras

    return {v.path: keras.ops.convert_to_numpy(v.value) for v in model.weights}


def nlf_tables(model):
    """{variable path: value} of the NLF tables only."""
    return {k: v for k, v in weights(model).items() if "/nlf_" in k}


def save(out, name, arrays):
    np.savez(os.path.join(out, f"{name}.npz"), **arrays)


def save_model(out, name, model, x):
    """Saves `name.keras` and the model's outputs on `x`."""
    model.save(os.path.join(out, f"{name}.keras"))
    save(
        out,
        f"{name}_outputs",
        {"x": x, "y": np.asarray(model.predict(x, verbose=0))},
    )


# ---------------------------------------------------------------------------
# JAX: keras.distribution on 4 simulated host devices.


def jax_shards(model):
    """{path/shard_i: value} of every device's copy of the NLF tables."""
    shards = {}
    for variable in model.weights:
        if "/nlf_" in variable.path:
            for i, shard in enumerate(variable.value.addressable_shards):
                shards[f"{variable.path}/shard_{i}"] = np.asarray(shard.data)
    return shards


def jax_layout_map(mesh):
    """The layout map of the JAX recipe (`examples/distributed_jax.py`)."""
    import keras

    layout_map = keras.distribution.LayoutMap(mesh)
    layout_map[r".*_conv/kernel"] = (None, None, None, "model")
    layout_map[r"predictions/kernel"] = (None, "model")
    layout_map[r"predictions/bias"] = ("model",)
    return layout_map


def run_jax(out):
    import jax
    import keras

    devices = jax.devices()
    assert len(devices) == 4, devices
    x, y = data()
    save(out, "single", trained(small_model(), x, y))

    mesh = keras.distribution.DeviceMesh(
        (2, 2), ("batch", "model"), keras.distribution.list_devices()
    )
    distributions = {
        "data_parallel": keras.distribution.DataParallel(),
        "model_parallel": keras.distribution.ModelParallel(
            layout_map=jax_layout_map(mesh), batch_dim_name="batch"
        ),
    }
    for name, distribution in distributions.items():
        with distribution.scope():
            model = small_model()
            results = trained(model, x, y)
            results.update(jax_shards(model))
            # Seed maps per device: 8 when replicated, 4 when sharded.
            kernel = model.get_layer("gnl1_conv").kernel.value
            shard = kernel.addressable_shards[0].data
            results["seed_maps_per_device"] = np.asarray(shard.shape[-1])
            save(out, name, results)
            save_model(out, name, model, x[:GLOBAL_BATCH])


# ---------------------------------------------------------------------------
# TensorFlow: MirroredStrategy on 2 logical CPU devices, in float64 so that
# the comparison with single-device training is exact (see test_distributed).


def run_tensorflow(out):
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    import keras

    keras.config.set_floatx("float64")
    x, y = resnet_data()
    x = x.astype("float64")
    with tf.device("/cpu:0"):
        save(out, "single", trained(resnet8(False), x, y))
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    for synchronized in (True, False):
        name = "mirrored_sync" if synchronized else "mirrored_local"
        with strategy.scope():
            model = resnet8(synchronized)
            compile_model(model)
        results = {"losses": np.asarray(train_with_keras(model, x, y))}
        results.update(weights(model))
        for variable in model.weights:
            if "/nlf_" in variable.path:
                local = strategy.experimental_local_results(variable.value)
                for i, value in enumerate(local):
                    results[f"{variable.path}/replica_{i}"] = value.numpy()
        save(out, name, results)
        if synchronized:
            save_model(out, name, model, x[:GLOBAL_BATCH])
    keras.config.set_floatx("float32")


def resnet8(synchronized_batchnorm):
    import keras

    from keras_groupnl import applications

    keras.utils.set_random_seed(RANDOM_SEED)
    return applications.GroupNLResNet8(
        input_shape=(RESNET_SIDE, RESNET_SIDE, 3),
        classes=CLASSES,
        classifier_activation=None,
        synchronized_batchnorm=synchronized_batchnorm,
    )


# ---------------------------------------------------------------------------
# PyTorch: one rank of DistributedDataParallel over gloo.


def train_with_torch(model, x, y, rank=0, world_size=1):
    """The torch loop Keras documents, on this rank's share of each batch.

    `model` is the Keras model, or the `DistributedDataParallel` wrapping
    it; `training=True` runs BatchNormalization and Dropout in training
    mode (a bare `model(x)` call would not).
    """
    import torch

    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    loss_fn = torch.nn.CrossEntropyLoss()
    losses = []
    for xb, yb in batches(x, y):
        xb = torch.from_numpy(xb[rank::world_size])
        yb = torch.from_numpy(yb[rank::world_size]).long()
        optimizer.zero_grad()
        loss = loss_fn(model(xb, training=True), yb)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def run_torch(out, rank, world_size, port):
    import datetime

    import keras
    import torch
    import torch.distributed as dist

    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=300),
    )
    try:
        # A model whose tables this rank drew itself: DDP would overwrite
        # them with rank 0's, which hides a mismatch.
        keras.utils.set_random_seed(RANDOM_SEED + 1 + rank)
        save(out, f"rank{rank}_own_seed_nlf", nlf_tables(small_model_own()))

        model = small_model(batchnorm=False)
        save(out, f"rank{rank}_nlf_before_ddp", nlf_tables(model))
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        x, y = data()
        losses = train_with_torch(ddp, x, y, rank, world_size)
        save(
            out, f"rank{rank}", {"losses": np.asarray(losses), **weights(model)}
        )
        if rank == 0:
            save_model(out, "ddp", model, x[:GLOBAL_BATCH])

        # The trap: `model.fit` inside the DDP job trains every rank alone.
        fitted = compile_model(small_model(batchnorm=False))
        torch.nn.parallel.DistributedDataParallel(fitted)
        for xb, yb in batches(x, y):
            fitted.fit(
                xb[rank::world_size],
                yb[rank::world_size],
                batch_size=GLOBAL_BATCH // world_size,
                shuffle=False,
                verbose=0,
            )
        save(out, f"rank{rank}_fit", weights(fitted))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def small_model_own():
    """`small_model`'s GroupNL layer, drawn from the current global seed."""
    import keras

    from keras_groupnl.layers import GroupNLConv2D

    inputs = keras.Input((IMAGE_SIDE, IMAGE_SIDE, 3))
    outputs = GroupNLConv2D(16, 3, name="gnl1_conv")(inputs)
    return keras.Model(inputs, outputs)


# ---------------------------------------------------------------------------
# `seed=None` in another process.


def resnet8_nlf(seed):
    """NLF tables of GroupNLResNet8(seed=None) after set_random_seed(seed).

    Built without initialising variables (cheap on every backend): the
    tables a GroupNL layer stores are its `draw_nlf_parameters()`.
    """
    import keras

    from keras_groupnl import applications
    from keras_groupnl.layers import GroupNLConv2D

    keras.utils.set_random_seed(seed)
    with keras.StatelessScope(initialize_variables=False):
        model = applications.GroupNLResNet8(
            input_shape=(RESNET_SIDE, RESNET_SIDE, 3), classes=CLASSES
        )
    tables = {}
    for layer in model.layers:
        if isinstance(layer, GroupNLConv2D):
            periods, shifts = layer.draw_nlf_parameters()
            tables[f"{layer.name}/nlf_period"] = periods
            tables[f"{layer.name}/nlf_shift"] = shifts
    return tables


def main(argv):
    mode, out = argv[0], argv[1]
    if mode == "jax":
        # Before jax is imported.
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
        run_jax(out)
    elif mode == "tensorflow":
        run_tensorflow(out)
    elif mode == "torch":
        run_torch(out, int(argv[2]), int(argv[3]), int(argv[4]))
    else:
        raise ValueError(f"Unknown mode. Received: mode={mode!r}")
    # Last: TensorFlow's logical devices must be set before anything runs.
    prefix = f"rank{argv[2]}_" if mode == "torch" else ""
    save(out, f"{prefix}resnet8_nlf", resnet8_nlf(NLF_SEED))


if __name__ == "__main__":
    main(sys.argv[1:])
