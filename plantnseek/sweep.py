"""``plantnseek sweep``: a grid of runs in parallel, resumable, collected into results.csv and figure.png.

A sweep config has a ``base`` run (the keys of a ``fit`` config: ``seed_everything``, ``data``, ``model``,
``trainer`` with a Pruning callback, or a ``pruning`` mapping) and ``grid`` axes. Every combination of
axis values is one run with its own directory under ``<out>/runs/``. A run whose ``summary.json`` says
``completed`` is skipped when the sweep runs again; failed runs are recorded and retried next time.
"""
from __future__ import annotations

import argparse
import copy
import csv
import itertools
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import yaml

from plantnseek.argparsing import CleanArgumentParser
from plantnseek.errors import UsageError, check_number

# Short axis names and where they go in a run's configuration.
AXES = {
    "dataset": ("data", "dataset"),
    "seed": ("seed", None),
    "depth": ("model", "depth"),
    "width": ("model", "width"),
    "pruner": ("pruning", "pruner"),
    "sparsity": ("pruning", "sparsity"),
    "levels": ("pruning", "levels"),
}
SECTIONS = ("data", "model", "pruning", "trainer")
TOP_KEYS = ("name", "base", "grid", "pictures", "stack")
CSV_FIELDS = ["status", "param_sparsity", "param_kept", "param_prunable", "flop_sparsity", "metric_name",
              "final_metric", "final_loss", "ticket_metric", "ticket_sparsity", "recall", "precision", "collapsed",
              "seconds", "run_dir", "error"]


@dataclass
class RunSpec:
    """One run of the grid: its axis values and the full configuration they produce."""

    name: str
    values: dict[str, Any]
    seed: int
    data: dict[str, Any]
    model: dict[str, Any]
    pruning: dict[str, Any] | None
    trainer: dict[str, Any] = field(default_factory=dict)
    pictures: bool = True
    stack: bool = True

    @property
    def label(self) -> str:
        return str(self.pruning.get("pruner", "dense")) if self.pruning else "dense"


