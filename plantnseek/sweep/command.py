"""``plantnseek sweep``: a grid of runs in parallel, resumable, collected into results.csv and figure.png.

A sweep config has a ``base`` run (the keys of a ``fit`` config: ``seed_everything``, ``data``, ``model``,
``trainer`` with a Pruning callback, or a ``pruning`` mapping) and ``grid`` axes. Every combination of
axis values is one run with its own directory under ``<out>/runs/``. A run is skipped when the sweep runs
again only if its ``summary.json`` says ``completed`` and was produced under the run's current resolved
configuration (its identity); other runs are cleared and redone. results.csv and figure.png hold only
such current results. One sweep at a time writes to a folder (``<out>/.lock``).

The work is split by job: :mod:`plantnseek.sweep.spec` (grid), :mod:`plantnseek.sweep.identity` (what
else a run's identity holds), :mod:`plantnseek.sweep.check` (validation), :mod:`plantnseek.sweep.store`
(run folders, atomic writes, lock), :mod:`plantnseek.sweep.execute` (running a batch of runs),
:mod:`plantnseek.sweep.workers` (worker processes).
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import shutil
import signal
import sys
import threading
import time
from typing import Any, Iterable, Iterator

import yaml

from plantnseek.core.argparsing import CleanArgumentParser
from plantnseek.core.errors import RunFailure, UsageError
from plantnseek.sweep.execute import cap_workers, execute, execute_batch, plan  # noqa: F401
from plantnseek.sweep.workers import run_local, run_submitit
from plantnseek.sweep.check import expand
from plantnseek.sweep.spec import AXES, RunSpec, load_config
from plantnseek.core.files import atomic_write
from plantnseek.sweep.store import (OutLock, check_out, clear_run, current, is_done, read_summary,
                                    record_failure, resume_command, run_dir, todo_report)

CSV_FIELDS = ["status", "param_sparsity", "param_kept", "param_prunable", "flop_sparsity", "metric_name",
              "pruned_metric", "final_metric", "final_loss", "ticket_metric", "ticket_density", "recall", "precision",
              "collapsed", "dead_pruned", "dead_final", "engine", "seconds", "run_dir", "error"]


class SweepInterrupted(Exception):
    """Ctrl-C during a sweep; the message says how many runs completed and how to resume (exit 130)."""


class FailFast(Exception):
    """--fail-fast: a run failed, so the sweep stops (its workers killed) and records the rest as not run."""


def result_row(out: str, spec: RunSpec, seconds: float | None = None) -> dict[str, Any]:
    """The results.csv row of a run, from its summary.json, only if produced under the run's configuration.

    Its labels (axis values, dataset, pruner) are read from the resolved configuration that trained."""
    row: dict[str, Any] = dict(spec.values)
    row.update({"dataset": spec.identity["config"]["data"]["dataset"], "label": spec.label,
                "run_dir": run_dir(out, spec)})
    s = read_summary(out, spec) or {}
    if s and not current(s, spec):
        s = {"status": "stale", "reason": "produced under another configuration; run the sweep to redo it"}
    row["status"] = s.get("status", "missing")
    row["error"] = s.get("reason", "")
    row["seconds"] = s.get("seconds") if seconds is None else seconds
    if "ticket" in s:
        final = s.get("final") or {}
        row.update({
            "param_sparsity": s["param_sparsity"], "param_kept": s["param_kept"], "param_prunable": s["param_prunable"],
            "flop_sparsity": s["flop_sparsity"], "sparsity_target": s["sparsity_target"],
            "metric_name": s["primary_metric"], "final_metric": final.get(s["primary_metric"]),
            "pruned_metric": (s.get("pruned") or {}).get(s["primary_metric"]),
            "final_loss": final.get("loss"), "ticket_metric": s["ticket"]["metric"],
            "ticket_density": s["ticket"]["density"], "recall": s["recovery"]["recall"],
            "precision": s["recovery"]["precision"], "collapsed": s["recovery"]["collapsed"], "engine": s.get("engine"),
            "dead_pruned": (s.get("dead") or {}).get("after_pruning"), "dead_final": (s.get("dead") or {}).get("final"),
            # asked for the ticket's density (sparsity -1): labelled "ticket" in the table and the figure
            "at_ticket_density": s.get("at_ticket_density", False),
        })
    return row


def write_results(out: str, rows: list[dict[str, Any]], axes: list[str]) -> str:
    """results.csv, written atomically. A float is written at the precision it was measured: one that is a
    float32 (metrics are) as float32's shortest repr, 0.17 rather than 0.17000000178813934."""
    import numpy as np

    def cell(v: Any) -> Any:
        if v is None:
            return ""
        if isinstance(v, float) and float(np.float32(v)) == v:
            return str(np.float32(v))  # numpy writes float32's shortest round-tripping form
        return v

    fields = axes + [f for f in CSV_FIELDS if f not in axes]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: cell(row.get(k)) for k in fields})
    return atomic_write(os.path.join(out, "results.csv"), text.getvalue())


