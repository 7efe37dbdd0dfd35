"""`to_groupnl`: the GroupNL version of an existing Keras model."""

import keras

from keras_groupnl import _keras_hub
from keras_groupnl.analysis import count_macs
from keras_groupnl.retrofit import _arguments
from keras_groupnl.retrofit import _groupnl_layer
from keras_groupnl.retrofit import _rebuild
from keras_groupnl.retrofit import _report
from keras_groupnl.retrofit import _selection
from keras_groupnl.retrofit import _sites
from keras_groupnl.retrofit import _warm_start


def to_groupnl(
    model,
    *,
    reduction_ratio=2,
    num_groups=4,
    conv_type="dense",
    depthwise=True,
    strided=True,
    stem=False,
    min_filters=None,
    include=None,
    exclude=None,
    init="from_conv",
    seed=None,
    name=None,
    verbose=False,
    return_report=False,
):
    """Returns a copy of `model` whose convolutions are GroupNL layers.

    The convolutions the GroupNL method replaces become GroupNL layers
    ("GroupNL: Low-Resource and Robust CNN Design over Cloud and Device",
    Xie et al., IEEE TMC 2026); every other layer is kept, with its weights
    and its name:

    - `Conv2D` with a kernel larger than 1x1 and `groups=1` ->
      `GroupNLConv2D` (`conv_type="dense"`) or `SparseGroupNLConv2D`
      (`conv_type="sparse"`), same filters, kernel size, strides, padding,
      dilation, initializers, regularizers and constraints.
    - `DepthwiseConv2D` with `depth_multiplier=1` -> `SparseGroupNLConv2D`
      with `filters = channels`, whose seed conv has `gcd(channels, seeds)`
      groups: as many MACs and parameters as the depthwise conv, as in the
      method's MobileNet / EfficientNet models. On by default; pass
      `depthwise=False` to keep depthwise convs.

    A conv's bias goes on the seed conv (`use_bias=True`), and its
    activation, if any, becomes an `Activation` layer named
    `"{conv name}_activation"` right after the GroupNL layer.

    As in the method, stems, pointwise convs and heads stay standard: 1x1
    convs and `Dense` layers are never replaced, nor (unless `stem=True`)
    the stem convs, those that read the model input before any other conv
    or dense layer. `strided`, `min_filters`, `include` and `exclude`
    narrow the choice further. A conv whose GroupNL layer cannot exist
    (fewer seed maps than `num_groups`; a sparse seed conv with
    `gcd(in_channels, seeds) = 1`) stays standard too. The report says
    which convs stayed standard and why.

    Warm start (`init="from_conv"`): the seed conv of a GroupNL layer
    starts from the conv it replaces. It keeps the conv's first
    `ceil(filters / r)` filters (and their biases): a GroupNL layer puts
    its seed maps at output channels `0 .. seeds - 1`, and the layers after
    it, whose weights are kept, read channel `c` as the feature of filter
    `c`; the first filters keep those channels meaning what the next layers
    expect (normalised across the seed channels). A sparse seed conv keeps
    of each filter the taps on the input channels of its group. A depthwise
    conv's channels are shared out among the seeds of their group, each
    with its own depthwise filter: seed `j` starts as the sum of the
    depthwise outputs of its channels (`r` of them with `reduction_ratio`
    `r`). `init="fresh"` draws the seed kernel from the conv's initializer.

    The result is a starting point for fine-tuning, not the same function:
    the generated channels are new, and the channels after each GroupNL
    layer are normalised, so a model is usually near chance level before
    fine-tuning (re-estimating BatchNorm statistics does not change that).
    Fine-tuned, the warm start beats both the filters of largest norm and
    a fresh initialisation (measured in `docs/to_groupnl.md`).

    Nothing is shared with `model`: every layer of the copy is new (kept
    layers made from their config, weights copied), so training the copy
    leaves `model` as it was. Nested Functional and Sequential models are
    rebuilt the same way; another Functional subclass comes back as a
    plain Functional model, as with `keras.models.clone_model`. A compiled
    model's compile config is carried over. Save the result with
    `model.save("x.keras")`; load it after `import keras_groupnl.layers`.

    keras-hub models keep their kind (needs the `hub` extra, see
    `keras_groupnl.hub`): a keras-hub `Backbone` becomes a
    `keras_groupnl.hub.RetrofitBackbone`, a `keras_hub.models.Backbone`
    whose config is the source backbone's config plus these settings, so
    it saves and loads as a keras-hub preset; an `ImageClassifier` becomes
    a `keras_groupnl.hub.RetrofitImageClassifier` around it, with the
    source's preprocessor, head weights and compile config. Other keras-hub
    tasks raise a `ValueError`.

    Args:
        model: a built Functional or Sequential `keras.Model`, a keras-hub
            `Backbone` or a keras-hub `ImageClassifier`.
        reduction_ratio: number >= 1, `r`: each GroupNL layer makes
            `ceil(filters / r)` seed maps. Defaults to `2`.
        num_groups: int, NLF groups per GroupNL layer. Defaults to `4`.
        conv_type: `"dense"` or `"sparse"`: the GroupNL layer replacing a
            `Conv2D` (depthwise convs always become sparse). Defaults to
            `"dense"`.
        depthwise: bool, whether depthwise convs become sparse GroupNL
            layers. Defaults to `True`.
        strided: bool, whether convs with a stride above 1 are replaced.
            Defaults to `True`.
        stem: bool, whether stem convs are replaced. Defaults to `False`.
        min_filters: `None` or int: convs with fewer filters (a depthwise
            conv: channels) stay standard. Defaults to `None` (no minimum).
        include: `None`, layer names, or a callable `f(layer) -> bool`
            called with each candidate `Conv2D` / `DepthwiseConv2D`: only
            the convs it selects may be replaced. A name may be a conv's,
            a nested model's (all convs in it) or a path
            `"nested_model/conv"`. A conv named in `include` must be
            replaced: a `ValueError` says why if a rule keeps it.
            Defaults to `None` (all).
        exclude: `None`, layer names, or a callable `f(layer) -> bool`:
            convs it selects stay standard. Naming a layer that holds convs
            `to_groupnl` cannot reach (a subclassed model, a custom layer)
            keeps that layer as it is. Defaults to `None`.
        init: `"from_conv"` (warm start, see above) or `"fresh"`.
            Defaults to `"from_conv"`.
        seed: `None` or int. GroupNL layer `k` (model order) draws its fixed
            sinusoids from `seed + k`; with `None` the draw follows
            `keras.utils.set_random_seed`. The sinusoids are stored as
            weights, so saving and loading restores them. Defaults to
            `None`.
        name: `None` or str, the name of the new model. Defaults to `None`
            (the name of `model`).
        verbose: bool, print the report (`GroupNLReport.summary()`): every
            replaced layer with its parameters and MACs before and after,
            totals, and the convs kept standard. Defaults to `False`.
        return_report: bool, return `(model, report)` instead of the model.
            Defaults to `False`.

    Returns:
        The new `keras.Model`, or `(model, GroupNLReport)` with
        `return_report=True`.

    Raises:
        ValueError: a bad argument; a model that is not a built Functional
            or Sequential model; a layer holding eligible convs that
            `to_groupnl` cannot reach (unless excluded); a layer that cannot
            be copied from its config; a conv named in `include` that
            cannot be replaced. The message names the layer and the reason.

    Example:

    >>> base = keras.applications.ResNet50(weights=None,
    ...                                    input_shape=(64, 64, 3))
    >>> model = keras_groupnl.to_groupnl(base, reduction_ratio=2, seed=0)
    >>> model, report = keras_groupnl.to_groupnl(
    ...     base, strided=False, return_report=True)
    >>> print(report.summary())
    """
    settings = _arguments.settings(
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
    )
    if _keras_hub.is_backbone(model) or _keras_hub.is_task(model):
        # keras-hub models keep their classes (a Backbone, an
        # ImageClassifier); keras_groupnl.hub needs keras-hub, which is
        # imported already if `model` is one of its models.
        from keras_groupnl.hub import _to_groupnl as hub

        copy, report = hub.to_groupnl(model, settings)
    else:
        copy, report = convert(model, settings)
    if settings.verbose:
        print(report.summary())
    return (copy, report) if settings.return_report else copy


