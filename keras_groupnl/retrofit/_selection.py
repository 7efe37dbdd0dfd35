"""Which convolutions `to_groupnl` replaces, and why it keeps the others.

Every `ConvSite` of the model is decided in this order; the first rule that
applies keeps the conv standard and gives the reason:

1. Its type: a 1x1 kernel (pointwise), `groups > 1`, a depthwise conv with
   `depth_multiplier != 1` or with `depthwise=False`.
2. `exclude`, then `include`.
3. The method's rules: stem convs (unless `stem=True`), strided convs
   (with `strided=False`), fewer than `min_filters` filters.
4. Whether the GroupNL layer can exist: `num_groups` seed groups need as
   many seed maps; a sparse seed conv needs `gcd(in_channels, seeds) > 1`.

A conv named in `include` must be replaced: if a rule keeps it, that is a
`ValueError` saying which rule and how to lift it. A layer that holds
eligible convs where `to_groupnl` cannot reach them (`OpaqueLayer`) is a
`ValueError` too, unless it is excluded by name.
"""

import dataclasses
import difflib
import math

import keras
import numpy as np

from keras_groupnl.layers import GroupNLConv2D
from keras_groupnl.layers import SparseGroupNLConv2D
from keras_groupnl.retrofit import _sites


@dataclasses.dataclass(frozen=True, eq=False)
class Replacement:
    """A conv that becomes a GroupNL layer.

    Attributes:
        site: the `ConvSite`.
        layer_class: `GroupNLConv2D` or `SparseGroupNLConv2D`.
        in_channels, filters: of the conv (a depthwise conv: both are its
            channels).
        seed_channels: `ceil(filters / reduction_ratio)`.
        conv_groups: groups of the seed conv (1: dense).
        seed: the NLF seed of the GroupNL layer.
    """

    site: _sites.ConvSite
    layer_class: type
    in_channels: int
    filters: int
    seed_channels: int
    conv_groups: int
    seed: object


@dataclasses.dataclass(frozen=True, eq=False)
class Kept:
    """A conv that stays standard, and why (a few words)."""

    site: _sites.ConvSite
    reason: str


def plan(model, settings):
    """Decides every conv of `model`: `(replacements, kept)`, model order."""
    sites, opaque = _sites.walk(model)
    _check_names(model, settings)
    _check_opaque(opaque, settings)
    replacements, kept = [], []
    for site in sites:
        reason = _reason_to_keep(site, settings)
        if reason is None:
            replacements.append(_replacement(site, settings, len(replacements)))
        else:
            kept.append(Kept(site, reason))
    return replacements, kept


def _reason_to_keep(site, settings):
    """`None` to replace the conv, else the reason it stays standard."""
    layer = site.layer
    explicit = isinstance(settings.include, frozenset) and bool(
        {layer.name, site.path} & settings.include
    )
    reason = _type_reason(layer, settings)
    if reason is None:
        if _selected(settings.exclude, site, "exclude"):
            return "excluded"
        if settings.include is not None and not _selected(
            settings.include, site, "include"
        ):
            return "not included"
        _check_weights(site)
        reason = _rule_reason(site, settings) or _build_reason(site, settings)
    if reason is not None and explicit:
        raise ValueError(
            f"Conv '{site.path}' is named in `include` but cannot be "
            f"replaced: {reason[1]}. "
            f"Received: include={sorted(settings.include)}"
        )
    return None if reason is None else reason[0]


def _type_reason(layer, settings):
    if tuple(layer.kernel_size) == (1, 1):
        return (
            "pointwise (1x1)",
            "it has a 1x1 kernel; GroupNL replaces convs with larger kernels "
            "(pointwise convs stay standard)",
        )
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        if layer.depth_multiplier != 1:
            return (
                f"depth_multiplier={layer.depth_multiplier}",
                f"it has depth_multiplier={layer.depth_multiplier}; only "
                "depthwise convs with depth_multiplier=1 have a GroupNL "
                "counterpart",
            )
        if not settings.depthwise:
            return (
                "depthwise (depthwise=False)",
                "it is a depthwise conv; pass depthwise=True",
            )
        return None
    if layer.groups != 1:
        return (
            f"grouped (groups={layer.groups})",
            f"it is a grouped conv (groups={layer.groups}); only groups=1 "
            "convs have a GroupNL counterpart",
        )
    return None


def _check_weights(site):
    """Refuses a conv with weights beyond its kernel and bias."""
    layer = site.layer
    expected = 2 if layer.use_bias else 1
    if len(layer.weights) != expected:
        names = [w.path.split("/")[-1] for w in layer.weights]
        raise ValueError(
            f"Conv '{site.path}' has weights {names}, beyond a kernel and "
            "a bias (LoRA or quantization?); to_groupnl cannot carry them "
            f"into a GroupNL layer. Pass exclude=['{layer.name}'] to keep it "
            "as it is."
        )


