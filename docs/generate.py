"""docs/paper.md and its figures, generated from the committed results of the paper's grids and of the
methods comparison (docs/results/*.csv.gz), so that no number in the doc is typed by hand.

    python docs/generate.py                       # rewrite docs/paper.md and docs/figures/*.png
    python docs/generate.py --add NAME results.csv  # commit a sweep's results.csv as docs/results/NAME.csv.gz

The prose is docs/paper.template.md; each ``{{ expression }}`` in it is evaluated here, with the helpers
below: means over seeds with 95 % bootstrap intervals (plantnseek report's own), counts of collapsed and
dead networks, and the verdict rules the findings use. tests/test_docs.py fails when the committed
paper.md differs from what this script makes of the committed results.
"""
from __future__ import annotations

import csv
import gzip
import io
import math
import re
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

from plantnseek.sweep.report import bootstrap

DOCS = Path(__file__).resolve().parent
RESULTS = DOCS / "results"
DENSITIES = ["ticket", "0.01", "0.1", "0.5", "1"]
TASKS = ["circle", "relu", "helix"]
PAPER = ["rand", "mag", "snip", "grasp", "synflow"]
NEW = ["itersnip", "force", "prospr", "phew"]
ORDER = PAPER + NEW + ["ticket", "edgepopup", "edgepopup-anneal"]
NUMBERS = ("param_sparsity", "pruned_metric", "final_metric", "final_loss", "ticket_metric", "ticket_density",
           "recall", "precision", "seconds")
FLAGS = ("collapsed", "dead_pruned", "dead_final")