def convert(model, settings):
    """`(copy, report)`: the GroupNL copy of a Functional or Sequential model.

    The work of `to_groupnl` for checked `settings`, whatever the class of
    `model`: a Functional subclass comes back as a plain Functional model.
    """
    _check_model(model)
    replacements, kept = _selection.plan(model, settings)
    copy, new_layers = _build(model, replacements, settings)
    chosen = {}
    if settings.init == "from_conv":
        for replacement in replacements:
            conv = replacement.site.layer
            kernel, bias, filters = _warm_start.seed_weights(replacement, conv)
            new_layers[id(conv)].kernel.assign(kernel)
            if bias is not None:
                new_layers[id(conv)].bias.assign(bias)
            chosen[id(conv)] = filters
    report = _make_report(
        model, copy, replacements, kept, new_layers, chosen, settings
    )
    return copy, report


def _check_model(model):
    if not isinstance(model, keras.Model):
        raise ValueError(
            "`model` must be a Keras model (Functional or Sequential). "
            f"Received: model={model!r} of type {type(model).__name__}"
        )
    if not _sites.is_graph_model(model):
        raise ValueError(
            f"Model '{model.name}' is a subclassed model (class "
            f"{type(model).__name__}): to_groupnl rebuilds Functional and "
            "Sequential models, whose layers and connections Keras knows; "
            "the graph of a subclassed model is its Python `call`. Build it "
            "with the Functional API (keras.Model(inputs, outputs)) or as a "
            "keras.Sequential, then call to_groupnl."
        )
    if not model.built:
        raise ValueError(
            f"Model '{model.name}' is not built, so its weights do not exist "
            "yet. Give it an input (keras.Input(shape) as first layer) or "
            "call it on data before to_groupnl."
        )


