"""The sweep's worker processes: one batch of runs at a time each, and a sweep that never hangs on them.

A worker that dies (killed, out of memory, a crash in native code) fails exactly the runs of the batch
it held, with the cause, and a fresh worker takes its place. Ctrl-C and SIGTERM stop the sweep at a
point of its own, and every worker is ended and reaped however the sweep ends. Workers also die with
the sweep (PR_SET_PDEATHSIG). What a worker does with a batch: :mod:`plantnseek.sweep.execute`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator

from plantnseek.sweep.execute import execute_batch, interrupted, outcome, quiet_worker
from plantnseek.sweep.spec import RunSpec
from plantnseek.sweep.store import is_done, record_failure, run_dir

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.context import SpawnContext
    from multiprocessing.process import BaseProcess

SIGNAL_POLL_S = 0.2  # the longest the sweep waits before acting on a Ctrl-C or SIGTERM it noted
STOP_WAIT_S = 10.0  # the longest reaping waits for a worker before (again) killing it
RECYCLE_AFTER = 20  # batches per worker process before a fresh one takes over (what a worker accumulates)
PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Ask the kernel to kill this process when its parent dies (Linux), so no worker outlives a sweep."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def worker_init(parent: int) -> None:
    """Ctrl-C is the sweep's to handle; a SIGTERM must end a worker even in training (Lightning's own
    SIGTERM handler only takes note, but calls the one it finds installed)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked from its start (start_worker)
    signal.signal(signal.SIGTERM, die_of_signal)
    die_with_parent(parent)
    quiet_worker()


def die_of_signal(signum: int, frame: Any) -> None:
    """End this process by the signal itself, so the sweep can say which signal killed the worker."""
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    os._exit(128 + signum)  # not reached: the default action of SIGTERM ends the process


def run_local(batches: list[list[RunSpec]], out: str, workers: int, progress: Callable[[list[dict]], None],
              advance: Callable[[str, float], None] | None = None) -> None:
    """Run the batches in worker processes, one batch per worker at a time (or here, with one worker).

    A worker that dies (killed, out of memory, a crash in native code) fails exactly the runs of the
    batch it held, with the cause; a fresh worker takes its place and the sweep goes on. However the
    loop is left (the end, Ctrl-C, SIGTERM, --fail-fast, an error), every worker is ended and reaped.
    ``advance(batch, runs)`` is told, per epoch, how many runs' worth of a batch (its first run's folder) is done.
    """
    advance = advance or (lambda batch, runs: None)
    if workers <= 1 or len(batches) <= 1:
        for batch in batches:
            key = run_dir(out, batch[0])
            progress(execute_batch(batch, out, lambda runs, key=key: advance(key, runs)))
        return
    import multiprocessing as mp
    from multiprocessing.connection import wait

    ctx = mp.get_context("spawn")
    queue, crew = list(reversed(batches)), list[Worker]()
    with signals_noted() as noted:
        try:
            while not noted and (queue or any(w.batch for w in crew)):
                while queue and len(crew) < workers:
                    crew.append(start_worker(ctx))
                    give(crew[-1], queue.pop(), out)
                ready = wait([w.conn for w in crew if w.batch] + [w.process.sentinel for w in crew], SIGNAL_POLL_S)
                for w in [w for w in crew if w.conn in ready or w.process.sentinel in ready]:
                    if tend(w, w.process.sentinel in ready, queue, out, progress, advance):
                        crew.remove(w)
            if noted:
                raise KeyboardInterrupt
        except BaseException:
            reap(crew, kill=True)
            raise
        reap(crew, kill=False)


@dataclasses.dataclass
class Worker:
    """A worker process, the sweep's end of its pipe, and the batch it holds (if any) since when."""

    process: BaseProcess
    conn: Connection
    batch: list[RunSpec] | None = None
    since: float = 0.0
    batches: int = 0


def start_worker(ctx: SpawnContext) -> Worker:
    """A worker starts with Ctrl-C blocked (a mask survives exec), so a Ctrl-C at the terminal while it
    still imports cannot kill it with a traceback; it ignores Ctrl-C from worker_init on."""
    here, there = ctx.Pipe()
    process = ctx.Process(target=worker_main, args=(there, os.getpid()), daemon=True)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        process.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    there.close()  # only the worker holds that end now: its death reads as end-of-file here
    return Worker(process, here)


def give(worker: Worker, batch: list[RunSpec], out: str) -> None:
    """The worker holds the batch from now on: if it dies, even before reading it, the batch fails."""
    worker.batch, worker.since = batch, time.perf_counter()
    try:
        worker.conn.send((batch, out))
    except OSError:
        pass  # it is dead; its sentinel tells the loop


