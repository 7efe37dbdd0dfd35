"""Trains a GroupNL ResNet-8 in several processes with PyTorch DDP.

One process per GPU (or `--processes N` CPU processes with the gloo
backend), each holding a copy of the Keras model wrapped in
`torch.nn.parallel.DistributedDataParallel`, trained with a torch loop as
in Keras' guide to distributed training with PyTorch. `model.fit` inside a
DDP job runs, but it does not average the gradients across processes: the
copies drift apart. Trains on Fashion-MNIST, saves a `.keras` file from
rank 0, then loads it in the launching process (on one device) and checks
that it predicts what rank 0's model predicted.

    python examples/distributed_torch.py                  # every GPU
    python examples/distributed_torch.py --processes 2    # 2 CPU processes
"""

import argparse
import datetime
import os

os.environ["KERAS_BACKEND"] = "torch"

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from keras_groupnl.applications import GroupNLResNet8  # noqa: E402
from keras_groupnl.applications import resnet  # noqa: E402
from keras_groupnl.datasets import load_fashion_mnist  # noqa: E402


def load_data(train_size, test_size):
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
    x_train = resnet.preprocess_input(x_train[:train_size, ..., None])
    x_test = resnet.preprocess_input(x_test[:test_size, ..., None])
    train = torch.utils.data.TensorDataset(
        torch.from_numpy(x_train),
        torch.from_numpy(y_train[:train_size].astype("int64")),
    )
    return train, (x_test, y_test[:test_size])


def train(rank, world_size, args):
    """One process: rank `rank` of `world_size`."""
    cuda = torch.cuda.is_available() and not args.processes
    dist.init_process_group(
        "nccl" if cuda else "gloo",
        init_method=f"tcp://127.0.0.1:{args.port}",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(minutes=5),
    )
    device = torch.device(f"cuda:{rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    train_set, (x_test, _) = load_data(args.train_size, args.test_size)
    # Every process shuffles alike and takes its own share of each epoch.
    sampler = torch.utils.data.DistributedSampler(
        train_set, num_replicas=world_size, rank=rank, seed=0
    )
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=args.batch_size // world_size, sampler=sampler
    )

    # The same seed in every process: the same weights and NLF tables.
    # (DDP also copies rank 0's weights to the others when it starts,
    # which would hide tables drawn differently.)
    keras.utils.set_random_seed(0)
    model = GroupNLResNet8(
        input_shape=(28, 28, 1),
        classes=10,
        classifier_activation=None,  # logits, for CrossEntropyLoss
        seed=0,
    ).to(device)
    ddp_model = torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[rank] if cuda else None
    )
    optimizer = torch.optim.SGD(ddp_model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        for step, (x, y) in enumerate(loader):
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            # training=True: BatchNormalization in training mode (each
            # process normalises with the statistics of its own share of
            # the batch, as torch's BatchNorm does without SyncBatchNorm).
            loss = loss_fn(ddp_model(x, training=True), y)
            loss.backward()  # DDP averages the gradients here
            optimizer.step()
            if rank == 0 and step % 50 == 0:
                print(f"epoch {epoch} step {step} loss {loss.item():.4f}")

    if rank == 0:
        os.makedirs(args.out, exist_ok=True)
        model.save(os.path.join(args.out, "groupnl_resnet8.keras"))
        logits = model.predict(x_test, batch_size=128, verbose=0)
        np.save(os.path.join(args.out, "rank0_logits.npy"), logits)
    dist.barrier()
    dist.destroy_process_group()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--processes",
        type=int,
        default=0,
        help="CPU processes (gloo); default: one per GPU (nccl)",
    )
    parser.add_argument("--port", type=int, default=29500)
    parser.add_argument("--train-size", type=int, default=60000)
    parser.add_argument("--test-size", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--out", default="runs/distributed_torch")
    args = parser.parse_args(argv)
    world_size = args.processes or torch.cuda.device_count()
    if world_size < 1:
        raise SystemExit("No GPU found: pass --processes N for CPU processes")
    torch.multiprocessing.spawn(
        train, args=(world_size, args), nprocs=world_size
    )

    # On one device, in this process.
    path = os.path.join(args.out, "groupnl_resnet8.keras")
    restored = keras.saving.load_model(path)
    _, (x_test, y_test) = load_data(args.train_size, args.test_size)
    logits = restored.predict(x_test, batch_size=128, verbose=0)
    expected = np.load(os.path.join(args.out, "rank0_logits.npy"))
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-4)
    accuracy = float(np.mean(logits.argmax(-1) == y_test))
    print(f"Saved {path}; on one device: test accuracy {accuracy:.4f}")
    return {"path": path, "accuracy": accuracy}


if __name__ == "__main__":
    main()
