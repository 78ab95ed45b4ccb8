"""What ``plantnseek report`` writes: Markdown tables, CSV and the figure (per task, each metric against the
kept fraction, one line per method).

Lines are group means over seeds with the 95 % bootstrap interval as a band; groups with a dead network are
crossed and groups with a collapsed one ringed, so a near-chance point is never read as a pruner's result.
"""
from __future__ import annotations

import csv
import io
import math
from typing import Any

import matplotlib.ticker

from plantnseek.core.figures import plt, save

PANELS = (("final", "after training"), ("pruned", "after pruning"), ("recall", "ticket recall"))
METRICS = (("final", "final"), ("pruned", "after pruning"), ("recall", "recall"), ("precision", "precision"))


def _cell(mean: float, lo: float, hi: float) -> str:
    if math.isnan(mean):
        return "–"
    return f"{mean:.3g}" + ("" if math.isnan(lo) else f" [{lo:.3g}, {hi:.3g}]")


def _flags(row: dict[str, Any], flag: str) -> str:
    """``k/n`` of the runs that recorded the flag; ``?`` when none did (summaries older than the flag)."""
    unknown = row[f"{flag}_unknown"]
    if unknown == row["n"]:
        return "?"
    return f"{row[flag]}/{row['n'] - unknown}" + (f" ({unknown} unknown)" if unknown else "")


def _table(header: list[str], cells: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"] + \
        ["| " + " | ".join(c) + " |" for c in cells]


def markdown(rows: list[dict[str, Any]], by: list[str], comparison: list[dict[str, Any]], note: str,
             methods: tuple[str, str] | None) -> str:
    """One table per metric (so a column never mixes higher- and lower-is-better), then the comparison."""
    out = [note, ""]
    for metric in sorted({r["metric_name"] for r in rows}):
        sel = [r for r in rows if r["metric_name"] == metric]
        arrow = "higher is better" if sel[0]["higher_is_better"] else "lower is better"
        out.append(f"**{metric}** ({arrow}); mean over seeds [95 % bootstrap interval]; recall and precision: "
                   "of the planted ticket")
        out.append("")
        header = [*by, "n", f"final {metric}", f"after pruning {metric}", "recall", "precision", "collapsed",
                  "dead after pruning", "dead at end"]
        cells = []
        for r in sel:
            mark = " ⚠" if r["collapsed"] or r["dead_final"] or r["dead_pruned"] else ""
            cells.append([*(str(r[a]) for a in by[:-1]), str(r[by[-1]]) + mark, str(r["n"]),
                          *(_cell(r[f"{f}_mean"], r[f"{f}_lo"], r[f"{f}_hi"]) for f, _ in METRICS),
                          _flags(r, "collapsed"), _flags(r, "dead_pruned"), _flags(r, "dead_final")])
        out += _table(header, cells) + [""]
    if methods:
        a, b = methods
        out.append(f"**{a} − {b}**, paired by seed (positive: {a} higher; mind each metric's direction)")
        out.append("")
        others = [k for k in comparison[0] if k not in ("metric_name", "higher_is_better", "n_pairs")
                  and not k.endswith(("_diff", "_lo", "_hi"))] if comparison else []
        header = [*others, "metric", "pairs", *(f"Δ {label}" for _, label in METRICS)]
        cells = [[*(str(r[k]) for k in others), f"{r['metric_name']} {'↑' if r['higher_is_better'] else '↓'}",
                  str(r["n_pairs"]), *(_cell(r[f"{f}_diff"], r[f"{f}_lo"], r[f"{f}_hi"]) for f, _ in METRICS)]
                 for r in comparison]
        missing = [f"no group has runs of both {a} and {b} with the same seed"]
        out += (_table(header, cells) if cells else missing) + [""]
    return "\n".join(out)


def write_csv(path: str, rows: list[dict[str, Any]]) -> None:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    writer.writerows({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows)
    with open(path, "w", newline="") as f:
        f.write(text.getvalue())


def _label(row: dict[str, Any], axes: list[str]) -> str:
    return " ".join(str(row[a]) for a in axes) or "all runs"


def report_figure(rows: list[dict[str, Any]], path: str) -> str:
    """``rows`` from :func:`plantnseek.sweep.report.summarise` grouped by task, the line axes and density."""
    keys = list(rows[0]) if rows else []
    line_axes = [a for a in keys[:keys.index("metric_name")] if a not in ("task", "density")] if rows else []
    tasks = sorted({r["task"] for r in rows})
    labels = sorted({_label(r, line_axes) for r in rows})
    fig, axes = plt.subplots(len(PANELS), len(tasks), figsize=(3.8 * len(tasks), 7.5), squeeze=False, sharex="col")
    for col, task in enumerate(tasks):
        sel = [r for r in rows if r["task"] == task and not math.isnan(r["x"])]
        metric = sel[0]["metric_name"] if sel else "metric"
        for i, label in enumerate(labels):
            pts = sorted((r for r in sel if _label(r, line_axes) == label), key=lambda r: r["x"])
            for ax, (field, _) in zip(axes[:, col], PANELS):
                pts_f = [r for r in pts if not math.isnan(r[f"{field}_mean"])]
                if not pts_f:
                    continue
                x = [r["x"] for r in pts_f]
                ax.plot(x, [r[f"{field}_mean"] for r in pts_f], marker="o", ms=3, color=f"C{i}", label=label)
                band = [r for r in pts_f if not math.isnan(r[f"{field}_lo"])]
                ax.fill_between([r["x"] for r in band], [r[f"{field}_lo"] for r in band],
                                [r[f"{field}_hi"] for r in band], color=f"C{i}", alpha=0.2, lw=0)
                dead_flag = "dead_pruned" if field == "pruned" else "dead_final"
                dead = [r for r in pts_f if r[dead_flag]]
                if dead:
                    ax.scatter([r["x"] for r in dead], [r[f"{field}_mean"] for r in dead], marker="x", s=40,
                               color="black", zorder=3, label="dead (some seeds)")
                gone = [r for r in pts_f if r["collapsed"]]
                if gone:
                    ax.scatter([r["x"] for r in gone], [r[f"{field}_mean"] for r in gone], marker="o", s=70,
                               facecolors="none", edgecolors="red", zorder=3, label="collapsed (some seeds)")
        for ax, (field, title) in zip(axes[:, col], PANELS):
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.grid(alpha=0.3)
            if field != "recall":
                better = "higher" if sel and sel[0]["higher_is_better"] else "lower"
                ax.set_ylabel(f"{title}: {metric}\n({better} is better)", fontsize=8)
            else:
                ax.set_ylabel(title, fontsize=8)
                ax.set_ylim(-0.02, 1.02)
        axes[0, col].set_title(task)
        axes[-1, col].set_xlabel("kept fraction of parameters (ticket: as kept)", fontsize=8)
    handles, names = [], []
    for ax in axes.flat:  # one legend entry per name, from any panel (markers show only where they occur)
        for h, n in zip(*ax.get_legend_handles_labels()):
            if n not in names:
                handles.append(h)
                names.append(n)
    unique = dict(zip(names, handles))
    fig.legend(unique.values(), unique.keys(), loc="lower center", ncol=min(len(unique), 5), fontsize=7)
    fig.suptitle("mean over seeds, band: 95 % bootstrap interval", fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return save(fig, path)