def draw(out: str, rows: list[dict[str, Any]]) -> str:
    """figure.png (written atomically) and the same figure in ``<out>/tensorboard``."""
    from torch.utils.tensorboard import SummaryWriter

    from plantnseek.core import figures
    varying = [a for a in rows[0] if a in AXES or "." in a] if rows else []
    extra = [a for a in varying if a not in ("dataset", "sparsity", "seed", "pruner")
             and len({str(r.get(a)) for r in rows}) > 1]
    for r in rows:
        r["label"] = " ".join([str(r.get("pruner", r["label"]))] + [f"{a}={r.get(a)}" for a in extra])
    fig = figures.sweep_figure(rows)
    shutil.rmtree(os.path.join(out, "tensorboard"), ignore_errors=True)  # no figure of an earlier sweep
    writer = SummaryWriter(os.path.join(out, "tensorboard"))
    path, tmp = os.path.join(out, "figure.png"), os.path.join(out, f"figure.tmp{os.getpid()}.png")
    try:
        figures.save(fig, tmp, [type("Logger", (), {"experiment": writer})()], "sweep/figure")
        os.replace(tmp, path)
        return path
    finally:
        writer.close()


def build_parser() -> argparse.ArgumentParser:
    p = CleanArgumentParser(prog="plantnseek sweep", description="Run a grid of planted-ticket experiments.")
    p.add_argument("--config", required=True, help="sweep config (configs/sweeps/*.yaml)")
    p.add_argument("--workers", type=int, default=None,
                   help="parallel runs (default and most: one per core, and as many as the available memory holds by each run's estimate)")
    p.add_argument("--out", default=None, help="output folder (default: lightning_logs/sweeps/<config name>)")
    p.add_argument("--executor", default="local", choices=["local", "submitit"],
                   help="local processes, or submitit (SLURM job array when available, else its local executor)")
    p.add_argument("--grid", action="append", default=[], metavar="AXIS=V1,V2",
                   help="override or add an axis, e.g. --grid seed=1,2,3 (repeatable)")
    p.add_argument("--seeds", type=int, default=None, help="shorthand for --grid seed=1,...,N")
    p.add_argument("--max-stack", type=int, default=64,
                   help="most runs trained together as one stacked model (1: every run on its own; default: 64)")
    p.add_argument("--fail-fast", action="store_true",
                   help="stop at the first failed run: its workers are killed, the runs left are recorded as not run")
    return p


def parse_overrides(items: Iterable[str], seeds: int | None) -> dict[str, list[Any]]:
    """``--grid``/``--seeds`` as axes; each axis given once (another axis setting the same setting is
    refused by :func:`plantnseek.sweep.spec.check_one_value`)."""
    overrides: dict[str, list[Any]] = {}
    for item in items:
        axis, sep, values = item.partition("=")
        if not sep or not axis:
            raise UsageError(f"--grid {item!r} is not AXIS=V1,V2,...")
        if axis in overrides:
            raise UsageError(f"--grid {item} repeats the axis {axis}; give its values once: --grid {axis}=V1,V2,...")
        try:
            overrides[axis] = [yaml.safe_load(v) for v in values.split(",") if v != ""]
        except yaml.YAMLError:
            raise UsageError(f"--grid {item!r}: a value is not valid YAML") from None
    if seeds is not None:
        if seeds < 1:
            raise UsageError(f"--seeds {seeds} is invalid; it must be at least 1")
        if "seed" in overrides:
            raise UsageError(f"--seeds {seeds} and --grid seed=... both set the seeds; give one of them")
        overrides["seed"] = list(range(1, seeds + 1))
    return overrides


