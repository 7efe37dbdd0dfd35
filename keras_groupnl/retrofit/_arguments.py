"""The arguments of `to_groupnl`, checked before anything is built."""

import dataclasses
import math

from keras_groupnl import _validation

CONV_TYPES = ("dense", "sparse")
INITS = ("from_conv", "fresh")


@dataclasses.dataclass(frozen=True)
class Settings:
    """The checked arguments of `to_groupnl` (see its docstring)."""

    reduction_ratio: float
    num_groups: int
    conv_type: str
    depthwise: bool
    strided: bool
    stem: bool
    min_filters: int
    include: object  # None, a frozenset of names or a callable.
    exclude: object
    init: str
    seed: object
    name: object  # None: the source model's name.
    verbose: bool
    return_report: bool

    def seed_channels(self, filters):
        return math.ceil(filters / self.reduction_ratio)


def settings(
    reduction_ratio,
    num_groups,
    conv_type,
    depthwise,
    strided,
    stem,
    min_filters,
    include,
    exclude,
    init,
    seed,
    name,
    verbose,
    return_report,
):
    """Checks every argument; returns `Settings`."""
    if (
        not _validation.is_number(reduction_ratio)
        or not math.isfinite(reduction_ratio)
        or reduction_ratio < 1
    ):
        raise ValueError(
            "`reduction_ratio` must be a number >= 1 (each GroupNL conv "
            "makes ceil(filters / reduction_ratio) seed maps). "
            f"Received: reduction_ratio={reduction_ratio!r}"
        )
    include = _layer_selection(include, "include")
    exclude = _layer_selection(exclude, "exclude")
    if isinstance(include, frozenset) and isinstance(exclude, frozenset):
        both = sorted(include & exclude)
        if both:
            raise ValueError(
                "A layer cannot be both included and excluded. "
                f"Received: include and exclude both name {both}"
            )
    if name is not None and (not isinstance(name, str) or not name):
        raise ValueError(
            "`name` must be None (the source model's name) or a non-empty "
            f"string. Received: name={name!r}"
        )
    return Settings(
        reduction_ratio=reduction_ratio,
        num_groups=_validation.positive_int(num_groups, "num_groups"),
        conv_type=_validation.one_of(conv_type, "conv_type", CONV_TYPES),
        depthwise=_validation.boolean(depthwise, "depthwise"),
        strided=_validation.boolean(strided, "strided"),
        stem=_validation.boolean(stem, "stem"),
        min_filters=_validation.positive_int(
            min_filters, "min_filters", allow_none=True
        )
        or 1,
        include=include,
        exclude=exclude,
        init=_validation.one_of(init, "init", INITS),
        seed=_validation.non_negative_int(seed, "seed", allow_none=True),
        name=name,
        verbose=_validation.boolean(verbose, "verbose"),
        return_report=_validation.boolean(return_report, "return_report"),
    )


def _layer_selection(value, name):
    """None, a callable, or layer names (one string or an iterable)."""
    if value is None or callable(value):
        return value
    names = (value,) if isinstance(value, str) else value
    try:
        names = tuple(names)
    except TypeError:
        names = None
    if names is None or not all(isinstance(n, str) and n for n in names):
        raise ValueError(
            f"`{name}` must be None, a layer name, a list of layer names or "
            "a callable `f(layer) -> bool`. "
            f"Received: {name}={value!r}"
        )
    return frozenset(names)
