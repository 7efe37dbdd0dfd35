"""Trains a GroupNL ResNet-8 on several devices with JAX.

Keras' distribution API on every local device: `DataParallel` (a copy of
the model on each device, each global batch split across them) or, with
`--model-parallel`, `ModelParallel` on a (devices / 2, 2) mesh that also
splits the convolution kernels. Trains on Fashion-MNIST, saves a `.keras`
file, then loads it with no distribution (on one device) and checks that it
predicts what the trained model predicts.

    python examples/distributed_jax.py
    python examples/distributed_jax.py --model-parallel

No accelerator? Simulate 4 devices on the CPU (set before JAX starts):

    XLA_FLAGS=--xla_force_host_platform_device_count=4 \\
        python examples/distributed_jax.py --model-parallel
"""

import argparse
import os

os.environ["KERAS_BACKEND"] = "jax"

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_groupnl.applications import GroupNLResNet8  # noqa: E402
from keras_groupnl.applications import resnet  # noqa: E402
from keras_groupnl.datasets import load_fashion_mnist  # noqa: E402


def layout_map(mesh):
    """Which weights `ModelParallel` splits across the "model" axis.

    Conv and GroupNL kernels are (rows, cols, in, out): split the last axis
    (for a GroupNL conv, its seed maps). Its size must divide by the "model"
    axis size. The NLF tables (`<layer>/nlf_period`, `<layer>/nlf_shift`)
    are a few frozen numbers per layer: no key matches them, so every device
    holds them whole. Print `v.path, v.shape` for `v in model.weights` to
    see every variable.
    """
    layouts = keras.distribution.LayoutMap(mesh)
    layouts[r".*_conv/kernel"] = (None, None, None, "model")
    layouts[r"predictions/kernel"] = (None, "model")
    layouts[r"predictions/bias"] = ("model",)
    return layouts


def make_distribution(model_parallel):
    devices = keras.distribution.list_devices()
    if not model_parallel:
        return keras.distribution.DataParallel(devices=devices)
    if len(devices) % 2:
        raise SystemExit(
            f"--model-parallel needs an even number of devices; "
            f"found {len(devices)}"
        )
    mesh = keras.distribution.DeviceMesh(
        (len(devices) // 2, 2), ("batch", "model"), devices
    )
    return keras.distribution.ModelParallel(
        layout_map=layout_map(mesh), batch_dim_name="batch"
    )


def load_data(train_size, test_size, batch_size):
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
    # Whole global batches only: each one is split evenly across devices.
    train_size = min(train_size, len(x_train)) // batch_size * batch_size
    test_size = min(test_size, len(x_test)) // batch_size * batch_size
    x_train = resnet.preprocess_input(x_train[:train_size, ..., None])
    x_test = resnet.preprocess_input(x_test[:test_size, ..., None])
    return (x_train, y_train[:train_size]), (x_test, y_test[:test_size])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-parallel", action="store_true")
    parser.add_argument("--train-size", type=int, default=60000)
    parser.add_argument("--test-size", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--out", default="runs/distributed_jax")
    args = parser.parse_args(argv)
    (x_train, y_train), (x_test, y_test) = load_data(
        args.train_size, args.test_size, args.batch_size
    )

    distribution = make_distribution(args.model_parallel)
    keras.distribution.set_distribution(distribution)
    print(f"{type(distribution).__name__} on {distribution.device_mesh}")
    # One seed fixes the weights and the NLF tables on every device.
    keras.utils.set_random_seed(0)
    model = GroupNLResNet8(input_shape=(28, 28, 1), classes=10, seed=0)
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "groupnl_resnet8.keras")
    model.save(path)
    probabilities = model.predict(x_test, batch_size=args.batch_size)

    # On one device: no distribution.
    keras.distribution.set_distribution(None)
    restored = keras.saving.load_model(path)
    restored_probabilities = restored.predict(x_test, batch_size=128)
    np.testing.assert_allclose(
        restored_probabilities, probabilities, rtol=0, atol=1e-5
    )
    accuracy = float(np.mean(restored_probabilities.argmax(-1) == y_test))
    print(f"Saved {path}; on one device: test accuracy {accuracy:.4f}")
    return {"path": path, "accuracy": accuracy}


if __name__ == "__main__":
    main()
