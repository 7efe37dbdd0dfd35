"""Tables and plots of the accuracy study from its finished runs.

`write_report` reads every `<variant>_seed<n>.json` the study saved and
writes `results.json`, `results.md` and three plots. Differences to the plain
model are paired: for each seed both models were trained from the same seed
on the same data order, and the 95 % interval is Student's t over the
per-seed differences.
"""

import glob
import json
import math
import os

import numpy as np
from backend_runs import write_json

BASELINE = "plain"


def t_quantile(df, level=0.95):
    """Two-sided Student t critical value, by integrating the density."""
    grid = np.linspace(0.0, 200.0, 400_001)
    log_norm = (
        math.lgamma((df + 1) / 2)
        - math.lgamma(df / 2)
        - 0.5 * math.log(df * math.pi)
    )
    density = np.exp(log_norm - (df + 1) / 2 * np.log1p(grid**2 / df))
    step = grid[1] - grid[0]
    cumulative = np.concatenate(
        [[0.0], np.cumsum((density[1:] + density[:-1]) / 2 * step)]
    )
    return float(np.interp(level / 2, cumulative, grid))


def summarize(values):
    """Mean, sample standard deviation and count of a list of numbers."""
    values = np.asarray(values, dtype=np.float64)
    std = float(values.std(ddof=1)) if len(values) > 1 else None
    return {"mean": float(values.mean()), "std": std, "n": len(values)}


def paired(values, baseline):
    """Mean paired difference with its 95 % interval (None for n < 2)."""
    diff = np.asarray(values, np.float64) - np.asarray(baseline, np.float64)
    result = summarize(diff)
    if len(diff) > 1:
        half = t_quantile(len(diff) - 1) * result["std"] / math.sqrt(len(diff))
        result["ci95"] = [result["mean"] - half, result["mean"] + half]
    else:
        result["ci95"] = None
    return result


def mean_corrupted(run):
    """Mean accuracy over every corruption and severity of one run."""
    return float(
        np.mean(
            [a for by_s in run["corrupted"].values() for a in by_s.values()]
        )
    )


# What results.json keeps of every run: enough to rebuild every table and
# plot (and to pair new seeds with old ones) without the runs folder.
RUN_FIELDS = (
    "settings",
    "params",
    "trainable_params",
    "macs",
    "seconds_per_epoch",
    "clean",
    "corrupted",
    "history",
)


def load_runs(runs_dir, results_path=None):
    """{variant: {seed: run}} from the finished runs in `runs_dir`.

    With `results_path`, the runs an earlier report kept in full (every
    field of `RUN_FIELDS`) fill in for those `runs_dir` lacks, so a study
    continued on another machine, from a fresh clone, keeps its finished
    runs; runs in `runs_dir` win.
    """
    runs = {}
    if results_path and os.path.exists(results_path):
        with open(results_path) as f:
            kept = json.load(f).get("runs", {})
        for variant, by_seed in kept.items():
            for seed, run in by_seed.items():
                if all(field in run for field in RUN_FIELDS):
                    runs.setdefault(variant, {})[int(seed)] = run
    for path in sorted(glob.glob(os.path.join(runs_dir, "*_seed*.json"))):
        with open(path) as f:
            run = json.load(f)
        settings = run["settings"]
        variant = os.path.basename(path).rsplit("_seed", 1)[0]
        runs.setdefault(variant, {})[settings["seed"]] = run
    return runs


def _recipe(run):
    """A run's settings without its seed and variant: what pairs must share."""
    return {
        k: v for k, v in run["settings"].items() if k not in ("seed", "variant")
    }


def check_one_recipe(runs):
    """Refuses to pool or pair runs trained with different recipes."""
    recipes = {
        json.dumps(_recipe(run), sort_keys=True): f"{variant} seed {seed}"
        for variant, by_seed in runs.items()
        for seed, run in by_seed.items()
    }
    if len(recipes) > 1:
        raise ValueError(
            "The finished runs were trained with different recipes (epochs, "
            "train size, backend or optimiser), so they cannot be pooled or "
            "paired; keep one study per output folder. Received: "
            + "; ".join(f"{who}: {r}" for r, who in recipes.items())
        )


