"""Prints a Markdown table of the parameter counts of the GroupNL models.

For each model: the GroupNL variants (dense and sparse where the family
allows them) and the plain-conv counterpart built by the same builder, with
the models' default settings (`reduction_ratio=2`, `num_groups=4`, stride-2
convs replaced, 224x224x3 input and 1000 classes; ResNet-8 at 32x32x3 with
10 classes). "Total" is `model.count_params()`: trainable weights plus
BatchNormalization statistics and the frozen NLF values; "trainable" counts
what the optimiser updates.

Usage:
    python benchmarks/parameter_table.py [--reduction-ratio R]
        [--num-groups G] [--no-strided] [--models resnet8,resnet18,...]

Parameter counts do not depend on the backend. Weights are created
uninitialised (inside a `keras.StatelessScope`), so the script only costs
the symbolic builds.
"""

import argparse
import sys

import keras
import numpy as np

from keras_groupnl import applications

MODELS = {
    "resnet8": ("ResNet-8 (MLPerf Tiny)", applications.GroupNLResNet8),
    "resnet18": ("ResNet-18", applications.GroupNLResNet18),
    "resnet34": ("ResNet-34", applications.GroupNLResNet34),
    "resnet50": ("ResNet-50", applications.GroupNLResNet50),
    "resnet101": ("ResNet-101", applications.GroupNLResNet101),
    "resnet152": ("ResNet-152", applications.GroupNLResNet152),
    "mobilenet_v3_small": (
        "MobileNetV3-Small",
        applications.GroupNLMobileNetV3Small,
    ),
    "mobilenet_v3_large": (
        "MobileNetV3-Large",
        applications.GroupNLMobileNetV3Large,
    ),
    "efficientnet_es": ("EfficientNet-ES", applications.GroupNLEfficientNetES),
}
INVERTED_RESIDUAL = (
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_es",
)


def count(function, **kwargs):
    """(total, trainable) parameters of `function(**kwargs)`."""
    with keras.StatelessScope(initialize_variables=False):
        model = function(**kwargs)
        total = model.count_params()
        trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    return total, trainable


def _cell(counts, plain):
    if counts is None:
        return "n/a"
    total, trainable = counts
    ratio = trainable / plain[1]
    return f"{total:,} / {trainable:,} ({ratio:.0%})"


def table(models, reduction_ratio=2, num_groups=4, groupnl_strided=True):
    """The Markdown table as a string."""
    lines = [
        "| Model | GroupNL dense | GroupNL sparse | Plain |",
        "|---|---:|---:|---:|",
    ]
    settings = dict(
        reduction_ratio=reduction_ratio,
        num_groups=num_groups,
        groupnl_strided=groupnl_strided,
    )
    for key in models:
        title, function = MODELS[key]
        plain = count(function, conv_type="plain")
        sparse = count(function, conv_type="sparse", **settings)
        dense = (
            None
            if key in INVERTED_RESIDUAL
            else count(function, conv_type="dense", **settings)
        )
        lines.append(
            f"| {title} | {_cell(dense, plain)} | {_cell(sparse, plain)} "
            f"| {plain[0]:,} / {plain[1]:,} |"
        )
    lines.append("")
    lines.append(
        "Cells: total / trainable parameters (trainable as a share of the "
        f"plain model's). reduction_ratio={reduction_ratio}, "
        f"num_groups={num_groups}, groupnl_strided={groupnl_strided}; "
        "224x224x3 input and 1000 classes, ResNet-8 32x32x3 and 10 classes. "
        "Inverted-residual models replace depthwise convs, which only have a "
        "sparse GroupNL counterpart of equal size."
    )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reduction-ratio", type=float, default=2)
    parser.add_argument("--num-groups", type=int, default=4)
    parser.add_argument(
        "--no-strided",
        action="store_true",
        help="keep stride-2 convs standard, as the reference code does",
    )
    parser.add_argument(
        "--models",
        default=",".join(MODELS),
        help=f"comma-separated subset of: {', '.join(MODELS)}",
    )
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {list(MODELS)}")
    ratio = args.reduction_ratio
    if float(ratio).is_integer():
        ratio = int(ratio)
    print(
        table(
            models,
            reduction_ratio=ratio,
            num_groups=args.num_groups,
            groupnl_strided=not args.no_strided,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
