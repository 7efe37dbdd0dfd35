"""Quick start: a small GroupNL CNN against the same CNN with Conv2D.

Builds two models that differ only in their 3x3 convolutions (GroupNLConv2D
against Conv2D), trains both with the same recipe and seed on Fashion-MNIST,
and prints their summaries, parameter counts and test accuracies side by side.

    python examples/quickstart.py                 # 1 epoch on 12 000 images
    python examples/quickstart.py --train-size 60000 --epochs 5
"""

import argparse

import keras

from keras_groupnl.datasets import load_fashion_mnist
from keras_groupnl.layers import GroupNLConv2D

# A short run: BatchNorm statistics must settle within a few hundred steps.
BN_MOMENTUM = 0.9


def build_model(groupnl, seed=0):
    """A 4-conv CNN; `groupnl` swaps its 3x3 body convs for GroupNLConv2D."""

    def conv(filters, ratio, name):
        if groupnl:
            return GroupNLConv2D(
                filters,
                3,
                padding="same",
                reduction_ratio=ratio,
                seed=seed,
                name=name,
            )
        return keras.layers.Conv2D(
            filters, 3, padding="same", use_bias=False, name=name
        )

    inputs = keras.Input((28, 28, 1), name="image")
    x = keras.layers.Rescaling(1 / 255.0, name="rescale")(inputs)
    # The stem stays a standard conv, as in the method.
    x = keras.layers.Conv2D(32, 3, padding="same", use_bias=False, name="stem")(
        x
    )
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    for i, (filters, ratio) in enumerate([(32, 2), (64, 4), (64, 4)]):
        x = conv(filters, ratio, f"block{i}_conv")(x)
        x = keras.layers.BatchNormalization(
            momentum=BN_MOMENTUM, name=f"block{i}_bn"
        )(x)
        x = keras.layers.ReLU(name=f"block{i}_relu")(x)
        x = keras.layers.MaxPooling2D(name=f"block{i}_pool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(10, name="logits")(x)
    name = "groupnl_cnn" if groupnl else "plain_cnn"
    return keras.Model(inputs, outputs, name=name)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-size", type=int, default=12000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    print(f"Keras {keras.__version__}, backend {keras.backend.backend()}")
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
    x_train = x_train[: args.train_size, ..., None]
    y_train = y_train[: args.train_size]
    x_test = x_test[..., None]
    print(f"Fashion-MNIST: {len(x_train)} training, {len(x_test)} test images")

    results = {}
    for groupnl in (False, True):
        keras.utils.set_random_seed(args.seed)
        model = build_model(groupnl, seed=args.seed)
        model.summary()
        model.compile(
            optimizer=keras.optimizers.Adam(2e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        print(f"Training {model.name} ...")
        model.fit(
            x_train,
            y_train,
            batch_size=args.batch_size,
            epochs=args.epochs,
            verbose=1,
        )
        _, accuracy = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
        results[model.name] = (model.count_params(), accuracy)

    print("\n| model | parameters | test accuracy |")
    print("|---|---:|---:|")
    for name, (params, accuracy) in results.items():
        print(f"| {name} | {params:,} | {accuracy:.4f} |")
    plain, groupnl = results["plain_cnn"][0], results["groupnl_cnn"][0]
    print(f"\nGroupNL parameters: {groupnl / plain:.2f}x the plain model's")
    return results


if __name__ == "__main__":
    main()