def aggregate(runs, variants):
    """Per-variant summaries and paired differences to the baseline."""
    check_one_recipe(runs)
    base = runs.get(BASELINE, {})
    table = {}
    for variant in variants:
        by_seed = runs.get(variant, {})
        if not by_seed:
            continue
        seeds = sorted(by_seed)
        first = by_seed[seeds[0]]
        corruptions = list(first["corrupted"])
        entry = {
            "seeds": seeds,
            "epochs": first["settings"]["epochs"],
            "params": first["params"],
            "trainable_params": first["trainable_params"],
            "macs": first["macs"],
            "seconds_per_epoch": _fastest(by_seed),
            "clean": summarize([by_seed[s]["clean"] for s in seeds]),
            "mean_corrupted": summarize(
                [mean_corrupted(by_seed[s]) for s in seeds]
            ),
            "per_corruption": {
                c: summarize(
                    [
                        np.mean(list(by_seed[s]["corrupted"][c].values()))
                        for s in seeds
                    ]
                )
                for c in corruptions
            },
            "per_severity": _per_severity(by_seed, seeds),
        }
        common = [s for s in seeds if s in base]
        if variant != BASELINE and common:
            entry["vs_plain"] = _differences(by_seed, base, common)
        table[variant] = entry
    return table


def _fastest(by_seed):
    """The fastest run's median seconds per epoch, and where it ran.

    Not the mean: runs share the machine with other work (or are paused
    while something else is timed), and the fastest run is the one that
    shared it least.
    """
    from keras_groupnl.analysis import Machine

    run = min(by_seed.values(), key=lambda r: r["seconds_per_epoch"])
    machine = (
        Machine(**run["machine"]).label()
        if "machine" in run
        else "not recorded"
    )
    return {"fastest": run["seconds_per_epoch"], "machine": machine}


def _per_severity(by_seed, seeds):
    severities = sorted(next(iter(by_seed[seeds[0]]["corrupted"].values())))
    return {
        s: summarize(
            [
                np.mean(
                    [by_sev[s] for by_sev in by_seed[x]["corrupted"].values()]
                )
                for x in seeds
            ]
        )
        for s in severities
    }


def _differences(by_seed, base, seeds):
    corruptions = list(by_seed[seeds[0]]["corrupted"])
    return {
        "seeds": seeds,
        "clean": paired(
            [by_seed[s]["clean"] for s in seeds],
            [base[s]["clean"] for s in seeds],
        ),
        "mean_corrupted": paired(
            [mean_corrupted(by_seed[s]) for s in seeds],
            [mean_corrupted(base[s]) for s in seeds],
        ),
        "per_corruption": {
            c: paired(
                [
                    np.mean(list(by_seed[s]["corrupted"][c].values()))
                    for s in seeds
                ],
                [
                    np.mean(list(base[s]["corrupted"][c].values()))
                    for s in seeds
                ],
            )
            for c in corruptions
        },
    }


def _pm(summary, scale=100.0, digits=2):
    text = f"{summary['mean'] * scale:.{digits}f}"
    if summary.get("std") is not None:
        text += f" ± {summary['std'] * scale:.{digits}f}"
    return text


def _diff(summary):
    text = f"{summary['mean'] * 100:+.2f}"
    if summary.get("ci95"):
        low, high = (100 * v for v in summary["ci95"])
        text += f" [{low:+.2f}, {high:+.2f}]"
    return text


def machines(table):
    """Where each variant's fastest run was measured, as text."""
    by_machine = {}
    for variant, entry in table.items():
        label = entry["seconds_per_epoch"]["machine"]
        by_machine.setdefault(label, []).append(variant)
    if len(by_machine) == 1:
        return next(iter(by_machine))
    return "; ".join(f"{m} ({', '.join(v)})" for m, v in by_machine.items())