def tend(w: Worker, died: bool, queue: list[list[RunSpec]], out: str,
         progress: Callable[[list[dict]], None], advance: Callable[[str, float], None]) -> bool:
    """Take a worker's messages (progress, then its reply) and give it the next batch, or bury it and fail the
    batch it held; True if it is gone. A Ctrl-C raised in one of its runs stops the sweep."""
    leaving = died
    while w.batch and w.conn.poll():  # progress, a reply, or end-of-file
        try:
            kind, payload = w.conn.recv()
        except (EOFError, OSError):  # it died; its exit status says how
            leaving = True
            break
        if kind == "progress":
            advance(run_dir(out, w.batch[0]), payload)
            continue
        batch, w.batch = w.batch, None
        w.batches += 1
        if kind == "interrupt":
            raise KeyboardInterrupt
        rows = payload if kind == "rows" else lost(batch, out, payload, time.perf_counter() - w.since)
        leaving = leaving or w.batches >= RECYCLE_AFTER
        if queue and not leaving:
            give(w, queue.pop(), out)
        progress(rows)
        break
    if leaving:
        reap([w], kill=False)
        if w.batch:
            progress(lost(w.batch, out, death_cause(w.process.exitcode), time.perf_counter() - w.since))
    return leaving


def worker_main(conn: Connection, parent: int) -> None:
    """A worker's life: batches from the sweep until it closes the pipe. Every outcome is a reply (rows,
    an interrupt, an error), so a batch ends without one only when the worker dies."""
    worker_init(parent)

    def report(runs: float) -> None:  # the sweep's progress while a stack trains; a closed pipe is the sweep's end
        with contextlib.suppress(OSError):
            conn.send(("progress", runs))

    while True:
        try:
            batch, out = conn.recv()
        except EOFError:
            return
        try:
            reply: tuple[str, Any] = ("rows", execute_batch(batch, out, report))
        except BaseException as e:  # noqa: BLE001 - the sweep decides
            reply = ("interrupt", None) if interrupted(e) else ("error", f"{type(e).__name__}: {e}")
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # reraise_interrupt gave Ctrl-C back; it is the sweep's
        conn.send(reply)


def lost(batch: list[RunSpec], out: str, cause: str, seconds: float) -> list[dict[str, Any]]:
    """A batch whose worker died, or failed outside any run: each run it did not complete fails with the cause."""
    from plantnseek.core.errors import RunFailure

    for spec in batch:
        if not is_done(out, spec):
            record_failure(run_dir(out, spec), spec, RunFailure(cause), seconds)
    return [outcome(out, spec) for spec in batch]


def death_cause(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = {int(s): s.name for s in signal.Signals}.get(-exitcode, "a real-time signal")
        return f"worker killed by signal {-exitcode} ({name})"
    return f"worker exited with code {exitcode}"


def reap(crew: list[Worker], kill: bool) -> None:
    """End every worker and wait for it, so none is left running or a zombie: ``kill`` or not, a worker
    that has not ended STOP_WAIT_S after its pipe closed (an idle worker's cue to leave) is killed."""
    for w in crew:
        w.conn.close()
        if kill:
            w.process.kill()
    deadline = time.monotonic() + STOP_WAIT_S
    for w in crew:
        w.process.join(max(0.0, deadline - time.monotonic()))
        if w.process.exitcode is None:
            w.process.kill()
            w.process.join(STOP_WAIT_S)


@contextlib.contextmanager
def signals_noted() -> Iterator[list[int]]:
    """While workers run, Ctrl-C and SIGTERM are noted, not raised: the loop stops at a point of its own,
    and a second Ctrl-C while the workers are being reaped cannot cut that short and leave one running."""
    noted: list[int] = []
    main = threading.current_thread() is threading.main_thread()  # only it may set handlers
    watched = [s for s in (signal.SIGINT, signal.SIGTERM) if main and signal.getsignal(s) is not signal.SIG_IGN]
    previous = {s: signal.signal(s, lambda signum, frame: noted.append(signum)) for s in watched}
    try:
        yield noted
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)


def run_submitit(batches: list[list[RunSpec]], out: str, workers: int, progress: Callable[[list[dict]], None],
                 advance: Callable[[str, float], None] | None = None) -> None:
    """The batches as a submitit job array; progress per finished job (``advance`` is not used: jobs run apart)."""
    import submitit

    executor = submitit.AutoExecutor(folder=os.path.join(out, "submitit"))
    executor.update_parameters(timeout_min=24 * 60, slurm_array_parallelism=max(workers, 1), cpus_per_task=1)
    jobs = executor.map_array(execute_batch, batches, [out] * len(batches))
    for job in submitit.helpers.as_completed(jobs):
        try:
            progress(job.result())
        except Exception as e:  # noqa: BLE001 - a job that died outside execute_batch()
            progress([{"status": "failed", "error": f"{type(e).__name__}: {e}"}])
