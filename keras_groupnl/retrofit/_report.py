"""What `to_groupnl` replaced: per layer and in total, as a table."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class ReplacedLayer:
    """One conv replaced by a GroupNL layer.

    Attributes:
        path: layer name, `"nested_model/layer"` inside nested models.
        source_class: `"Conv2D"` or `"DepthwiseConv2D"`.
        groupnl_class: `"GroupNLConv2D"` or `"SparseGroupNLConv2D"`.
        filters: output channels (of both).
        seed_channels: seed maps of the GroupNL layer.
        conv_groups: groups of its seed conv (1: dense).
        params_before, params_after: weights of the layer (for GroupNL,
            the frozen NLF tables included).
        macs_before, macs_after: multiply-accumulates per example
            (`keras_groupnl.analysis.count_macs`), `None` when they cannot
            be counted (see `GroupNLReport.macs_note`).
        seed_filters: the source filters the seeds started from
            (`init="from_conv"` and a `Conv2D` source), else `None`.
    """

    path: str
    source_class: str
    groupnl_class: str
    filters: int
    seed_channels: int
    conv_groups: int
    params_before: int
    params_after: int
    macs_before: object
    macs_after: object
    seed_filters: object


@dataclasses.dataclass(frozen=True)
class KeptConv:
    """A `Conv2D` / `DepthwiseConv2D` left standard, and why."""

    path: str
    layer_class: str
    reason: str


@dataclasses.dataclass(frozen=True)
class GroupNLReport:
    """What `to_groupnl` did to a model.

    Attributes:
        model_name: name of the model.
        settings: the GroupNL settings used (`reduction_ratio`,
            `num_groups`, `conv_type`, `init`, `seed`).
        replaced: a `ReplacedLayer` per replaced conv, in model order.
        kept: a `KeptConv` per conv left standard, in model order.
        params_before, params_after: parameters of the whole model.
        macs_before, macs_after: MACs per example of the whole model, or
            `None` (see `macs_note`).
        macs_note: why MACs are missing (e.g. inputs of unknown size), or
            `None`.
    """

    model_name: str
    settings: dict
    replaced: tuple
    kept: tuple
    params_before: int
    params_after: int
    macs_before: object
    macs_after: object
    macs_note: object

    def to_dict(self):
        """The report as plain JSON-ready Python values."""
        return dataclasses.asdict(self)

    def summary(self):
        """The report as a plain-text table."""
        return format_report(self)


_HEADER = (
    "layer",
    "replaced by",
    "params before",
    "params after",
    "MACs before",
    "MACs after",
)


def _number(value):
    return "-" if value is None else f"{value:,}"


def _ratio(after, before):
    if after is None or before is None or before == 0:
        return "-"
    return f"{after / before:.2f}x"


def _total(rows, field):
    values = [getattr(row, field) for row in rows]
    return None if any(v is None for v in values) else sum(values)


def format_report(report):
    """The table `to_groupnl(..., verbose=True)` prints."""
    settings = ", ".join(f"{k}={v!r}" for k, v in report.settings.items())
    total = len(report.replaced) + len(report.kept)
    lines = [
        f"to_groupnl: model '{report.model_name}', "
        f"{len(report.replaced)} of {total} convs replaced ({settings})",
    ]
    rows = [_HEADER]
    for row in report.replaced:
        rows.append(
            (
                row.path,
                f"{row.source_class} -> {row.groupnl_class}",
                _number(row.params_before),
                _number(row.params_after),
                _number(row.macs_before),
                _number(row.macs_after),
            )
        )
    fields = ("params_before", "params_after", "macs_before", "macs_after")
    sums = [_total(report.replaced, f) for f in fields]
    rows.append(("replaced layers", "", *(_number(s) for s in sums)))
    rows.append(
        (
            "whole model",
            "",
            _number(report.params_before),
            _number(report.params_after),
            _number(report.macs_before),
            _number(report.macs_after),
        )
    )
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER))]
    for index, row in enumerate(rows):
        if index in (1, len(rows) - 2):
            lines.append("-" * (sum(widths) + 2 * (len(widths) - 1)))
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells += [cell.rjust(w) for cell, w in zip(row[2:], widths[2:])]
        lines.append("  ".join(cells).rstrip())
    lines.append(
        "whole model after / before: parameters "
        f"{_ratio(report.params_after, report.params_before)}, MACs "
        f"{_ratio(report.macs_after, report.macs_before)}"
    )
    if report.macs_note:
        lines.append(f"MACs not counted: {report.macs_note}")
    lines += _kept_lines(report.kept)
    return "\n".join(lines)


def _kept_lines(kept):
    """One line per reason: how many convs stayed standard, and which."""
    if not kept:
        return []
    by_reason = {}
    for conv in kept:
        by_reason.setdefault(conv.reason, []).append(conv.path)
    plural = "" if len(kept) == 1 else "s"
    lines = [f"Kept standard ({len(kept)} conv{plural}):"]
    for reason, paths in by_reason.items():
        shown = ", ".join(paths[:4])
        more = f" and {len(paths) - 4} more" if len(paths) > 4 else ""
        lines.append(f"  {reason} ({len(paths)}): {shown}{more}")
    return lines
