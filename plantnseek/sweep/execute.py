"""Running a batch of a sweep's runs: one at a time or stacked (the processes: :mod:`plantnseek.sweep.workers`).

Every run clears what an earlier attempt left, writes its config, events and pictures, and only then
its completed summary (:func:`plantnseek.sweep.store.complete_run`). A failing run is recorded and the
sweep goes on, also when the worker process training it dies; Ctrl-C stops the sweep (it is not a
failure of the run it interrupted).
"""
from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from typing import Any, Callable

from plantnseek.core.runconfig import DENSE_EPOCHS
from plantnseek.sweep.spec import RunSpec
from plantnseek.sweep.store import STAGED_SUMMARY, clear_run, complete_run, read_summary, record_failure, run_dir
from plantnseek.core.tuning import available_memory  # noqa: F401 - also patched in tests


def quiet_worker() -> None:
    """One thread per worker process (the workers are the parallelism) and no Lightning chatter."""
    import logging
    import warnings

    import torch

    from plantnseek.core.tuning import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    for name in ("pytorch_lightning", "pytorch_lightning.utilities.rank_zero", "lightning_fabric",
                 "lightning_fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.ERROR)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def run_memory(spec: RunSpec, runs: int = 1) -> int:
    """The estimated peak memory of ``runs`` runs like ``spec`` in one worker (:mod:`plantnseek.memory`)."""
    from plantnseek.memory import run_bytes

    return run_bytes(spec.data, spec.model, spec.pruning, runs=runs, checkpoints=False, pictures=spec.pictures)


def cap_workers(requested: int, specs: list[RunSpec] | tuple = ()) -> tuple[int, str | None]:
    """At most one worker per core, and as many as can each hold the largest of ``specs`` alone in the
    available memory (:mod:`plantnseek.memory`; a worker's baseline without specs); the message says why,
    if capped."""
    from plantnseek.memory import BASELINE

    cores, memory = available_cores(), available_memory()
    shapes = {stack_key(s): s for s in specs}.values()  # one estimate per distinct shape
    per_worker = max([BASELINE, *(run_memory(s) for s in shapes)])
    by_memory = max(1, memory // per_worker) if memory is not None else requested
    workers = max(1, min(requested, cores, by_memory))
    if workers == requested:
        return workers, None
    memory_text = f"{memory / 2**30:.1f} GB available memory" if memory is not None else "unknown memory"
    return workers, (f"--workers {requested} capped to {workers}: {cores} core(s), {memory_text} "
                     f"at ~{per_worker // 2**20} MB per worker")


def interrupted(error: BaseException) -> bool:
    """Ctrl-C, also as Lightning reports it (it catches KeyboardInterrupt, then exits with SystemExit(1))."""
    return isinstance(error, KeyboardInterrupt) or (
        isinstance(error, SystemExit) and isinstance(error.__context__, KeyboardInterrupt))


def reraise_interrupt() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning leaves Ctrl-C ignored
    raise KeyboardInterrupt


def outcome(out: str, spec: RunSpec) -> dict[str, Any]:
    """What the progress display needs of a finished run: its folder, status and error."""
    summary = read_summary(out, spec) or {}
    return {"run_dir": run_dir(out, spec), "status": summary.get("status", "missing"), "error": summary.get("reason", "")}


def write_run_config(directory: str, spec: RunSpec) -> None:
    from plantnseek.core.runconfig import fit_config, write_config

    trainer = dict(spec.trainer)
    if spec.pruning is None:
        trainer.setdefault("max_epochs", DENSE_EPOCHS)
    write_config(directory, fit_config(spec.seed, spec.data, spec.model, spec.pruning, trainer))


def execute(spec: RunSpec, out: str) -> dict[str, Any]:
    """Train one run of the grid in this process (a stack of one); a failure is recorded, not raised."""
    return execute_batch([spec], out)[0]


def stack_key(spec: RunSpec) -> str:
    """Runs with equal keys can train as one stacked model (they differ in seed and pruning only)."""
    schedule = {k: (spec.pruning or {}).get(k)
                for k in ("levels", "pre_epochs", "post_epochs", "rewind", "rewind_epoch", "lr_rewind")}
    data = {k: v for k, v in spec.data.items() if k != "seed"}
    return json.dumps([data, spec.model, spec.trainer, spec.pruning is None, schedule], sort_keys=True, default=str)


def plan(todo: list[RunSpec], workers: int, max_stack: int) -> list[list[RunSpec]]:
    """Batches of runs: stackable runs together (at most ``max_stack``, as many as fit in a worker's share of
    the available memory, and split so every worker has work)."""
    from plantnseek.memory import largest_stack

    memory = available_memory()
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
        if memory is not None and size > 1:  # workers x stack peak must fit
            size = largest_stack(lambda runs: run_memory(specs[0], runs), memory / workers, size)
        batches += [specs[i : i + size] for i in range(0, len(specs), size)]
    return sorted(batches, key=len, reverse=True)


def epoch_progress(report: Callable[[float], None], runs: int) -> Any:
    """A callback that reports, at each epoch's end, the runs' share of their epochs done (in runs): a stack
    finishes all its runs at once, and the sweep's progress should move while it trains."""
    import pytorch_lightning as pl

    class EpochProgress(pl.Callback):
        def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            if trainer.max_epochs:
                report(runs * min(1.0, (trainer.current_epoch + 1) / trainer.max_epochs))

    return EpochProgress()


def fit_runs(specs: list[RunSpec], out: str, report: Callable[[float], None] | None = None) -> list[dict[str, Any]]:
    """Train stackable runs as one model (a single run is a stack of one) with the callbacks of ``fit``.

    Each run writes into its own directory what a ``fit`` run writes: TensorBoard scalars, images and
    HParams, pictures, and its summary (staged: the sweep completes it last); sweeps write no checkpoints.
    ``report`` is told the runs done so far (fractional) at each epoch's end. Returns each run's summary.
    """
    from pytorch_lightning.loggers import TensorBoardLogger

    from plantnseek.callbacks import Pruning, RunSummary
    from plantnseek.data import PlantedDataModule, PerRunData
    from plantnseek.module import PlantedMLP
    from plantnseek.callbacks.per_run import PerRunPruning
    from plantnseek.trainer import build_trainer, run_callbacks

    first = specs[0]
    dms = [PlantedDataModule(**s.data, seed=s.seed) for s in specs]
    model = PlantedMLP(dataset=dms[0].dataset, seed=[s.seed for s in specs], **first.model)
    directories = [run_dir(out, s) for s in specs]
    loggers = [TensorBoardLogger(out, name="runs", version=s.name, default_hp_metric=False) for s in specs]
    model.run_loggers = [[logger] for logger in loggers]
    summary = RunSummary(filename=STAGED_SUMMARY, verbose=False, directories=directories)
    callbacks = run_callbacks(summary, pictures=first.pictures, checkpoints=False, progress_lines=False,
                              directories=directories)
    callbacks += [epoch_progress(report, len(specs))] if report is not None else []
    schedule = PerRunPruning([Pruning(**s.pruning) for s in specs]) if first.pruning is not None else None
    trainer = build_trainer(callbacks, schedule=schedule, **first.trainer)
    try:
        trainer.fit(model, datamodule=PerRunData(dms))
    finally:
        for logger in loggers:
            logger.finalize("success")
    return summary.summaries


def execute_batch(specs: list[RunSpec], out: str,
                  report: Callable[[float], None] | None = None) -> list[dict[str, Any]]:
    """Train a batch of stackable runs as one model; if the stack fails, its runs one by one. ``report``
    gets the runs done so far while the stack trains (see :func:`fit_runs`).

    Every run's directory is cleared first and its completed summary written last
    (:func:`plantnseek.sweep.store.complete_run`), after its config, events and pictures.
    """
    from plantnseek.core.errors import RunFailure

    quiet_worker()
    start = time.perf_counter()
    for spec in specs:
        clear_run(run_dir(out, spec))
        write_run_config(run_dir(out, spec), spec)
    try:
        summaries = fit_runs(specs, out, report)
        if len(summaries) != len(specs) or any(s.get("status") != "completed" for s in summaries):
            raise RunFailure("training ended without a completed summary")
    except BaseException as e:  # noqa: BLE001 - recorded, the sweep goes on (unless it is Ctrl-C)
        if len(specs) > 1 and not interrupted(e):
            return [row for spec in specs for row in execute_batch([spec], out)]
        for spec in specs:
            record_failure(run_dir(out, spec), spec, KeyboardInterrupt("interrupted") if interrupted(e) else e,
                           time.perf_counter() - start)
        if interrupted(e):
            reraise_interrupt()
        return [outcome(out, spec) for spec in specs]
    seconds = (time.perf_counter() - start) / len(specs)
    rows = []
    for spec, summary in zip(specs, summaries):
        directory = run_dir(out, spec)
        try:
            complete_run(directory, spec, {**summary, "stacked_runs": len(specs)}, seconds)
        except Exception as e:  # noqa: BLE001 - this run's summary could not be written; the others are fine
            record_failure(directory, spec, e, seconds)
        rows.append(outcome(out, spec))
    return rows


