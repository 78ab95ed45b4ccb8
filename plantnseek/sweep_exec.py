"""Running a sweep's runs: one at a time or stacked, in worker processes that die with the sweep.

Every run clears what an earlier attempt left, writes its config, events and pictures, and only then
its completed summary (:func:`plantnseek.sweep_store.complete_run`). A failing run is recorded and the
sweep goes on; Ctrl-C stops the sweep (it is not a failure of the run it interrupted).
"""
from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
from typing import Any, Callable

from plantnseek.lean_import import lean_lightning_import
from plantnseek.sweep_spec import DENSE_EPOCHS, RunSpec
from plantnseek.sweep_store import STAGED_SUMMARY, clear_run, complete_run, read_summary, record_failure, run_dir
from plantnseek.tuning import available_memory  # noqa: F401 - also patched in tests

SIGNAL_POLL_S = 0.2  # an untimed wait for results would never see a Ctrl-C delivered to another thread
WORKER_MEMORY = 400 * 2**20  # what one worker process needs, about (measured ~320 MB)
PR_SET_PDEATHSIG = 1


def quiet_worker() -> None:
    """One thread per worker process (the workers are the parallelism) and no Lightning chatter."""
    import logging
    import warnings

    import torch

    from plantnseek.tuning import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    for name in ("pytorch_lightning", "pytorch_lightning.utilities.rank_zero", "lightning_fabric",
                 "lightning_fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.ERROR)


def die_with_parent(parent: int) -> None:
    """Ask the kernel to kill this process when its parent dies (Linux), so no worker outlives a sweep."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def worker_init(parent: int) -> None:
    """Ctrl-C is the sweep's to handle; the SIGTERM by which it stops the pool must end a worker even in
    training (Lightning's own SIGTERM handler only takes note, but calls the one it finds installed)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(128 + signum))
    die_with_parent(parent)
    lean_lightning_import()
    quiet_worker()


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def cap_workers(requested: int) -> tuple[int, str | None]:
    """At most one worker per core and per ~400 MB of available memory; the message says why, if capped."""
    cores, memory = available_cores(), available_memory()
    by_memory = max(1, memory // WORKER_MEMORY) if memory is not None else requested
    workers = max(1, min(requested, cores, by_memory))
    if workers == requested:
        return workers, None
    memory_text = f"{memory / 2**30:.1f} GB available memory" if memory is not None else "unknown memory"
    return workers, (f"--workers {requested} capped to {workers}: {cores} core(s), {memory_text} "
                     f"at ~{WORKER_MEMORY // 2**20} MB per worker")


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
    from plantnseek.runconfig import fit_config, write_config

    trainer = dict(spec.trainer)
    if spec.pruning is None:
        trainer.setdefault("max_epochs", DENSE_EPOCHS)
    write_config(directory, fit_config(spec.seed, spec.data, spec.model, spec.pruning, trainer))


def execute(spec: RunSpec, out: str) -> dict[str, Any]:
    """Train one run of the grid in this process (a stack of one); a failure is recorded, not raised."""
    return execute_batch([spec], out)[0]


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


def fit_runs(specs: list[RunSpec], out: str) -> list[dict[str, Any]]:
    """Train stackable runs as one model (a single run is a stack of one) with the callbacks of ``fit``.

    Each run writes into its own directory what a ``fit`` run writes: TensorBoard scalars, images and
    HParams, pictures, and its summary (staged: the sweep completes it last); sweeps write no checkpoints.
    Returns each run's summary.
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
    summary = RunSummary(filename=STAGED_SUMMARY, verbose=False, directories=directories)
    callbacks: list[Any] = []
    trainer_kw = {"max_epochs": DENSE_EPOCHS, **first.trainer}
    if first.pruning is not None:
        callbacks.append(StackedPruning([Pruning(**s.pruning) for s in specs]))
        trainer_kw["max_epochs"] = callbacks[0].total_epochs
    callbacks += [summary] + ([Pictures(directories=directories)] if first.pictures else [])
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, callbacks=callbacks, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0, **trainer_kw)
    try:
        trainer.fit(model, datamodule=StackedData(dms))
    finally:
        for logger in loggers:
            logger.finalize("success")
    return summary.summaries


def execute_batch(specs: list[RunSpec], out: str) -> list[dict[str, Any]]:
    """Train a batch of stackable runs as one model; if the stack fails, its runs one by one.

    Every run's directory is cleared first and its completed summary written last
    (:func:`plantnseek.sweep_store.complete_run`), after its config, events and pictures.
    """
    from plantnseek.errors import RunFailure

    quiet_worker()
    start = time.perf_counter()
    for spec in specs:
        clear_run(run_dir(out, spec))
        write_run_config(run_dir(out, spec), spec)
    try:
        summaries = fit_runs(specs, out)
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


def run_local(batches: list[list[RunSpec]], out: str, workers: int, progress: Callable[[list[dict]], None]) -> None:
    if workers <= 1 or len(batches) <= 1:
        for batch in batches:
            progress(execute_batch(batch, out))
        return
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    # Leaving the block (normally, by an exception or by Ctrl-C) terminates the workers.
    with ctx.Pool(min(workers, len(batches)), initializer=worker_init, initargs=(os.getpid(),),
                  maxtasksperchild=20) as pool:
        results = pool.imap_unordered(_execute_star, [(batch, out) for batch in batches])
        try:
            while True:
                try:
                    rows = results.next(timeout=SIGNAL_POLL_S)
                except mp.TimeoutError:
                    continue  # the wait wakes: a Ctrl-C the kernel gave one of the pool's threads is raised now
                except StopIteration:
                    break
                progress(rows)
        except BaseException:
            # Stopped (Ctrl-C, kill, an error): kill the workers outright. The pool's own terminate() sends
            # SIGTERM and waits, and a worker whose main thread waits in a call that a signal delivered to
            # another of its threads does not interrupt would keep the sweep waiting forever.
            for worker in getattr(pool, "_pool", []):
                worker.kill()
            raise


def _execute_star(args: tuple[list[RunSpec], str]) -> list[dict[str, Any]]:
    return execute_batch(*args)


def run_submitit(batches: list[list[RunSpec]], out: str, workers: int, progress: Callable[[list[dict]], None]) -> None:
    import submitit

    executor = submitit.AutoExecutor(folder=os.path.join(out, "submitit"))
    executor.update_parameters(timeout_min=24 * 60, slurm_array_parallelism=max(workers, 1), cpus_per_task=1)
    jobs = executor.map_array(execute_batch, batches, [out] * len(batches))
    for job in submitit.helpers.as_completed(jobs):
        try:
            progress(job.result())
        except Exception as e:  # noqa: BLE001 - a job that died outside execute_batch()
            progress([{"status": "failed", "error": f"{type(e).__name__}: {e}"}])