def _rule_reason(site, settings):
    layer = site.layer
    if site.stem and not settings.stem:
        return (
            "stem",
            "it is a stem conv (it reads the model input before any other "
            "conv); pass stem=True to replace stem convs",
        )
    strides = tuple(layer.strides)
    if max(strides) > 1 and not settings.strided:
        return (
            f"strided {strides}",
            f"it has strides={strides}; pass strided=True",
        )
    filters = _filters(layer)
    if filters < settings.min_filters:
        return (
            f"{filters} filters < min_filters",
            f"it has {filters} filters, fewer than "
            f"min_filters={settings.min_filters}",
        )
    return None


def _build_reason(site, settings):
    layer = site.layer
    filters = _filters(layer)
    seeds = settings.seed_channels(filters)
    ratio = settings.reduction_ratio
    if settings.num_groups > seeds:
        return (
            f"{seeds} seed maps < num_groups",
            f"num_groups={settings.num_groups} exceeds its "
            f"ceil({filters} / {ratio}) = {seeds} seed maps; lower num_groups "
            "or reduction_ratio",
        )
    if _is_sparse(layer, settings):
        in_channels = _in_channels(layer)
        if math.gcd(in_channels, seeds) == 1:
            dense = (
                ""
                if isinstance(layer, keras.layers.DepthwiseConv2D)
                else " or conv_type='dense'"
            )
            return (
                "no sparse grouping",
                "a sparse seed conv has gcd(in_channels, seed maps) groups "
                f"and gcd({in_channels}, {seeds}) = 1; choose another "
                f"reduction_ratio{dense}",
            )
    return None


def _is_sparse(layer, settings):
    return (
        isinstance(layer, keras.layers.DepthwiseConv2D)
        or settings.conv_type == "sparse"
    )


def _filters(layer):
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return _in_channels(layer)
    return int(layer.filters)


def _in_channels(layer):
    channels = int(layer.kernel.shape[2])
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return channels
    return channels * int(layer.groups)


def _replacement(site, settings, index):
    layer = site.layer
    filters = _filters(layer)
    in_channels = _in_channels(layer)
    seeds = settings.seed_channels(filters)
    sparse = _is_sparse(layer, settings)
    return Replacement(
        site=site,
        layer_class=SparseGroupNLConv2D if sparse else GroupNLConv2D,
        in_channels=in_channels,
        filters=filters,
        seed_channels=seeds,
        conv_groups=math.gcd(in_channels, seeds) if sparse else 1,
        seed=None if settings.seed is None else settings.seed + index,
    )


def _names_of(site_or_layer):
    """The names `include` / `exclude` match: own name, path, scopes."""
    scopes = site_or_layer.scopes
    names = {site_or_layer.layer.name, site_or_layer.path}
    names.update("/".join(scopes[: i + 1]) for i in range(len(scopes)))
    names.update(scopes)
    return names


def _selected(selection, site, argument):
    """Whether `include` / `exclude` selects the conv of `site`."""
    if selection is None:
        return False
    if isinstance(selection, frozenset):
        return bool(_names_of(site) & selection)
    result = selection(site.layer)
    if not isinstance(result, (bool, np.bool_)):
        raise ValueError(
            f"`{argument}` must return True or False; it returned "
            f"{result!r} for layer '{site.path}'. "
            f"Received: {argument}={selection!r}"
        )
    return bool(result)


def _check_opaque(opaque, settings):
    """Refuses layers holding eligible convs, unless excluded by name."""
    for item in opaque:
        if isinstance(settings.exclude, frozenset) and (
            _names_of(item) & settings.exclude
        ):
            continue
        eligible = [
            conv for conv in item.convs if _type_reason(conv, settings) is None
        ]
        if not eligible:
            continue
        names = ", ".join(f"'{conv.name}'" for conv in eligible[:3])
        more = f" and {len(eligible) - 3} more" if len(eligible) > 3 else ""
        raise ValueError(
            f"Layer '{item.path}' ({type(item.layer).__name__}) is "
            f"{item.kind}, and to_groupnl cannot replace the convs it holds "
            f"({names}{more}): it rebuilds only Functional and Sequential "
            "models, layer by layer. Build that part with the Functional "
            f"API, or pass exclude=['{item.layer.name}'] to keep the layer "
            "as it is."
        )


def _check_names(model, settings):
    """Every name in `include` / `exclude` must name a layer of the model."""
    known = _all_names(model, ())
    for argument in ("include", "exclude"):
        selection = getattr(settings, argument)
        if not isinstance(selection, frozenset):
            continue
        for name in sorted(selection - known):
            close = difflib.get_close_matches(name, sorted(known), n=3)
            hint = f" Did you mean {close}?" if close else ""
            raise ValueError(
                f"`{argument}` names '{name}', which is no layer of model "
                f"'{model.name}' (names of nested layers can be given as "
                f"'nested_model/layer').{hint} Received: "
                f"{argument}={sorted(selection)}"
            )


def _all_names(model, scopes):
    names = set()
    for layer in model.layers:
        names.add(layer.name)
        names.add("/".join(scopes + (layer.name,)))
        if _sites.is_graph_model(layer):
            names |= _all_names(layer, scopes + (layer.name,))
    return names