def compress(csv_path: str, name: str) -> Path:
    """A sweep's results.csv as docs/results/<name>.csv.gz: run folders relative to the sweep, gzip without
    a timestamp (the same results give the same bytes)."""
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["run_dir"] = r["run_dir"][r["run_dir"].find("runs/"):] if "runs/" in r["run_dir"] else r["run_dir"]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    path = RESULTS / f"{name}.csv.gz"
    RESULTS.mkdir(exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(text.getvalue().encode())
    return path


def load(name: str) -> list[dict[str, Any]]:
    """The completed runs of a committed sweep, numbers as floats and flags as booleans."""
    with gzip.open(RESULTS / f"{name}.csv.gz", "rt", newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        if r["status"] != "completed":
            continue
        for k in NUMBERS:
            r[k] = float(r[k]) if r.get(k) not in (None, "") else None
        for k in FLAGS:
            r[k] = r.get(k) == "True"
        out.append(r)
    return out


def count(name: str) -> tuple[int, int]:
    """(completed, all) runs of a committed sweep."""
    with gzip.open(RESULTS / f"{name}.csv.gz", "rt", newline="") as f:
        rows = list(csv.DictReader(f))
    return sum(r["status"] == "completed" for r in rows), len(rows)


def select(rows: Iterable[dict[str, Any]], **where: Any) -> list[dict[str, Any]]:
    """Rows whose columns equal ``where`` (keys with dots given as ``__``: pruning__budget)."""
    want = {k.replace("__", "."): str(v) for k, v in where.items()}
    return [r for r in rows if all(r.get(k) == v for k, v in want.items())]


def higher(rows: list[dict[str, Any]]) -> bool:
    return rows[0]["metric_name"] == "accuracy"


def fmt(value: float, accuracy: bool) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value:.3f}" if accuracy else f"{value:.2g}"


def mean(rows: list[dict[str, Any]], column: str) -> float:
    return bootstrap([r[column] for r in rows])[0] if rows else math.nan


def cell(rows: list[dict[str, Any]], column: str, interval: bool = True) -> str:
    """Mean over the runs (seeds) and its 95 % bootstrap interval: ``0.952 [0.948, 0.956]``."""
    if not rows:
        return "–"
    acc = column in ("recall", "precision") or (higher(rows) and column != "ticket_density")
    m, lo, hi = bootstrap([r[column] for r in rows])
    text = fmt(m, acc)
    return f"{text} [{fmt(lo, acc)}, {fmt(hi, acc)}]" if interval and not math.isnan(lo) else text


def flags(rows: list[dict[str, Any]], column: str) -> str:
    return f"{sum(r[column] for r in rows)}/{len(rows)}"


def table(rows: list[dict[str, Any]], by: list[str], label: Callable[[str], str] = str) -> str:
    """A markdown table, a line per group of ``by`` columns: n, final and after-pruning metric (mean
    [interval]), recall, collapsed and dead-at-the-end counts."""
    keys = sorted({tuple(r[k] for k in by) for r in rows}, key=lambda t: tuple(_order(k, v) for k, v in zip(by, t)))
    lines = ["| " + " | ".join([label(k) for k in by] + ["n", "final", "after pruning", "recall", "collapsed",
                                                           "dead at end"]) + " |",
             "|" + "---|" * (len(by) + 6)]
    for key in keys:
        group = [r for r in rows if tuple(r[k] for k in by) == key]
        lines.append("| " + " | ".join(list(key) + [str(len(group)), cell(group, "final_metric"),
                                                    cell(group, "pruned_metric"), cell(group, "recall", False),
                                                    flags(group, "collapsed"), flags(group, "dead_final")]) + " |")
    return "\n".join(lines)


def _order(column: str, value: str) -> tuple:
    if column in ("dataset",) and value in TASKS:
        return (0, TASKS.index(value), "")
    if column == "sparsity" and value in DENSITIES:
        return (0, DENSITIES.index(value), "")
    if column == "pruner" and value in ORDER:
        return (0, ORDER.index(value), "")
    try:
        return (1, float(value), "")
    except ValueError:
        return (2, 0.0, value)


# -- what the template calls: a sweep's rows by name, and one number or list per call ---------------------
_RUNS: dict[str, list[dict[str, Any]]] = {}


def rows_of(sweep: str, **where: Any) -> list[dict[str, Any]]:
    if sweep not in _RUNS:
        _RUNS[sweep] = load(sweep)
    return select(_RUNS[sweep], **where)


def c(sweep: str, column: str = "final_metric", interval: bool = False, **where: Any) -> str:
    """One number of a sweep: the mean of ``column`` over the matching runs (seeds), optionally its interval."""
    return cell(rows_of(sweep, **where), column, interval)


def ci(sweep: str, column: str = "final_metric", **where: Any) -> str:
    return c(sweep, column, True, **where)


def k(sweep: str, flag: str = "collapsed", **where: Any) -> str:
    """How many of the matching runs have ``flag`` (collapsed, dead_pruned, dead_final): ``3/25``."""
    return flags(rows_of(sweep, **where), flag)


def each(sweep: str, pruners: list[str], column: str = "final_metric", **where: Any) -> str:
    """``rand 0.887, mag 0.965, ...``: one mean per pruner."""
    return ", ".join(f"{p} {c(sweep, column, pruner=p, **where)}" for p in pruners)


def n_seeds(sweep: str) -> int:
    return len({r["seed"] for r in rows_of(sweep)})


def n_runs(sweep: str) -> str:
    done, total = count(sweep)
    return f"{done:,}" if done == total else f"{done:,} of {total:,}"


def weak_ones(sweep: str, pruners: list[str], dataset: str, sparsity: str, **where: Any) -> str:
    """The pruners whose runs at ``sparsity`` train to a weak ticket: comparable to dense training (same sweep, density 1)."""
    dense = rows_of(sweep, dataset=dataset, sparsity="1", **where)
    found_ = [p for p in pruners if weak(rows_of(sweep, dataset=dataset, sparsity=sparsity, pruner=p, **where), dense)]
    return ", ".join(found_) if found_ else "none"


def best(sweep: str, pruners: list[str], dataset: str, column: str = "pruned_metric") -> str:
    """The best mean of ``column`` over pruners and densities below 1, and where: ``0.31 (snip, 0.01)``."""
    groups = [(p, s, rows_of(sweep, dataset=dataset, pruner=p, sparsity=s)) for p in pruners for s in DENSITIES[:-1]]
    groups = [(p, s, g) for p, s, g in groups if g]
    better = max if higher(groups[0][2]) else min
    p, s, g = better(groups, key=lambda x: mean(x[2], column))
    return f"{cell(g, column, False)} ({p}, {s})"


def strong_ones(sweep: str, pruners: list[str], **where: Any) -> str:
    """Every (task, pruner, density below 1) whose mean after-pruning metric is a strong ticket."""
    found_ = [f"{t} {p} {s} ({c(sweep, 'pruned_metric', dataset=t, pruner=p, sparsity=s, **where)})"
              for t in TASKS for p in pruners for s in DENSITIES[:-1]
              if rows_of(sweep, dataset=t, pruner=p, sparsity=s, **where)
              and strong(rows_of(sweep, dataset=t, pruner=p, sparsity=s, **where))]
    return "; ".join(found_) if found_ else "none"


def noise_line(dataset: str, sweep: str = "paper_noise") -> str:
    """``circle: noise 0 0.959 / 0.974 / 0.971, ...``: the mean final metric over the five pruners at 0.1, 0.5
    and dense, per noise level."""
    levels = sorted({r["data.noise"] for r in rows_of(sweep)}, key=float)
    parts = [f"noise {n} " + " / ".join(c(sweep, dataset=dataset, data__noise=n, sparsity=s) for s in ("0.1", "0.5", "1"))
             for n in levels]
    return f"{dataset}: " + ", ".join(parts)


def variants() -> list[tuple[str, dict[str, str]]]:
    """The methods comparison's rows: every scorer ranked globally, the layer-wise budgets, and iterative
    magnitude pruning's three rewinding rules (configs/sweeps/methods.yaml)."""
    single = {"levels": "1"}
    out = [(p, {"pruner": p, "pruning__budget": "global", **single}) for p in PAPER + NEW]
    out += [(f"{p} {b}", {"pruner": p, "pruning__budget": b, **single})
            for p in ("rand", "snip", "synflow") for b in ("uniform", "erk", "balanced", "pyramidal")]
    imp = {"pruner": "mag", "levels": "10"}
    out += [("IMP, rewind to init", {**imp, "pruning__rewind_epoch": "0", "pruning__lr_rewind": "False"}),
            ("IMP, rewind to epoch 2", {**imp, "pruning__rewind_epoch": "2", "pruning__lr_rewind": "False"}),
            ("IMP, lr rewinding", {**imp, "pruning__rewind_epoch": "0", "pruning__lr_rewind": "True"}),
            ("IMP, lr rewinding to epoch 2", {**imp, "pruning__rewind_epoch": "2", "pruning__lr_rewind": "True"})]
    return out


def methods_table(dataset: str, sweep: str = "methods") -> str:
    """Method x density: the mean metric after training, after pruning, and the recall of the ticket."""
    head = "| method | " + " | ".join(f"{d}: trained / pruned / recall" for d in DENSITIES) + " |"
    lines = [head, "|---|" + "---|" * len(DENSITIES)]
    for label, where in variants():
        cells = []
        for d in DENSITIES:
            g = rows_of(sweep, dataset=dataset, sparsity=d, **where)
            mark = "†" if g and 2 * sum(r["collapsed"] for r in g) > len(g) else ""
            cells.append(f"{cell(g, 'final_metric', False)} / {cell(g, 'pruned_metric', False)} / "
                         f"{cell(g, 'recall', False)}{mark}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def top(column: str, sparsity: str, tasks: list[str] = TASKS, sweep: str = "methods") -> str:
    """The largest mean of ``column`` over every method of the comparison and ``tasks`` at ``sparsity``."""
    found_ = [(mean(rows_of(sweep, dataset=t, sparsity=sparsity, **w), column), label, t)
              for label, w in variants() for t in tasks if rows_of(sweep, dataset=t, sparsity=sparsity, **w)]
    value, label, task = max(found_)
    return f"{fmt(value, True)} ({label}, {task})"


def same_numbers(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> str:
    """``identical`` when two sweeps' runs of one configuration gave the same numbers, seed by seed."""
    key = lambda r: (r["dataset"], r["sparsity"], r["seed"])  # noqa: E731
    cols = ("final_metric", "pruned_metric", "recall")
    left, right = {key(r): [r[c] for c in cols] for r in a}, {key(r): [r[c] for c in cols] for r in b}
    return f"identical in all {len(left)} runs" if left == right and left else "NOT identical"


def methods_verdicts(dataset: str, sweep: str = "methods") -> str:
    """Which methods find the ticket, a strong ticket, or a weak ticket at the two sparsest densities."""
    def where_true(rule) -> list[str]:
        return [f"{label} at {d}" for label, where in variants() for d in DENSITIES[:-1]
                if rows_of(sweep, dataset=dataset, sparsity=d, **where) and rule(where, d)]

    def weak_at(where, d):
        return weak(rows_of(sweep, dataset=dataset, sparsity=d, **where),
                    rows_of(sweep, dataset=dataset, sparsity="1", **where))

    sparse = ("ticket", "0.01")
    found_ = where_true(lambda w, d: d in sparse and found(rows_of(sweep, dataset=dataset, sparsity=d, **w)))
    # a strong ticket is the *initial* weights under the mask: not for rewinding to trained weights
    at_init = lambda w: w.get("pruning__rewind_epoch", "0") == "0" and w.get("pruning__lr_rewind") != "True"  # noqa: E731
    strong_ = where_true(lambda w, d: at_init(w) and strong(rows_of(sweep, dataset=dataset, sparsity=d, **w)))
    weak_ = where_true(lambda w, d: d in sparse and weak_at(w, d))
    paper = [x for x in weak_ if x.split(" at ")[0] in PAPER]
    others = [x for x in weak_ if x not in paper]
    return (f"**{dataset}** — ticket found (recall ≥ 0.9 at the ticket's density or 0.01): {', '.join(found_) or 'none'}. "
            f"Strong ticket (the initial weights under the mask): "
            f"{', '.join(strong_) or 'none'}. Weak ticket at the ticket's density or 0.01: the paper's five "
            f"(global ranking): {', '.join(paper) or 'none'}; the others: {', '.join(others) or 'none'}.")


SWEEPS = ["paper_singleshot", "paper_multishot", "paper_synflow100", "paper_edgepopup", "paper_noise", "methods"]


def committed(sweep: str) -> bool:
    return (RESULTS / f"{sweep}.csv.gz").is_file()


def when(sweep: str, expression: str) -> str:
    """``expression`` evaluated if the sweep's results are committed; else a note that they are not (yet)."""
    if not committed(sweep):
        return f"*(`{sweep}` not yet run at full size)*"
    return str(eval(expression, globals()))


def runs_table() -> str:
    """What was run: each shipped grid, its completed runs, seeds and wall time."""
    lines = ["| config | runs | seeds | wall time |", "|---|---|---|---|"]
    for s in SWEEPS:
        if committed(s):
            lines.append(f"| `configs/sweeps/{s}.yaml` | {n_runs(s)} | {n_seeds(s)} | {wall(s)} |")
        else:
            note = _walls().get(s, {}).get("note") or "not yet run at full size"
            lines.append(f"| `configs/sweeps/{s}.yaml` | {note} | | |")
    return "\n".join(lines)


def noise_summary(sweep: str = "paper_noise") -> str:
    return ("mean final metric over the five pruners at density 0.1 / 0.5 / dense, by noise level: "
            + "; ".join(noise_line(task, sweep) for task in TASKS))


def noise_ranking(sweep: str = "paper_noise") -> str:
    """Whether the five pruners rank the same (by mean final metric at 0.1) at every noise level, per task."""
    out = []
    for task in TASKS:
        orders = set()
        for n in sorted({r["data.noise"] for r in rows_of(sweep)}, key=float):
            groups = {p: rows_of(sweep, dataset=task, data__noise=n, sparsity="0.1", pruner=p) for p in PAPER}
            sign = -1 if higher(next(iter(groups.values()))) else 1
            orders.add(tuple(sorted(PAPER, key=lambda p: sign * mean(groups[p], "final_metric"))))
        out.append(f"{task}: {'the same order at every noise level' if len(orders) == 1 else f'{len(orders)} different orders'}")
    return "; ".join(out)


def _walls() -> dict[str, dict[str, str]]:
    with open(RESULTS / "wall_times.csv", newline="") as f:
        return {r["sweep"]: r for r in csv.DictReader(f)}


def wall(sweep: str) -> str:
    seconds = float(_walls()[sweep]["seconds"])
    return f"{seconds / 60:.1f} min"


def wall_note() -> str:
    """The circumstances of the wall times (docs/results/wall_times.csv: one row per sweep, and ``*`` for all)."""
    walls = _walls()
    parts = [walls["*"]["note"]] if "*" in walls else []
    parts += [f"`{s}`: {r['note']}." for s, r in walls.items() if s != "*" and r.get("note") and committed(s)]
    return " ".join(parts)


def strong(group: list[dict[str, Any]]) -> bool:
    """A strong ticket: right after pruning, with no training, as good as the planted ticket allows — within
    0.05 accuracy of the ticket alone (circle), or at most twice its rescaled MSE (regression)."""
    m, t = mean(group, "pruned_metric"), mean(group, "ticket_metric")
    return m >= t - 0.05 if higher(group) else m <= 2 * t


def weak(group: list[dict[str, Any]], dense: list[dict[str, Any]]) -> bool:
    """A weak ticket: after training, comparable to the same training of the dense network — within 0.01
    accuracy of it (circle), or at most twice its rescaled MSE (regression)."""
    m, d = mean(group, "final_metric"), mean(dense, "final_metric")
    return m >= d - 0.01 if higher(group) else m <= 2 * d


def found(group: list[dict[str, Any]]) -> bool:
    """The planted ticket found: at least 90 % of its weights kept (mean recall over seeds)."""
    return mean(group, "recall") >= 0.9


def render(template: str | None = None) -> str:
    """paper.md: the template with every ``{{ expression }}`` replaced by its value."""
    text = template if template is not None else (DOCS / "paper.template.md").read_text()
    names = {k: v for k, v in globals().items() if not k.startswith("_")}

    def value(match: re.Match) -> str:
        return str(eval(match.group(1), names))  # the template is ours, in this repository

    return re.sub(r"\{\{(.+?)\}\}", value, text, flags=re.S)


def figures() -> list[Path]:
    """One figure per committed sweep (plantnseek's own sweep figure), as docs/figures/<name>.png."""
    import matplotlib

    matplotlib.use("Agg")
    from plantnseek.core.figures import sweep_figure

    out = []
    (DOCS / "figures").mkdir(exist_ok=True)
    for path in sorted(RESULTS.glob("*.csv.gz")):
        name = path.name[:-len(".csv.gz")]
        rows = load(name)
        if name == "methods":  # one line per scorer: the global ranking of the singleshot part
            rows = select(rows, pruning__budget="global", levels="1")
        extra = [c for c in rows[0] if "." in c and len({r[c] for r in rows}) > 1]
        for r in rows:
            r["label"] = " ".join([r.get("pruner", "dense")] + [f"{c.split('.')[-1]}={r[c]}" for c in extra])
            r["sparsity_target"] = -1.0 if r["sparsity"] == "ticket" else float(r["sparsity"])
        fig = sweep_figure(rows)
        fig.savefig(DOCS / "figures" / f"{name}.png", dpi=80)
        out.append(DOCS / "figures" / f"{name}.png")
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["--add"]:
        print(compress(sys.argv[3], sys.argv[2]))
    else:
        (DOCS / "paper.md").write_text(render())
        print("written:", DOCS / "paper.md", *figures())