def _build(model, replacements, settings):
    """`(copy, {id(conv): its GroupNL layer})`."""
    by_id = {id(r.site.layer): r for r in replacements}
    taken = {}
    new_layers = {}

    def replace(layer):
        replacement = by_id.get(id(layer))
        if replacement is None:
            return None
        parent = replacement.site.parent
        names = taken.setdefault(
            id(parent), {other.name for other in parent.layers}
        )
        made = _groupnl_layer.make_layers(replacement, settings, names)
        new_layers[id(layer)] = made[0]
        return made

    copy = _rebuild.Rebuild(replace).model(model, settings.name)
    return copy, new_layers


def _macs(model):
    """`(total, {layer path: MACs}, note)`; `None`s and why if uncountable."""
    try:
        return count_macs(model), count_macs(model, by_layer=True), None
    except ValueError as error:
        return None, {}, str(error)


def _make_report(model, copy, replacements, kept, new_layers, chosen, settings):
    total_before, before, note = _macs(model)
    total_after, after, _ = _macs(copy)
    rows = []
    for replacement in replacements:
        conv = replacement.site.layer
        new = new_layers[id(conv)]
        filters = chosen.get(id(conv))
        rows.append(
            _report.ReplacedLayer(
                path=replacement.site.path,
                source_class=type(conv).__name__,
                groupnl_class=type(new).__name__,
                filters=replacement.filters,
                seed_channels=replacement.seed_channels,
                conv_groups=replacement.conv_groups,
                params_before=int(conv.count_params()),
                params_after=int(new.count_params()),
                macs_before=before.get(conv.path),
                macs_after=after.get(new.path),
                seed_filters=None
                if filters is None
                else tuple(int(i) for i in filters),
            )
        )
    return _report.GroupNLReport(
        model_name=model.name,
        settings={
            "reduction_ratio": settings.reduction_ratio,
            "num_groups": settings.num_groups,
            "conv_type": settings.conv_type,
            "init": settings.init,
            "seed": settings.seed,
        },
        replaced=tuple(rows),
        kept=tuple(
            _report.KeptConv(k.site.path, type(k.site.layer).__name__, k.reason)
            for k in kept
        ),
        params_before=int(model.count_params()),
        params_after=int(copy.count_params()),
        macs_before=total_before,
        macs_after=total_after,
        macs_note=note,
    )