def markdown(table, command, measured_on=None):
    """The study's tables in Markdown."""
    lines = [
        f"Produced by `{command}` (the same command continues a stopped "
        "study; `--report-only` rebuilds these pages from the finished "
        "runs). Accuracies in %, mean ± standard "
        "deviation over seeds; differences to plain are paired by seed, "
        "with the 95 % Student-t interval in brackets.",
        "",
        "| variant | seeds | epochs | params | MACs | s/epoch (fastest run) "
        "| clean "
        "| mean corrupted | Δ clean vs plain | Δ corrupted vs plain |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for variant, e in table.items():
        vs = e.get("vs_plain")
        lines.append(
            f"| {variant} | {len(e['seeds'])} | {e['epochs']} "
            f"| {e['params']:,} | {e['macs']:,} "
            f"| {e['seconds_per_epoch']['fastest']:.0f} | {_pm(e['clean'])} "
            f"| {_pm(e['mean_corrupted'])} "
            f"| {_diff(vs['clean']) if vs else '—'} "
            f"| {_diff(vs['mean_corrupted']) if vs else '—'} |"
        )
    if measured_on:
        lines += [
            "",
            "s/epoch: each variant's fastest run (the others shared the "
            f"machine with other work); measured on: {measured_on}.",
        ]
    corruptions = list(next(iter(table.values()))["per_corruption"])
    lines += [
        "",
        "Per corruption (mean over 5 severities), and the paired difference "
        "to plain:",
        "",
        "| corruption | " + " | ".join(table) + " |",
        "|---|" + "---:|" * len(table),
    ]
    for c in corruptions:
        cells = []
        for e in table.values():
            cell = _pm(e["per_corruption"][c], digits=1)
            if e.get("vs_plain"):
                diff = e["vs_plain"]["per_corruption"][c]["mean"]
                cell += f" ({diff * 100:+.1f})"
            cells.append(cell)
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plots(table, runs, results_dir):
    """Accuracy vs severity, per-corruption differences, training curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(6, 4))
    for variant, e in table.items():
        sev = sorted(e["per_severity"], key=int)
        means = [e["clean"]["mean"]] + [
            e["per_severity"][s]["mean"] for s in sev
        ]
        stds = [e["clean"]["std"] or 0] + [
            e["per_severity"][s]["std"] or 0 for s in sev
        ]
        ax.errorbar(
            [0] + [int(s) for s in sev],
            np.multiply(means, 100),
            yerr=np.multiply(stds, 100),
            marker="o",
            capsize=3,
            label=variant,
        )
    ax.set(
        xlabel="severity (0 = clean)",
        ylabel="accuracy (%)",
        title="Fashion-MNIST, mean over 9 corruptions",
    )
    ax.legend(fontsize=8)
    paths.append(_save(fig, results_dir, "accuracy_vs_severity.png"))

    others = [v for v, e in table.items() if e.get("vs_plain")]
    if others:
        corruptions = list(table[others[0]]["per_corruption"])
        fig, ax = plt.subplots(figsize=(8, 4))
        width = 0.8 / len(others)
        for i, variant in enumerate(others):
            d = table[variant]["vs_plain"]["per_corruption"]
            means = np.array([d[c]["mean"] for c in corruptions]) * 100
            err = [
                (d[c]["mean"] - d[c]["ci95"][0]) * 100 if d[c]["ci95"] else 0
                for c in corruptions
            ]
            ax.bar(
                np.arange(len(corruptions)) + i * width,
                means,
                width,
                yerr=err,
                capsize=2,
                label=variant,
            )
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(np.arange(len(corruptions)) + 0.4 - width / 2)
        ax.set_xticklabels(corruptions, rotation=30, ha="right", fontsize=8)
        ax.set(
            ylabel="accuracy − plain (points)",
            title="Paired difference to plain, 95 % interval",
        )
        ax.legend(fontsize=8)
        paths.append(_save(fig, results_dir, "per_corruption_difference.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    for variant, by_seed in runs.items():
        curves = np.array(
            [
                [h["test_accuracy"] for h in r["history"]]
                for r in by_seed.values()
            ]
        )
        ax.plot(
            np.arange(1, curves.shape[1] + 1),
            curves.mean(0) * 100,
            label=variant,
        )
    ax.set(
        xlabel="epoch",
        ylabel="clean test accuracy (%)",
        title="Training curves (mean over seeds)",
    )
    ax.set_ylim(80, 95)
    ax.legend(fontsize=8)
    paths.append(_save(fig, results_dir, "training_curves.png"))
    return paths


def _save(fig, directory, name):
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    temporary = os.path.join(directory, f".{name}.partial.png")
    fig.tight_layout()
    fig.savefig(temporary, dpi=110)
    os.replace(temporary, path)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def write_report(runs_dir, results_dir, variants, command):
    """Writes results.json, results.md and the plots; prints the table."""
    runs = load_runs(runs_dir, os.path.join(results_dir, "results.json"))
    table = aggregate(runs, [v for v in variants if v in runs])
    if not table:
        print(f"no finished runs in {runs_dir}")
        return None
    text = markdown(table, command, machines(table))
    write_json(
        os.path.join(results_dir, "results.json"),
        {
            "command": command,
            "variants": table,
            "runs": {
                v: {
                    str(s): {
                        k: r[k] for k in RUN_FIELDS + ("machine",) if k in r
                    }
                    for s, r in by_seed.items()
                }
                for v, by_seed in runs.items()
            },
        },
    )
    path = os.path.join(results_dir, "results.md")
    temporary = path + ".partial"
    with open(temporary, "w") as f:
        f.write(text)
    os.replace(temporary, path)
    plots({v: table[v] for v in table}, runs, results_dir)
    print(text)
    return table
