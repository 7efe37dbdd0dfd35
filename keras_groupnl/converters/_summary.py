"""The conversion report as a plain-text table (`ConversionReport.summary`)."""


def _quantization(io):
    if io.get("scale") is None:
        return ""
    return f", scale {io['scale']:.6g}, zero point {io['zero_point']}"


def _verification_line(v):
    line = (
        f"top-1 agreement {v.top1_agreement:.4f}"
        if v.top1_agreement is not None
        else "top-1 agreement n/a"
    )
    line += f", max |error| {v.max_abs_error:.4g}"
    line += f" (mean {v.mean_abs_error:.3g})"
    if v.accuracy is not None:
        line += f", accuracy {v.accuracy:.4f}"
    return line


def _rows(report):
    """What the converted model is."""
    sizes = report.sizes
    yield (
        "target",
        report.target + (" (integer only)" if report.integer_only else ""),
    )
    yield "model", f"{report.model} ({report.params:,} params)"
    yield "tflite", report.files.get("tflite", "")
    yield (
        "size",
        (
            f"{sizes['file']:,} bytes: tables {sizes['tables']:,}, weights "
            f"{sizes['weights']:,}, other {sizes['other']:,}"
        ),
    )
    for role in ("input", "output"):
        io = getattr(report, role)
        yield role, f"{io['dtype']} {io['shape']}{_quantization(io)}"
    yield "ops", ", ".join(f"{k} x{v}" for k, v in report.op_histogram.items())
    floats = str(report.float_ops)
    if report.float_ops and not report.float_ops_outside_io:
        floats += " (float input/output conversion only)"
    yield "float ops", floats
    for layer, ops in report.float_ops_by_layer.items():
        yield f"  float in {layer}", ", ".join(ops)
    for g in report.groupnl:
        text = f"{g.variant}, {g.seed_channels} seed + {g.generated_channels}"
        text += " generated channels"
        if g.tables:
            text += f", {g.tables} tables ({g.table_bytes:,} bytes)"
        if g.folded_layers:
            text += f", folded {', '.join(g.folded_layers)}"
        yield f"  GroupNL {g.layer}", text
    yield from _run_rows(report)


def _run_rows(report):
    """What running the converted model showed."""
    yield (
        "samples",
        (
            f"{report.num_samples} verified, "
            f"{report.calibration_samples} calibrated"
        ),
    )
    for runtime, v in report.verification.items():
        yield f"vs keras: {runtime}", _verification_line(v)
    if report.keras_accuracy is not None:
        yield "keras accuracy", f"{report.keras_accuracy:.4f}"
    for runtime, lat in report.latency.items():
        text = f"{lat.median_ms:.3f} ms median, {lat.p90_ms:.3f} ms p90"
        text += f" ({lat.runs} runs)" + (f"; {lat.note}" if lat.note else "")
        yield f"latency {runtime}", text
    if report.machine:
        # Imported here: `keras_groupnl.analysis` imports Keras, which the
        # CLI's usage errors must not wait for.
        from keras_groupnl.analysis.machine import Machine

        yield "measured on", Machine(**report.machine).label()
    if report.delegation is not None:
        d = report.delegation
        text = f"{d.partitions} partition(s), {d.delegated_ops} ops delegated"
        if d.undelegated_ops:
            text += ", not delegated: " + ", ".join(d.undelegated_ops)
        yield "XNNPACK", text
    if report.arena is not None:
        a = report.arena
        yield (
            "tensor arena",
            (
                f"{a.arena_bytes:,} bytes (activations {a.activation_bytes:,}, "
                f"bookkeeping {a.bookkeeping_bytes:,}; measured in TFLM)"
            ),
        )
    for name, estimate in (report.cortex_m or {}).items():
        yield (
            f"est. {name}",
            f"{estimate['instructions']:,} instructions / inference"
            + (
                f" (not modelled: {', '.join(estimate['unmodelled'])})"
                if estimate["unmodelled"]
                else ""
            ),
        )
    if report.android is not None:
        yield from _android_rows(report.android)
    if report.resolver_ops:
        ops = report.resolver_ops
        yield (
            "op resolver",
            (f"MicroMutableOpResolver<{len(ops)}>: " + ", ".join(ops)),
        )


def _android_rows(android):
    """The metadata, the input stage and the Android clients."""
    if android.color_space is None:
        image = "not an image input (no normalization matched)"
    else:
        image = (
            f"{android.color_space}, (pixel - {_values(android.mean)}) / "
            f"{_values(android.std)} ({android.normalization_source})"
        )
    yield "android input", image
    for step in android.input_stage:
        yield "  input stage", step
    yield (
        "metadata",
        f"{android.metadata_bytes:,} bytes, labels: {android.class_names}",
    )
    for c in android.clients:
        if c.accepted is None:
            text = c.message
        elif c.accepted:
            text = f"accepted; top-1 = Interpreter's on {c.top1_agreement:.0%}"
            text += f" of {c.images} images; {c.message}"
        else:
            text = f"refused: {c.message}"
        yield f"  {c.client}", text


def _values(values):
    values = [f"{v:g}" for v in values]
    return values[0] if len(values) == 1 else "(" + ", ".join(values) + ")"


def _table(rows):
    rows = list(rows)
    width = max(len(k) for k, _ in rows)
    line = "+" + "-" * (width + 2) + "+" + "-" * 62
    return "\n".join(
        [line] + [f"| {k.ljust(width)} | {v}" for k, v in rows] + [line]
    )


def _comparison_rows(report):
    c = report.comparison
    yield "", f"{report.model}  |  {c.model}  |  ratio"
    yield (
        "params",
        f"{report.params:,}  |  {c.params:,}  |  "
        + (f"{report.params / c.params:.2f}x" if c.params else "n/a"),
    )
    yield (
        "file bytes",
        (
            f"{report.sizes['file']:,}  |  {c.sizes['file']:,}  |  "
            f"{c.ratios.get('file', float('nan')):.2f}x"
        ),
    )
    for runtime, lat in c.latency.items():
        ours = report.latency.get(runtime)
        if ours is None:  # e.g. a fused "mcu" model, not timed on the host
            continue
        yield (
            f"latency {runtime}",
            (
                f"{ours.median_ms:.3f} ms  |  {lat.median_ms:.3f} ms  |  "
                f"{c.ratios.get('latency_' + runtime, float('nan')):.2f}x"
                " (interleaved)"
            ),
        )
    if c.arena is not None and report.arena is not None:
        yield (
            "tensor arena",
            (
                f"{report.arena.arena_bytes:,}  |  {c.arena.arena_bytes:,}  |  "
                f"{c.ratios.get('arena', float('nan')):.2f}x"
            ),
        )
    if c.delegation is not None and report.delegation is not None:
        ours, plain = report.delegation.partitions, c.delegation.partitions
        yield "XNNPACK partitions", f"{ours}  |  {plain}  |"
    for name, estimate in (c.cortex_m or {}).items():
        ours = report.cortex_m[name]["instructions"]
        yield (
            f"est. {name}",
            f"{ours:,}  |  {estimate['instructions']:,}  |  "
            f"{c.ratios[f'cortex_m:{name}']:.2f}x instructions",
        )
    if c.top1_agreement is not None:
        yield (
            "top-1 vs keras",
            (f"{report.top1_agreement:.4f}  |  {c.top1_agreement:.4f}  |"),
        )


def format_report(report):
    """A plain-text table of a `ConversionReport` (and its comparison)."""
    text = _table(_rows(report))
    if report.comparison is not None:
        text += "\ncompared with the plain model, same conversion, same run:\n"
        text += _table(_comparison_rows(report))
    return text
