"""`ConvChoice`: which layer implements each replaceable conv of a model.

The one place that decides, conv by conv, whether a model gets a
`GroupNLConv2D`, a `SparseGroupNLConv2D` or the standard layer
(`conv_type="dense" | "sparse" | "plain"`). Every family builds its plain
counterpart with the same builder, so comparisons are like for like.
"""

import math

import keras

from keras_groupnl import _validation
from keras_groupnl.layers import GroupNLConv2D
from keras_groupnl.layers import SparseGroupNLConv2D
from keras_groupnl.layers.base_group_nl_conv import MAX_NLF_RANGE

CONV_TYPES = ("dense", "sparse", "plain")
# The layers' own defaults (the method's): T in [1, 2], phi in [1, 5].
DEFAULT_PERIOD_RANGE = (1.0, 2.0)
DEFAULT_SHIFT_RANGE = (1.0, 5.0)


class ConvChoice:
    """Decides which layer implements each replaceable conv of a model.

    A family builder creates one `ConvChoice` from the user's GroupNL
    arguments and asks it for every conv the method may replace: the 3x3
    convs of residual blocks (`conv`) and the depthwise convs of
    inverted-residual blocks (`depthwise`). Stems, pointwise convs,
    shortcuts, squeeze-excite convs and heads are made by the builders
    directly and are never replaced.

    - `conv_type="dense"`: `GroupNLConv2D` (full seed conv).
    - `conv_type="sparse"`: `SparseGroupNLConv2D` (seed conv grouped by
      `gcd(in_channels, seed_channels)`).
    - `conv_type="plain"`: the standard `Conv2D` / `DepthwiseConv2D` the
      method replaces, which gives the plain counterpart of the model.

    A depthwise conv only ever becomes a sparse GroupNL conv: a dense seed
    conv would cost more than the depthwise conv it replaces, so the
    inverted-residual families accept only `"sparse"` and `"plain"`.

    With `groupnl_strided=False`, convs with a stride above 1 stay standard,
    as in the public reference ResNets of the method.

    GroupNL layer number `k` (in build order, from 0) gets the NLF seed
    `seed + k` when `seed` is an int, so a model is reproducible from one
    seed while every layer draws different sinusoids. `period_range`,
    `shift_range` and `trainable_nlf` go to every GroupNL layer unchanged.
    """

    def __init__(
        self,
        conv_type,
        reduction_ratio,
        num_groups,
        seed,
        groupnl_strided,
        kernel_initializer,
        allowed_conv_types=CONV_TYPES,
        period_range=DEFAULT_PERIOD_RANGE,
        shift_range=DEFAULT_SHIFT_RANGE,
        trainable_nlf=False,
    ):
        self.validate(
            conv_type,
            reduction_ratio,
            num_groups,
            seed,
            groupnl_strided,
            allowed_conv_types,
        )
        self.conv_type = conv_type
        self.reduction_ratio = reduction_ratio
        self.num_groups = num_groups
        self.seed = seed
        self.groupnl_strided = groupnl_strided
        self.kernel_initializer = kernel_initializer
        self.nlf_settings = dict(
            period_range=_validation.finite_range(
                period_range, "period_range", bound=MAX_NLF_RANGE
            ),
            shift_range=_validation.finite_range(
                shift_range, "shift_range", bound=MAX_NLF_RANGE
            ),
            trainable_nlf=_validation.boolean(trainable_nlf, "trainable_nlf"),
        )
        self._count = 0

    @staticmethod
    def validate(
        conv_type,
        reduction_ratio,
        num_groups,
        seed,
        groupnl_strided,
        allowed_conv_types=CONV_TYPES,
    ):
        """Checks the GroupNL arguments that do not depend on channels."""
        if not isinstance(conv_type, str) or conv_type not in CONV_TYPES:
            raise ValueError(
                "`conv_type` must be one of 'dense' (GroupNLConv2D), "
                "'sparse' (SparseGroupNLConv2D) or 'plain' (the standard "
                "conv, the plain counterpart). "
                f"Received: conv_type={conv_type!r}"
            )
        if conv_type not in allowed_conv_types:
            raise ValueError(
                "This model replaces depthwise convs, which only have a "
                "sparse GroupNL counterpart: a dense seed conv would cost "
                "more than the depthwise conv it replaces. `conv_type` must "
                f"be one of {allowed_conv_types}. "
                f"Received: conv_type={conv_type!r}"
            )
        if (
            not _validation.is_number(reduction_ratio)
            or isinstance(reduction_ratio, bool)
            or not math.isfinite(reduction_ratio)
            or reduction_ratio < 1
        ):
            raise ValueError(
                "`reduction_ratio` must be a number >= 1 (the seed conv "
                "makes ceil(filters / reduction_ratio) maps). "
                f"Received: reduction_ratio={reduction_ratio!r}"
            )
        if not _validation.is_int(num_groups) or num_groups < 1:
            raise ValueError(
                "`num_groups` must be a positive integer. "
                f"Received: num_groups={num_groups!r}"
            )
        if seed is not None and (not _validation.is_int(seed) or seed < 0):
            raise ValueError(
                "`seed` must be None or a non-negative integer. "
                f"Received: seed={seed!r}"
            )
        _validation.boolean(groupnl_strided, "groupnl_strided")

    def replaces(self, strides):
        """Whether a replaceable conv with these strides becomes GroupNL."""
        return self.conv_type != "plain" and (
            strides == 1 or self.groupnl_strided
        )

    def check_plan(self, convs):
        """Checks every conv the model will replace before building it.

        Args:
            convs: iterable of `(in_channels, filters, strides, name)` for
                every replaceable conv of the model.
        """
        for in_channels, filters, strides, name in convs:
            if not self.replaces(strides):
                continue
            seeds = math.ceil(filters / self.reduction_ratio)
            if self.num_groups > seeds:
                raise ValueError(
                    "`num_groups` cannot exceed the number of seed maps "
                    "ceil(filters / reduction_ratio) of any GroupNL conv; "
                    f"conv '{name}' has filters={filters}, so at most "
                    f"{seeds} groups with reduction_ratio="
                    f"{self.reduction_ratio}. Received: "
                    f"num_groups={self.num_groups}"
                )
            if self.conv_type == "sparse" and math.gcd(in_channels, seeds) == 1:
                raise ValueError(
                    "`conv_type='sparse'` groups each seed conv by "
                    "gcd(in_channels, seed_maps), which must exceed 1; conv "
                    f"'{name}' has in_channels={in_channels} and "
                    f"{seeds} seed maps. Choose another reduction_ratio or "
                    "conv_type='dense'. Received: "
                    f"reduction_ratio={self.reduction_ratio}"
                )

    def _next_seed(self):
        seed = None if self.seed is None else self.seed + self._count
        self._count += 1
        return seed

    def _groupnl_kwargs(self):
        return dict(
            reduction_ratio=self.reduction_ratio,
            num_groups=self.num_groups,
            kernel_initializer=self.kernel_initializer,
            seed=self._next_seed(),
            **self.nlf_settings,
        )

    def conv(self, filters, kernel_size, strides, name, use_bias=False):
        """A full conv of a residual block, GroupNL or standard."""
        if not self.replaces(strides):
            return keras.layers.Conv2D(
                filters,
                kernel_size,
                strides=strides,
                padding="same",
                use_bias=use_bias,
                kernel_initializer=self.kernel_initializer,
                name=name,
            )
        layer_class = (
            GroupNLConv2D if self.conv_type == "dense" else SparseGroupNLConv2D
        )
        return layer_class(
            filters,
            kernel_size,
            strides=strides,
            padding="same",
            name=name,
            **self._groupnl_kwargs(),
        )

    def depthwise(self, channels, kernel_size, strides, name):
        """A depthwise conv, or the sparse GroupNL conv replacing it."""
        if not self.replaces(strides):
            return keras.layers.DepthwiseConv2D(
                kernel_size,
                strides=strides,
                padding="same",
                use_bias=False,
                depthwise_initializer=self.kernel_initializer,
                name=name,
            )
        return SparseGroupNLConv2D(
            channels,
            kernel_size,
            strides=strides,
            padding="same",
            name=name,
            **self._groupnl_kwargs(),
        )