def run(argv: list[str]) -> dict[str, Any]:
    """The sweep: everything is checked before anything is written; raises SweepInterrupted on Ctrl-C."""
    args = build_parser().parse_args(argv)
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers {args.workers} is invalid; it must be at least 1")
    if args.max_stack < 1:
        raise UsageError(f"--max-stack {args.max_stack} is invalid; it must be at least 1")
    config = load_config(args.config)
    specs = expand(config, parse_overrides(args.grid, args.seeds))
    if args.fail_fast and args.executor != "local":
        raise UsageError(f"--fail-fast works with --executor local only, not {args.executor} "
                         "(its jobs run on their own)")
    if args.executor == "submitit":
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise UsageError("--executor submitit needs submitit: .venv/bin/pip install 'plantnseek[submitit]' "
                             "(or pip install submitit)") from None
    name = config.get("name") or os.path.splitext(os.path.basename(args.config))[0]
    out = args.out or os.path.join("lightning_logs", "sweeps", name)
    check_out(out)
    requested = args.workers
    if args.executor == "local":
        workers, capped = cap_workers(requested or os.cpu_count() or 1, specs)
    else:
        workers, capped = requested or os.cpu_count() or 1, None
    os.makedirs(out, exist_ok=True)
    with OutLock(out, argv), terminate_as_interrupt():
        try:
            return sweep(specs, out, name, workers, args, capped if requested is not None else None)
        except KeyboardInterrupt:
            done = sum(is_done(out, s) for s in specs)
            raise SweepInterrupted(f"interrupted: {done}/{len(specs)} runs completed and kept in {out}; "
                                   f"resume with: {resume_command(argv)}") from None


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """``kill`` (SIGTERM) stops a sweep like Ctrl-C: Lightning would otherwise ignore it during training."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def sweep(specs: list[RunSpec], out: str, name: str, workers: int, args: argparse.Namespace,
          capped: str | None) -> dict[str, Any]:
    """Run what is not done yet (under the lock), then collect results.csv and figure.png."""
    from plantnseek.sweep.progress import Progress, summary_table

    todo, reasons = todo_report(out, specs)
    batches = plan(todo, workers, args.max_stack)
    for line in ([capped] if capped else []) + reasons:
        print(line)
    print(f"sweep {name}: {len(specs)} runs, {len(specs) - len(todo)} already done, {len(todo)} to run "
          f"in {len(batches)} batch(es) with {workers} worker(s) -> {out}")
    if todo:  # results of an earlier sweep must not outlive it: rebuilt below from current runs only
        for stale in ("results.csv", "figure.png"):
            if os.path.exists(os.path.join(out, stale)):
                os.remove(os.path.join(out, stale))
        shutil.rmtree(os.path.join(out, "tensorboard"), ignore_errors=True)
    start = time.perf_counter()
    progress, ended = Progress(len(todo)), set[str]()  # ended: the run folders of finished (or failed) runs

    def update(rows: list[dict[str, Any]]) -> None:
        progress.update(rows)
        ended.update(r.get("run_dir") for r in rows)
        if args.fail_fast and any(r.get("status") != "completed" for r in rows):
            raise FailFast

    try:
        if todo:
            (run_submitit if args.executor == "submitit" else run_local)(batches, out, workers, update, progress.advance)
    except FailFast:
        not_run = [s for s in todo if run_dir(out, s) not in ended]
        for spec in not_run:
            clear_run(run_dir(out, spec))  # nothing of a run killed half-way, or of an earlier attempt, stays
            record_failure(run_dir(out, spec), spec, RunFailure("--fail-fast stopped the sweep at a failed run"), 0.0,
                           status="not run")
        print(f"--fail-fast: stopped at the first failed run; {len(not_run)} run(s) not run", file=sys.stderr)
    finally:
        progress.close()
    rows = [result_row(out, s) for s in specs]
    axes = list(specs[0].values)
    csv_path = write_results(out, rows, axes)
    fig_path = draw(out, rows)
    done = sum(r["status"] == "completed" for r in rows)
    not_run = sum(r["status"] == "not run" for r in rows)
    print(summary_table(rows))
    if done < len(rows):
        print(f"failed runs are listed with their error in {csv_path} (status, error); running the sweep again "
              f"retries them", file=sys.stderr)
    print(f"results: {csv_path}\nfigure:  {fig_path}\nTensorBoard: tensorboard --logdir {out}")
    print(f"{done}/{len(rows)} runs completed, {len(rows) - done - not_run} failed"
          f"{f', {not_run} not run' if not_run else ''}, {time.perf_counter() - start:.1f} s")
    return {"out": out, "rows": rows, "failed": len(rows) - done}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run(sys.argv[1:]) is None)
