"""Markdown tables and ratios for the benchmark scripts.

Every benchmark prints Markdown tables whose figures are also given as
ratios to a baseline measured in the same run; this is the one place that
computes those ratios and lays out the tables.
"""


def ratio(value):
    """A ratio as text: `0.52x`, or `n/a`."""
    return "n/a" if value is None else f"{value:.2f}x"


def add_ratios(rows, fields, baseline_of):
    """Adds `<field>_ratio` to every row, against `baseline_of(row)`.

    `baseline_of(row)` returns the baseline row (possibly `row` itself) or
    `None`; a missing or zero baseline value gives a `None` ratio.
    """
    for row in rows:
        base = baseline_of(row)
        for field in fields:
            value = row.get(field)
            reference = None if base is None else base.get(field)
            row[f"{field}_ratio"] = (
                value / reference if value is not None and reference else None
            )
    return rows


def markdown(headers, rows, align=None):
    """A Markdown table; `align` is one `l`/`r` per column (default `l`,
    then `r` for every column after the first two)."""
    if align is None:
        align = "ll" + "r" * (len(headers) - 2)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join(rule) + "|",
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine():
    """The machine of this run (`keras_groupnl.analysis.Machine`), with
    TensorFlow's oneDNN state: every speed table names it."""
    from keras_groupnl.analysis import describe_machine

    return describe_machine(tensorflow=True)


def machine_caption(measured_on):
    """The line printed above a speed table."""
    return f"Measured on: {measured_on.label()}"