def load_config(path: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise UsageError(f"sweep config {path!r} does not exist")
    try:
        with open(path) as f:
            config = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise UsageError(f"sweep config {path!r} is not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(config, dict) or "grid" not in config:
        raise UsageError(f"sweep config {path!r} needs a 'grid' mapping of axes (and a 'base' run)")
    unknown = set(config) - set(TOP_KEYS)
    if unknown:
        raise UsageError(f"unknown key {sorted(unknown)[0]!r} in sweep config; allowed: {', '.join(TOP_KEYS)}")
    return config


def base_run(base: dict[str, Any] | None) -> dict[str, Any]:
    """The base run's sections, from fit-config keys (a Pruning callback in trainer.callbacks) or ``pruning``."""
    base = copy.deepcopy(base or {})
    unknown = set(base) - {"seed_everything", *SECTIONS}
    if unknown:
        raise UsageError(f"unknown key {sorted(unknown)[0]!r} in the sweep's base run; "
                         f"allowed: seed_everything, {', '.join(SECTIONS)}")
    trainer = dict(base.get("trainer") or {})
    pruning = base.get("pruning")
    others = []
    for cb in trainer.pop("callbacks", None) or []:
        path = cb.get("class_path", "") if isinstance(cb, dict) else str(cb)
        if path.endswith("Pruning"):
            pruning = dict(cb.get("init_args") or {})
        else:
            others.append(path)
    if others:
        raise UsageError(f"sweep runs take no extra callbacks (found {others[0]!r}); pictures and summaries are built in")
    return {"seed": base.get("seed_everything", 1), "data": dict(base.get("data") or {}),
            "model": dict(base.get("model") or {}), "pruning": dict(pruning) if pruning is not None else None,
            "trainer": trainer}


def axis_target(axis: str) -> tuple[str, str | None]:
    if axis in AXES:
        return AXES[axis]
    section, _, key = axis.partition(".")
    if section in SECTIONS and key and "." not in key:
        return section, key
    raise UsageError(f"unknown axis {axis!r}; allowed: {', '.join(AXES)}, or data.X, model.X, pruning.X, trainer.X")


def parse_value(axis: str, value: Any) -> Any:
    if axis == "sparsity" and isinstance(value, str):
        if value != "ticket":
            raise UsageError(f"sparsity {value!r} is invalid; allowed: a kept fraction in (0, 1], or ticket")
        return -1
    return value


def allowed_keys(section: str) -> set[str]:
    """The keyword arguments a sweep may set in each section (those of the class that takes them)."""
    import inspect

    import pytorch_lightning as pl

    from plantnseek.callbacks.pruning import Pruning
    from plantnseek.data import PlantedDataModule
    from plantnseek.module import PlantedMLP

    cls = {"data": PlantedDataModule, "model": PlantedMLP, "pruning": Pruning, "trainer": pl.Trainer}[section]
    keys = set(inspect.signature(cls.__init__).parameters) - {"self", "args", "kwargs"}
    return keys - {"seed"} - ({"dataset"} if section == "model" else set()) - (
        {"callbacks", "logger", "enable_checkpointing", "accelerator", "devices"} if section == "trainer" else set())


def check_keys(run: dict[str, Any]) -> None:
    for section in SECTIONS:
        if run.get(section) is None:
            continue
        unknown = sorted(set(run[section]) - allowed_keys(section))
        if unknown:
            raise UsageError(f"unknown {section} key {unknown[0]!r}; allowed: {', '.join(sorted(allowed_keys(section)))}")


PREFIXES = {"seed": "seed", "depth": "d", "width": "w", "levels": "L"}


def run_name(values: dict[str, Any]) -> str:
    """A run's folder under ``runs/``, and its TensorBoard name: its grid values as path components,
    e.g. ``circle/synflow/ticket/seed1`` (other axes as ``model.lr=0.01``)."""
    parts = []
    for axis, value in values.items():
        text = f"{PREFIXES[axis]}{value}" if axis in PREFIXES else str(value) if axis in AXES else f"{axis}={value}"
        parts.append(re.sub(r"[^A-Za-z0-9=,._-]", "_", text))
    return "/".join(parts)


def expand(config: dict[str, Any], overrides: dict[str, list[Any]] | None = None) -> list[RunSpec]:
    """Every combination of the grid axes as a RunSpec (validated, before anything runs)."""
    grid = dict(config.get("grid") or {})
    grid.update(overrides or {})
    if not grid:
        raise UsageError("the sweep grid has no axes")
    for axis, values in grid.items():
        axis_target(axis)
        if not isinstance(values, list) or not values:
            raise UsageError(f"axis {axis!r} is empty; give a non-empty list of values")
    base = base_run(config.get("base"))
    check_keys(base)
    for axis in grid:
        section, key = axis_target(axis)
        if key is not None:
            check_keys({section: {key: None}})
    specs = []
    axes = list(grid)
    for combo in itertools.product(*(grid[a] for a in axes)):
        run = copy.deepcopy(base)
        values = dict(zip(axes, combo))
        for axis, value in values.items():
            section, key = axis_target(axis)
            value = parse_value(axis, value)
            if section == "seed":
                run["seed"] = value
            else:
                if section == "pruning" and run["pruning"] is None:
                    run["pruning"] = {}
                run[section][key] = value
        specs.append(RunSpec(name=run_name(values), values=values,
                             pictures=bool(config.get("pictures", True)), stack=bool(config.get("stack", True)),
                             **run))
    validate(specs)
    return specs


def validate(specs: list[RunSpec]) -> None:
    """Fail before any run starts on values no run could use (one line naming the bad value)."""
    from plantnseek.callbacks.pruning import Pruning
    from plantnseek.data import PlantedDataModule
    from plantnseek.module import OPTIMIZERS, network_widths
    from plantnseek.tasks import get_task
    from plantnseek.tickets import build_ticket, min_width

    seen: set[str] = set()
    for spec in specs:
        key = json.dumps([spec.data, spec.model, spec.pruning], sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        try:
            check_number("seed", spec.seed, integer=True)
            check_number("depth", spec.model.get("depth", 5), integer=True)
            check_number("width", spec.model.get("width", 50), integer=True)
            PlantedDataModule(**spec.data)
            dataset = spec.data.get("dataset", "circle")
            depth, width = spec.model.get("depth", 5), spec.model.get("width", 50)
            need = min_width(build_ticket(dataset, depth))
            if width < need:
                raise UsageError(f"width {width} cannot hold the {dataset} ticket; the minimum width is {need}")
            if spec.model.get("optimizer", "adam") not in OPTIMIZERS:
                raise UsageError(f"unknown optimizer {spec.model['optimizer']!r}; allowed: {', '.join(OPTIMIZERS)}")
            unknown = set(spec.model) - {"depth", "width", "optimizer", "lr", "weight_decay", "lr_drops", "lr_drop_rate"}
            if unknown:
                raise UsageError(f"unknown model key {sorted(unknown)[0]!r}")
            if spec.pruning is not None:
                Pruning(**spec.pruning)
            network_widths(get_task(dataset), depth, width)
        except TypeError as e:
            raise UsageError(f"run {spec.name}: {e}") from None
        except UsageError as e:
            raise UsageError(f"run {spec.name}: {e}") from None


def run_dir(out: str, spec: RunSpec) -> str:
    return os.path.join(out, "runs", spec.name)


def is_done(out: str, spec: RunSpec) -> bool:
    path = os.path.join(run_dir(out, spec), "summary.json")
    if not os.path.isfile(path):
        return False
    try:
        with open(path) as f:
            return json.load(f).get("status") == "completed"
    except (OSError, ValueError):
        return False


def quiet_worker() -> None:
    """One thread per worker process (the workers are the parallelism) and no Lightning chatter."""
    import logging
    import warnings

    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    for name in ("pytorch_lightning", "pytorch_lightning.utilities.rank_zero", "lightning_fabric",
                 "lightning_fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.ERROR)


def stack_key(spec: RunSpec) -> str:
    """Runs with equal keys can train as one stacked model (they differ in seed and pruning only)."""
    schedule = {k: (spec.pruning or {}).get(k) for k in ("levels", "pre_epochs", "post_epochs", "rewind")}
    data = {k: v for k, v in spec.data.items() if k != "seed"}
    return json.dumps([data, spec.model, spec.trainer, spec.pruning is None, schedule], sort_keys=True, default=str)


def plan(todo: list[RunSpec], workers: int, max_stack: int) -> list[list[RunSpec]]:
    """Batches of runs: stackable runs together (at most ``max_stack``, and split so every worker has work)."""
    groups: dict[str, list[RunSpec]] = {}
    for spec in todo:
        key = stack_key(spec) if spec.stack and max_stack > 1 else spec.name
        groups.setdefault(key, []).append(spec)
    n_chunks_min = min(workers, len(todo))
    total = len(todo)
    batches: list[list[RunSpec]] = []
    for specs in groups.values():
        share = max(1, round(n_chunks_min * len(specs) / total))  # this group's share of the workers
        size = min(max_stack, math.ceil(len(specs) / share))
        batches += [specs[i : i + size] for i in range(0, len(specs), size)]
    return sorted(batches, key=len, reverse=True)


def fit_runs(specs: list[RunSpec], out: str) -> None:
    """Train stackable runs as one model (a single run is a stack of one), with the same callbacks as ``fit``.

    Each run writes into its own directory what a ``fit`` run writes: TensorBoard scalars, images and
    HParams, pictures and ``summary.json``; sweep runs write no checkpoints.
    """
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import TensorBoardLogger

    from plantnseek.callbacks import Pictures, Pruning, RunSummary
    from plantnseek.data import PlantedDataModule, StackedData
    from plantnseek.module import PlantedMLP
    from plantnseek.stacked import StackedPruning

    first = specs[0]
    dms = [PlantedDataModule(**s.data, seed=s.seed) for s in specs]
    model = PlantedMLP(dataset=dms[0].dataset, seed=[s.seed for s in specs], **first.model)
    directories = [run_dir(out, s) for s in specs]
    loggers = [TensorBoardLogger(out, name="runs", version=s.name, default_hp_metric=False) for s in specs]
    model.run_loggers = [[logger] for logger in loggers]
    callbacks: list[Any] = []
    trainer_kw = {"max_epochs": 10, **first.trainer}
    if first.pruning is not None:
        callbacks.append(StackedPruning([Pruning(**s.pruning) for s in specs]))
        trainer_kw["max_epochs"] = callbacks[0].total_epochs
    callbacks.append(RunSummary(verbose=False, directories=directories))
    if first.pictures:
        callbacks.append(Pictures(directories=directories))
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, callbacks=callbacks, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0, **trainer_kw)
    try:
        trainer.fit(model, datamodule=StackedData(dms))
    finally:
        for logger in loggers:
            logger.finalize("success")


def execute_batch(specs: list[RunSpec], out: str) -> list[dict[str, Any]]:
    """Train a batch of stackable runs (one run is a batch of one); never raises.

    If a stack fails, its runs are trained one by one, so one bad run cannot sink the others; a single
    run's failure is recorded in its summary.json.
    """
    quiet_worker()
    start = time.perf_counter()
    for spec in specs:
        write_run_config(run_dir(out, spec), spec)
    try:
        fit_runs(specs, out)
    except BaseException as e:  # noqa: BLE001 - recorded, the sweep goes on
        if len(specs) > 1:
            return [row for spec in specs for row in execute_batch([spec], out)]
        record_failure(run_dir(out, specs[0]), specs[0], e)
    seconds = (time.perf_counter() - start) / len(specs)
    return [result_row(out, spec, seconds) for spec in specs]


def write_run_config(directory: str, spec: RunSpec) -> None:
    from plantnseek.runconfig import fit_config, write_config

    trainer = dict(spec.trainer)
    if spec.pruning is None:
        trainer.setdefault("max_epochs", 10)
    write_config(directory, fit_config(spec.seed, spec.data, spec.model, spec.pruning, trainer))


def record_failure(directory: str, spec: RunSpec, error: BaseException) -> None:
    path = os.path.join(directory, "summary.json")
    summary: dict[str, Any] = {}
    if os.path.isfile(path):
        with open(path) as f:
            summary = json.load(f)
    if summary.get("status") not in ("failed", "interrupted"):
        summary = {"status": "failed", "dataset": spec.data.get("dataset")}
    summary.setdefault("reason", f"{type(error).__name__}: {error}")
    with open(path, "w") as f:
        json.dump(summary, f, indent=1)


def result_row(out: str, spec: RunSpec, seconds: float | None = None) -> dict[str, Any]:
    """The results.csv row of a run, from its summary.json."""
    row: dict[str, Any] = dict(spec.values)
    row.update({"dataset": spec.data.get("dataset", "circle"), "label": spec.label, "run_dir": run_dir(out, spec)})
    path = os.path.join(run_dir(out, spec), "summary.json")
    s: dict[str, Any] = {}
    if os.path.isfile(path):
        with open(path) as f:
            s = json.load(f)
    row["status"] = s.get("status", "missing")
    row["error"] = s.get("reason", "")
    if seconds is not None:
        s["seconds"] = seconds
        if os.path.isfile(path):
            with open(path, "w") as f:
                json.dump(s, f, indent=1)
    row["seconds"] = s.get("seconds")
    if "ticket" in s:
        final = s.get("final") or {}
        row.update({
            "param_sparsity": s["param_sparsity"], "param_kept": s["param_kept"], "param_prunable": s["param_prunable"],
            "flop_sparsity": s["flop_sparsity"], "sparsity_target": s["sparsity_target"],
            "metric_name": s["primary_metric"], "final_metric": final.get(s["primary_metric"]),
            "final_loss": final.get("loss"), "ticket_metric": s["ticket"]["metric"],
            "ticket_sparsity": s["ticket"]["sparsity"], "recall": s["recovery"]["recall"],
            "precision": s["recovery"]["precision"], "collapsed": s["recovery"]["collapsed"],
        })
    return row


def write_results(out: str, rows: list[dict[str, Any]], axes: list[str]) -> str:
    path = os.path.join(out, "results.csv")
    fields = axes + [f for f in CSV_FIELDS if f not in axes]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in fields})
    return path


def draw(out: str, rows: list[dict[str, Any]]) -> str:
    from torch.utils.tensorboard import SummaryWriter

    from plantnseek import figures

    varying = [a for a in rows[0] if a in AXES or "." in a] if rows else []
    extra = [a for a in varying if a not in ("dataset", "sparsity", "seed", "pruner")
             and len({str(r.get(a)) for r in rows}) > 1]
    for r in rows:
        r["label"] = " ".join([str(r.get("pruner", r["label"]))] + [f"{a}={r.get(a)}" for a in extra])
    fig = figures.sweep_figure(rows)
    writer = SummaryWriter(os.path.join(out, "tensorboard"))
    try:
        return figures.save(fig, os.path.join(out, "figure.png"), [type("Logger", (), {"experiment": writer})()],
                            "sweep/figure")
    finally:
        writer.close()


def run_local(batches: list[list[RunSpec]], out: str, workers: int, progress: Callable[[dict], None]) -> None:
    if workers <= 1 or len(batches) <= 1:
        for batch in batches:
            for row in execute_batch(batch, out):
                progress(row)
        return
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    with ctx.Pool(min(workers, len(batches)), initializer=quiet_worker, maxtasksperchild=20) as pool:
        for rows in pool.imap_unordered(_execute_star, [(batch, out) for batch in batches]):
            for row in rows:
                progress(row)


def _execute_star(args: tuple[list[RunSpec], str]) -> list[dict[str, Any]]:
    return execute_batch(*args)


def run_submitit(batches: list[list[RunSpec]], out: str, workers: int, progress: Callable[[dict], None]) -> None:
    try:
        import submitit
    except ImportError:
        raise UsageError("--executor submitit needs submitit: .venv/bin/pip install 'plantnseek[submitit]' "
                         "(or pip install submitit)") from None
    executor = submitit.AutoExecutor(folder=os.path.join(out, "submitit"))
    executor.update_parameters(timeout_min=24 * 60, slurm_array_parallelism=max(workers, 1), cpus_per_task=1)
    jobs = executor.map_array(execute_batch, batches, [out] * len(batches))
    for job in submitit.helpers.as_completed(jobs):
        try:
            for row in job.result():
                progress(row)
        except Exception as e:  # noqa: BLE001 - a job that died outside execute_batch()
            progress({"status": "failed", "error": f"{type(e).__name__}: {e}"})


def build_parser() -> argparse.ArgumentParser:
    p = CleanArgumentParser(prog="plantnseek sweep", description="Run a grid of planted-ticket experiments.")
    p.add_argument("--config", required=True, help="sweep config (configs/sweeps/*.yaml)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel runs (default: one per core)")
    p.add_argument("--out", default=None, help="output folder (default: lightning_logs/sweeps/<config name>)")
    p.add_argument("--executor", default="local", choices=["local", "submitit"],
                   help="local processes, or submitit (SLURM job array when available, else its local executor)")
    p.add_argument("--grid", action="append", default=[], metavar="AXIS=V1,V2",
                   help="override or add an axis, e.g. --grid seed=1,2,3 (repeatable)")
    p.add_argument("--seeds", type=int, default=None, help="shorthand for --grid seed=1,...,N")
    p.add_argument("--max-stack", type=int, default=64,
                   help="most runs trained together as one stacked model (1: every run on its own; default: 64)")
    return p


def parse_overrides(items: Iterable[str], seeds: int | None) -> dict[str, list[Any]]:
    overrides: dict[str, list[Any]] = {}
    for item in items:
        axis, sep, values = item.partition("=")
        if not sep or not axis:
            raise UsageError(f"--grid {item!r} is not AXIS=V1,V2,...")
        overrides[axis] = [yaml.safe_load(v) for v in values.split(",") if v != ""]
    if seeds is not None:
        if seeds < 1:
            raise UsageError(f"--seeds {seeds} is invalid; it must be at least 1")
        overrides["seed"] = list(range(1, seeds + 1))
    return overrides


def run(argv: list[str]) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    if args.workers < 1:
        raise UsageError(f"--workers {args.workers} is invalid; it must be at least 1")
    if args.max_stack < 1:
        raise UsageError(f"--max-stack {args.max_stack} is invalid; it must be at least 1")
    config = load_config(args.config)
    specs = expand(config, parse_overrides(args.grid, args.seeds))
    if args.executor == "submitit":
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise UsageError("--executor submitit needs submitit: .venv/bin/pip install 'plantnseek[submitit]' "
                             "(or pip install submitit)") from None
    name = config.get("name") or os.path.splitext(os.path.basename(args.config))[0]
    out = args.out or os.path.join("lightning_logs", "sweeps", name)
    os.makedirs(out, exist_ok=True)
    todo = [s for s in specs if not is_done(out, s)]
    batches = plan(todo, args.workers, args.max_stack)
    print(f"sweep {name}: {len(specs)} runs, {len(specs) - len(todo)} already done, {len(todo)} to run "
          f"in {len(batches)} batch(es) with {args.workers} worker(s) -> {out}")
    from plantnseek.sweep_report import Progress, summary_table

    start = time.perf_counter()
    progress = Progress(len(todo))
    try:
        if todo:
            (run_submitit if args.executor == "submitit" else run_local)(batches, out, args.workers, progress.update)
    finally:
        progress.close()
    rows = [result_row(out, s) for s in specs]
    axes = list(specs[0].values)
    csv_path = write_results(out, rows, axes)
    fig_path = draw(out, rows)
    done = sum(r["status"] == "completed" for r in rows)
    print(summary_table(rows))
    if done < len(rows):
        print(f"failed runs are listed with their error in {csv_path} (status, error); running the sweep again "
              f"retries them", file=sys.stderr)
    print(f"results: {csv_path}\nfigure:  {fig_path}\nTensorBoard: tensorboard --logdir {out}")
    print(f"{done}/{len(rows)} runs completed, {len(rows) - done} failed, {time.perf_counter() - start:.1f} s")
    return {"out": out, "rows": rows, "failed": len(rows) - done}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run(sys.argv[1:]) is None)
