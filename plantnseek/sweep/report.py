"""``plantnseek report DIR...``: one table and one figure across sweeps and fit runs, the numbers a paper quotes.

Runs are read from their ``summary.json`` (sweep runs, fit runs, whole ``lightning_logs`` trees alike); a
sweep's ``results.csv`` adds its grid values and its verdict on stale runs. Only completed runs are counted.
Seeds are aggregated as the mean with a 95 % percentile bootstrap interval (fixed RNG, so the same runs
always give the same report); a single seed has no interval, because one number says nothing of the spread.
"""
from __future__ import annotations

import argparse
import collections
import csv
import json
import math
import os
import sys
from typing import Any, Iterable

import numpy as np

from plantnseek.core.argparsing import CleanArgumentParser
from plantnseek.core.errors import UsageError
from plantnseek.sweep.report_figure import METRICS, markdown, report_figure, write_csv

RESAMPLES, RNG_SEED = 2000, 0
DEFAULT_BY = ("task", "pruner", "density")
CSV_AXES = {"dataset": "task", "sparsity": "density", "pruner": "pruner", "seed": "seed"}  # results.csv -> axis
SKIP_DIRS = {"tensorboard", "checkpoints"}


def bootstrap(values: Iterable[float], resamples: int = RESAMPLES, seed: int = RNG_SEED) -> tuple[float, float, float]:
    """Mean and 95 % percentile bootstrap interval of the mean (NaN interval below two values)."""
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    if len(x) < 2:
        return float(x[0]), math.nan, math.nan
    means = x[np.random.default_rng(seed).integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(x.mean()), float(lo), float(hi)


def higher_is_better(summary: dict[str, Any], metric: str) -> bool:
    """A summary's own ``higher_is_better`` when it has one; else accuracy is, (rescaled) MSE is not."""
    flag = summary.get("higher_is_better")
    return bool(flag) if isinstance(flag, bool) else metric == "accuracy"


def _flat(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else k, v, out)
    else:
        out[prefix] = str(value)


def _is_ticket(s: dict[str, Any], config: dict[str, Any], csv_row: dict[str, str]) -> bool:
    """A run pruned to the ticket's own density (``sparsity: -1``), however that run recorded it."""
    if isinstance(s.get("at_ticket_density"), bool):
        return s["at_ticket_density"]
    if csv_row.get("sparsity") == "ticket" or -1 in (s.get("sparsity_target"), s.get("sparsity")):
        return True
    if (config.get("pruning") or {}).get("sparsity") == -1:
        return True
    target, ticket = s.get("sparsity_target"), s.get("ticket") or {}
    return not config and s.get("pruner") not in (None, "dense") and target is not None and any(
        isinstance(d, float) and abs(d - target) < 1e-12 for d in (ticket.get("sparsity"), ticket.get("density"),
                                                                   s.get("ticket_density")))


def _dead(s: dict[str, Any], csv_row: dict[str, str], key: str, column: str) -> bool | None:
    dead = s.get("dead")
    if isinstance(dead, dict) and isinstance(dead.get(key), bool):
        return dead[key]
    text = csv_row.get(column, "").strip().lower()
    return {"true": True, "false": False}.get(text)


def record(path: str, source: str, csv_row: dict[str, str], csv_axes: list[str]) -> dict[str, Any] | None:
    """One run as a flat record: its axes (strings, for grouping) and its numbers; None if unreadable."""
    try:
        with open(path) as f:
            s = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(s, dict):
        return None
    config = (s.get("identity") or {}).get("config") or {}
    axes: dict[str, str] = {}
    _flat("", config, axes)
    ticket = _is_ticket(s, config, csv_row)
    target = s.get("sparsity_target")
    axes.update({k: str(s[k]) for k in ("depth", "width", "levels", "scope", "prune_bias", "optimizer", "lr")
                 if s.get(k) is not None})
    axes.update({"task": str(s.get("dataset")), "pruner": str(s.get("pruner") or "dense"), "seed": str(s.get("seed")),
                 "density": "ticket" if ticket else (f"{target:.4g}" if isinstance(target, (int, float)) else "?"),
                 "source": source})
    for column in csv_axes:
        if column not in CSV_AXES and csv_row.get(column, "") != "":
            axes[column] = csv_row[column]
    metric = s.get("primary_metric") or (s.get("ticket") or {}).get("metric_name") or "metric"
    recovery = s.get("recovery") or {}
    collapsed = recovery.get("collapsed")
    return {"run": os.path.dirname(path), "status": csv_row.get("status") or s.get("status", "missing"),
            "axes": axes, "metric": metric, "higher": higher_is_better(s, metric),
            "final": (s.get("final") or {}).get(metric), "pruned": (s.get("pruned") or {}).get(metric),
            "recall": recovery.get("recall"), "precision": recovery.get("precision"),
            "collapsed": collapsed if isinstance(collapsed, bool) else None,
            "dead_pruned": _dead(s, csv_row, "after_pruning", "dead_pruned"),
            "dead_final": _dead(s, csv_row, "final", "dead_final"),
            "x": s.get("param_sparsity") if ticket else target}


def _read_csv(folder: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    """A sweep's grid axes (the columns before ``status``) and its rows by normalised run folder."""
    with open(os.path.join(folder, "results.csv"), newline="") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        rows = {os.path.normpath(r.get("run_dir", "")): r for r in reader}
    return fields[:fields.index("status")] if "status" in fields else [], rows


def find_runs(dirs: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Every run under the folders (each counted once) and the sweeps' grid axes."""
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    sweep_axes: list[str] = []
    sweep_rows: dict[str, tuple[list[str], dict[str, str]]] = {}  # run folder -> its sweep's axes and csv row
    for d in dirs:
        if not os.path.isdir(d):
            raise UsageError(f"report: {d!r} is not a folder; give sweep folders, fit run folders or "
                             "a lightning_logs tree")
        found = 0
        for root, subdirs, files in os.walk(d):
            subdirs[:] = sorted(s for s in subdirs if s not in SKIP_DIRS)
            if "results.csv" in files:
                axes, rows = _read_csv(root)
                sweep_axes += [a for a in axes if a not in sweep_axes]
                for row_dir, row in rows.items():
                    name = os.path.relpath(row_dir, os.path.normpath(row_dir.rpartition(os.sep + "runs" + os.sep)[0]))
                    sweep_rows[os.path.realpath(os.path.join(root, name))] = (axes, row)
            if "summary.json" in files:
                real = os.path.realpath(root)
                if real in seen:
                    continue
                seen.add(real)
                axes, row = sweep_rows.get(real, ([], {}))
                r = record(os.path.join(root, "summary.json"), d, row, axes)
                if r is not None:
                    records.append(r)
                    found += 1
        if not found:
            raise UsageError(f"report: {d!r} holds no runs (no summary.json in it or below)")
    return records, sweep_axes


def _density_key(value: str) -> tuple[int, float, str]:
    try:
        return (1, float(value), value)
    except ValueError:
        return (0, 0.0, value)  # ``ticket`` first: the density every other one is measured against


def group(records: list[dict[str, Any]], by: list[str]) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = collections.defaultdict(list)
    for r in records:
        groups[tuple(r["axes"].get(a, "-") for a in by)].append(r)
    return dict(sorted(groups.items(), key=lambda kv: [_density_key(v) for v in kv[0]]))


def _count(runs: list[dict[str, Any]], key: str) -> tuple[int, int]:
    """Runs flagged and runs whose flag is unknown (not recorded: an older summary)."""
    return sum(r[key] is True for r in runs), sum(r[key] is None for r in runs)


def summarise(groups: dict[tuple[str, ...], list[dict[str, Any]]], by: list[str]) -> list[dict[str, Any]]:
    """One row per group: mean and interval of each metric, n, dead and collapsed counts."""
    rows = []
    for key, runs in groups.items():
        for metric in sorted({r["metric"] for r in runs}):
            sel = [r for r in runs if r["metric"] == metric]
            row: dict[str, Any] = dict(zip(by, key))
            row.update({"metric_name": metric, "higher_is_better": sel[0]["higher"], "n": len(sel)})
            for field, _ in METRICS:
                row[f"{field}_mean"], row[f"{field}_lo"], row[f"{field}_hi"] = bootstrap(r[field] for r in sel)
            for flag in ("collapsed", "dead_pruned", "dead_final"):
                row[flag], row[f"{flag}_unknown"] = _count(sel, flag)
            xs = [r["x"] for r in sel if isinstance(r["x"], (int, float))]
            row["x"] = float(np.mean(xs)) if xs else math.nan
            rows.append(row)
    return rows


def compare(groups_of: dict[tuple[str, ...], list[dict[str, Any]]], others: list[str], a: str,
            b: str) -> list[dict[str, Any]]:
    """``a - b`` paired by seed within each group of the ``others`` axes: mean difference, interval, n pairs."""
    rows = []
    for key, runs in groups_of.items():
        by_seed: dict[str, dict[str, dict[str, Any]]] = {a: {}, b: {}}
        for r in runs:
            method = r["axes"]["pruner"]
            if method in by_seed:
                if r["axes"]["seed"] in by_seed[method]:
                    raise UsageError(f"report --compare: {method} has several runs with seed {r['axes']['seed']} in "
                                     f"{', '.join(key) or 'one group'}; add the axis they differ in to --by")
                by_seed[method][r["axes"]["seed"]] = r
        seeds = sorted(set(by_seed[a]) & set(by_seed[b]), key=_density_key)
        if not seeds:
            continue
        row: dict[str, Any] = dict(zip(others, key))
        first = by_seed[a][seeds[0]]
        row.update({"metric_name": first["metric"], "higher_is_better": first["higher"], "n_pairs": len(seeds)})
        for field, _ in METRICS:
            diffs = [by_seed[a][s][field] - by_seed[b][s][field] for s in seeds
                     if by_seed[a][s][field] is not None and by_seed[b][s][field] is not None]
            row[f"{field}_diff"], row[f"{field}_lo"], row[f"{field}_hi"] = bootstrap(diffs)
        rows.append(row)
    return rows


def build_parser() -> argparse.ArgumentParser:
    p = CleanArgumentParser(prog="plantnseek report", description="One table and one figure across sweeps and runs.")
    p.add_argument("dirs", nargs="+", metavar="DIR", help="sweep folders, fit run folders or lightning_logs trees")
    p.add_argument("--by", default=None, help=f"axes to group by, comma-separated (default: {','.join(DEFAULT_BY)})")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"), help="two pruners, compared paired by seed: A - B")
    p.add_argument("--out", default=os.path.join("lightning_logs", "reports", "report"),
                   help="write PREFIX.csv, PREFIX.md, PREFIX.png (default: lightning_logs/reports/report)")
    return p


def run(argv: list[str]) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    records, sweep_axes = find_runs(args.dirs)
    done = [r for r in records if r["status"] == "completed"]
    if not done:
        raise UsageError(f"report: no completed runs in {', '.join(args.dirs)} ({len(records)} run(s), none completed)")
    known = sorted({a for r in done for a in r["axes"]})
    by = [a.strip() for a in args.by.split(",") if a.strip()] if args.by else list(DEFAULT_BY)
    for axis in by:
        if axis not in known:
            short = [a for a in known if "." not in a]
            raise UsageError(f"report --by: {axis!r} is not an axis of these runs; allowed: {', '.join(short)} "
                             "or a data./model./pruning. setting")
    if not args.by:  # a sweep axis that varies would otherwise be averaged over silently
        extra = [a for a in sweep_axes if a not in CSV_AXES and len({r["axes"].get(a) for r in done}) > 1]
        if extra:
            print(f"report: grouping also by {', '.join(extra)} (varies across the runs)", file=sys.stderr)
            by += extra
    others = collections.Counter(r["status"] for r in records if r["status"] != "completed")
    note = (f"{len(done)} completed run(s) from {len(args.dirs)} folder(s)" +
            (f"; not counted: {', '.join(f'{n} {s}' for s, n in sorted(others.items()))}" if others else "") +
            f"; intervals: 95 % percentile bootstrap over seeds ({RESAMPLES} resamples, none for n = 1); "
            "⚠: some runs collapsed or dead")
    comparison: list[dict[str, Any]] = []
    if args.compare:
        methods = {r["axes"]["pruner"] for r in done}
        for m in args.compare:
            if m not in methods:
                raise UsageError(f"report --compare: {m!r} is not a pruner of these runs; "
                                 f"allowed: {', '.join(sorted(methods))}")
        rest = [a for a in by if a not in ("pruner", "seed")]
        comparison = compare(group(done, rest), rest, *args.compare)
    rows = summarise(group(done, by), by)
    text = markdown(rows, by, comparison, note, tuple(args.compare) if args.compare else None)
    prefix = os.path.join(args.out, "report") if os.path.isdir(args.out) or args.out.endswith(os.sep) else args.out
    try:
        os.makedirs(os.path.dirname(prefix) or ".", exist_ok=True)
        write_csv(prefix + ".csv", rows)
        if comparison:
            write_csv(prefix + "_compare.csv", comparison)
        with open(prefix + ".md", "w") as f:
            f.write(text)
        plotted = list(dict.fromkeys(["task", *by, "density"]))  # the figure needs both, whatever --by says
        report_figure(summarise(group(done, plotted), plotted), prefix + ".png")
    except OSError as e:
        raise UsageError(f"report --out {args.out!r} cannot be written: {e.strerror or e}") from None
    print(text)
    print(f"written: {prefix}.csv, {prefix}.md, {prefix}.png" + (f", {prefix}_compare.csv" if comparison else ""))
    return {"rows": rows, "comparison": comparison, "by": by, "prefix": prefix}
