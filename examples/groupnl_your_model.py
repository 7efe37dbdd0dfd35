"""GroupNL for your own model: `to_groupnl` on a trained plain CNN.

1. Trains a small plain CNN (Conv2D + BatchNorm + ReLU) on Fashion-MNIST.
2. Turns it into a GroupNL model with `keras_groupnl.to_groupnl`, the seed
   convs warm-started from the trained convs (`init="from_conv"`), and
   prints what was replaced (parameters and MACs before and after).
3. Fine-tunes the GroupNL model, then evaluates it.
4. Converts it to int8 for phones (LiteRT, XNNPACK) next to the plain CNN.

It prints the test accuracy of the plain CNN, of the GroupNL model before
fine-tuning and after.

    python examples/groupnl_your_model.py                 # a few minutes
    python examples/groupnl_your_model.py --train-size 60000 --epochs 5 \\
        --finetune-epochs 2 --compare-fresh
"""

import argparse
import os
import time

import keras
import numpy as np

import keras_groupnl
from keras_groupnl import converters
from keras_groupnl.analysis import count_macs
from keras_groupnl.datasets import load_fashion_mnist


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--train-size",
        type=int,
        default=20000,
        help="training images (default 20 000 of 60 000)",
    )
    parser.add_argument(
        "--test-size",
        type=int,
        default=None,
        help="test images (default: all 10 000)",
    )
    parser.add_argument(
        "--epochs", type=int, default=2, help="plain CNN epochs (default 2)"
    )
    parser.add_argument(
        "--finetune-epochs",
        type=int,
        default=1,
        help="GroupNL fine-tuning epochs (default 1)",
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument(
        "--finetune-learning-rate",
        type=float,
        default=1e-3,
        help="fine-tuning learning rate (default 1e-3)",
    )
    parser.add_argument("--reduction-ratio", type=float, default=2)
    parser.add_argument(
        "--conv-type", choices=("dense", "sparse"), default="dense"
    )
    parser.add_argument(
        "--init",
        choices=("from_conv", "fresh"),
        default="from_conv",
        help="seed conv initialisation (default from_conv, the warm start)",
    )
    parser.add_argument(
        "--compare-fresh",
        action="store_true",
        help="also fine-tune an init='fresh' conversion the same way",
    )
    parser.add_argument(
        "--no-convert",
        action="store_true",
        help="skip the int8 phone conversion",
    )
    parser.add_argument("--out", default="runs/groupnl_your_model")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in (
        "train_size",
        "test_size",
        "epochs",
        "finetune_epochs",
        "batch_size",
    ):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


def plain_cnn():
    """Your model: a plain CNN of Conv2D + BatchNorm + ReLU blocks."""
    inputs = keras.Input((28, 28, 1), name="image")
    x = inputs
    for i, filters in enumerate((32, 32, 64, 64, 128)):
        x = keras.layers.Conv2D(
            filters, 3, padding="same", use_bias=False, name=f"conv{i}"
        )(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
        if i in (1, 3):
            x = keras.layers.MaxPooling2D(name=f"pool{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name="plain_cnn")


def fit(model, x, y, epochs, learning_rate, batch_size):
    steps = epochs * -(-len(x) // batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=2)
    return time.perf_counter() - start


def accuracy(model, x, y):
    logits = model.predict(x, batch_size=512, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == y))


def load(args):
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
    rng = np.random.default_rng(args.seed)
    keep = np.sort(rng.permutation(len(x_train))[: args.train_size])
    x_train, y_train = x_train[keep], y_train[keep]
    if args.test_size is not None:
        x_test, y_test = x_test[: args.test_size], y_test[: args.test_size]

    def scale(images):
        return (images.astype("float32") / 255.0)[..., None]

    return (scale(x_train), y_train), (scale(x_test), y_test)


def convert_and_finetune(plain, init, train, test, args):
    """`to_groupnl`, accuracy before, fine-tuning, accuracy after."""
    model, report = keras_groupnl.to_groupnl(
        plain,
        reduction_ratio=args.reduction_ratio,
        conv_type=args.conv_type,
        init=init,
        seed=args.seed,
        name=f"groupnl_cnn_{init}",
        verbose=True,
        return_report=True,
    )
    before = accuracy(model, *test)
    print(f"\n== fine-tuning the GroupNL model (init={init!r})")
    seconds = fit(
        model,
        *train,
        args.finetune_epochs,
        args.finetune_learning_rate,
        args.batch_size,
    )
    return model, report, before, accuracy(model, *test), seconds


def phone(model, plain, train, test, args):
    calibration = train[0][np.linspace(0, len(train[0]) - 1, 500).astype(int)]
    result = converters.convert(
        model,
        "phone",
        calibration,
        os.path.join(args.out, "phone"),
        verification_data=test,
        compare_with=plain,
        name="groupnl_cnn",
    )
    print(result.summary())
    return result


def main(argv=None):
    args = parse_args(argv)
    print(f"Keras {keras.__version__}, backend {keras.backend.backend()}")
    train, test = load(args)
    print(
        f"Fashion-MNIST: {len(train[0]):,} training images, "
        f"{len(test[0]):,} test images"
    )
    keras.utils.set_random_seed(args.seed)
    plain = plain_cnn()
    print(f"\n== training {plain.name} for {args.epochs} epochs")
    plain_seconds = fit(
        plain, *train, args.epochs, args.learning_rate, args.batch_size
    )
    results = {"plain": accuracy(plain, *test)}
    print("\n== to_groupnl")
    inits = [args.init] + (
        ["fresh"] if args.compare_fresh and args.init != "fresh" else []
    )
    runs = {}
    for init in inits:
        keras.utils.set_random_seed(args.seed)
        runs[init] = convert_and_finetune(plain, init, train, test, args)
    model, report, before, after, seconds = runs[args.init]

    rows = [
        (
            f"plain CNN ({args.epochs} epochs)",
            plain,
            results["plain"],
        )
    ]
    for init, (m, _, acc_before, acc_after, _) in runs.items():
        rows.append((f"GroupNL init={init}, before fine-tuning", m, acc_before))
        rows.append(
            (
                f"GroupNL init={init}, {args.finetune_epochs} epoch(s) "
                "fine-tuned",
                m,
                acc_after,
            )
        )
    print(f"\n{'model':<46} {'params':>9} {'MACs':>12} {'test accuracy':>14}")
    for label, m, acc in rows:
        print(
            f"{label:<46} {m.count_params():>9,} {count_macs(m):>12,} "
            f"{acc:>14.4f}"
        )
    print(
        f"training: plain {plain_seconds:.0f} s, GroupNL fine-tuning "
        f"{seconds:.0f} s; {len(report.replaced)} convs replaced"
    )
    results.update(
        {
            "plain_params": int(plain.count_params()),
            "plain_macs": count_macs(plain),
            "groupnl_params": int(model.count_params()),
            "groupnl_macs": count_macs(model),
            "before_finetune": {k: v[2] for k, v in runs.items()},
            "after_finetune": {k: v[3] for k, v in runs.items()},
            "report": report,
        }
    )
    if not args.no_convert:
        print("\n== int8 phone conversion (LiteRT), next to the plain CNN")
        results["phone"] = phone(model, plain, train, test, args).report
    return results


if __name__ == "__main__":
    main()
