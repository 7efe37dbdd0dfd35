"""Trains a GroupNL ResNet-8 on several devices with TensorFlow.

`tf.distribute.MirroredStrategy` on every local GPU (or on the CPU devices
when there is no GPU): a copy of the model on each device, each global
batch split across them. The model is built with
`synchronized_batchnorm=True`, so that BatchNormalization normalises with
the statistics of the whole global batch, as on one device. Trains on
Fashion-MNIST, saves a `.keras` file, then loads it outside the strategy
(on one device) and checks that it predicts what the trained model predicts.

    python examples/distributed_tensorflow.py

No GPU? Split the CPU into 2 logical devices:

    python examples/distributed_tensorflow.py --simulate-cpu-devices 2
"""

import argparse
import os

os.environ["KERAS_BACKEND"] = "tensorflow"

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_groupnl.applications import GroupNLResNet8  # noqa: E402
from keras_groupnl.applications import resnet  # noqa: E402
from keras_groupnl.datasets import load_fashion_mnist  # noqa: E402


def make_strategy(simulate_cpu_devices):
    if simulate_cpu_devices:
        # Before TensorFlow runs anything.
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu,
            [tf.config.LogicalDeviceConfiguration()] * simulate_cpu_devices,
        )
    devices = tf.config.list_logical_devices("GPU")
    devices = devices or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([d.name for d in devices])


def load_data(train_size, test_size):
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
    x_train = resnet.preprocess_input(x_train[:train_size, ..., None])
    x_test = resnet.preprocess_input(x_test[:test_size, ..., None])
    return (x_train, y_train[:train_size]), (x_test, y_test[:test_size])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulate-cpu-devices", type=int, default=0)
    parser.add_argument("--train-size", type=int, default=60000)
    parser.add_argument("--test-size", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--out", default="runs/distributed_tensorflow")
    args = parser.parse_args(argv)
    strategy = make_strategy(args.simulate_cpu_devices)
    print(f"MirroredStrategy with {strategy.num_replicas_in_sync} replicas")
    (x_train, y_train), (x_test, y_test) = load_data(
        args.train_size, args.test_size
    )

    # One seed fixes the weights and the NLF tables; the strategy then
    # copies the variables to every replica.
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = GroupNLResNet8(
            input_shape=(28, 28, 1),
            classes=10,
            seed=0,
            synchronized_batchnorm=True,
        )
        model.compile(
            optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
    # `fit` splits every global batch across the replicas (`train_on_batch`
    # would give each replica the whole batch).
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "groupnl_resnet8.keras")
    model.save(path)
    probabilities = model.predict(x_test, batch_size=args.batch_size)

    # On one device: outside the strategy's scope. The file holds
    # BatchNormalization(synchronized=True) layers, which load on
    # TensorFlow only; elsewhere, build GroupNLResNet8 with the same
    # arguments and synchronized_batchnorm=False, then load the weights.
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
