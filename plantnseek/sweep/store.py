"""A sweep's folder: run directories, what counts as done, atomic writes, and the folder lock.

A run is done when its ``summary.json`` says ``completed`` and carries the identity of the run's current
configuration. That summary is written last, atomically, after every other artifact of the run, so a
run killed half-way is never mistaken for a finished one; a run that is not done is cleared and redone.
"""
from __future__ import annotations

import collections
import fcntl
import json
import os
import shlex
import shutil
from typing import Any

from plantnseek.core.errors import UsageError
from plantnseek.sweep.identity import changes
from plantnseek.sweep.spec import RunSpec

LOCK_NAME = ".lock"
STAGED_SUMMARY = "summary.partial.json"  # a single run's own summary, before the sweep completes it


def run_dir(out: str, spec: RunSpec) -> str:
    return os.path.join(out, "runs", spec.name)


def read_summary(out: str, spec: RunSpec) -> dict[str, Any] | None:
    try:
        with open(os.path.join(run_dir(out, spec), "summary.json")) as f:
            summary = json.load(f)
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def current(summary: dict[str, Any] | None, spec: RunSpec) -> bool:
    """Whether a stored summary was produced under the spec's configuration."""
    return bool(summary) and (summary.get("identity") or {}).get("hash") == spec.identity["hash"]


def is_done(out: str, spec: RunSpec) -> bool:
    summary = read_summary(out, spec)
    return current(summary, spec) and summary.get("status") == "completed"


def todo_report(out: str, specs: list[RunSpec]) -> tuple[list[RunSpec], list[str]]:
    """The runs to (re)do, and one line per reason a stored run is redone."""
    todo: list[RunSpec] = []
    changed: collections.Counter[str] = collections.Counter()
    n_changed = n_failed = n_partial = 0
    for spec in specs:
        spec.identity  # noqa: B018 - now, before any run: digests once per sweep, of the code as it starts
        summary = read_summary(out, spec)
        if current(summary, spec) and summary.get("status") == "completed":
            continue
        todo.append(spec)
        if summary is None:
            n_partial += os.path.isdir(run_dir(out, spec))
        elif not current(summary, spec):
            n_changed += 1
            changed.update(changes(summary.get("identity") or {}, spec.identity))
        elif summary.get("status") in ("failed", "interrupted"):
            n_failed += 1
        else:
            n_partial += 1
    lines = []
    if n_changed:
        shown = [c for c, _ in changed.most_common(4)] + ([f"{len(changed) - 4} more"] if len(changed) > 4 else [])
        lines.append(f"{n_changed} run(s) changed since the last sweep ({', '.join(shown)}): re-running them")
    if n_failed:
        lines.append(f"{n_failed} run(s) failed or were interrupted last time: retrying them")
    if n_partial:
        lines.append(f"{n_partial} run(s) were left incomplete (no completed summary): redoing them")
    return todo, lines


def clear_run(directory: str) -> None:
    """Remove what an earlier, unfinished or outdated attempt left, so nothing of it mixes in."""
    if os.path.lexists(directory):
        shutil.rmtree(directory) if os.path.isdir(directory) and not os.path.islink(directory) else os.remove(directory)


def complete_run(directory: str, spec: RunSpec, summary: dict[str, Any], seconds: float) -> None:
    """The last write of a run: its summary, with identity and time, atomically (``completed`` only now)."""
    from plantnseek.core.files import write_summary

    write_summary(directory, {**summary, "seconds": seconds, "identity": spec.identity})
    staged = os.path.join(directory, STAGED_SUMMARY)
    if os.path.exists(staged):
        os.remove(staged)


def record_failure(directory: str, spec: RunSpec, error: BaseException, seconds: float, status: str = "") -> None:
    """A failed run's summary: what the run itself recorded (if anything), its status and the reason;
    a ``status`` given (--fail-fast's "not run") replaces what the run recorded."""
    from plantnseek.callbacks.summary import ENDED_EARLY
    from plantnseek.core.files import write_summary

    summary: dict[str, Any] = {}
    for name in (STAGED_SUMMARY, "summary.json"):
        try:
            with open(os.path.join(directory, name)) as f:
                summary = json.load(f)
            break
        except (OSError, ValueError):
            continue
    if status or summary.get("status") not in ("failed", "interrupted"):
        status = status or ("interrupted" if isinstance(error, KeyboardInterrupt) else "failed")
        summary = {"status": status, "dataset": spec.data.get("dataset")}
    if summary.get("reason") == ENDED_EARLY:  # the run's provisional note: the sweep knows the cause
        del summary["reason"]
    summary.setdefault("reason", f"{type(error).__name__}: {error}")
    write_summary(directory, {**summary, "seconds": seconds, "identity": spec.identity})


def check_out(out: str) -> None:
    """``--out`` must be (or become) a writable folder; checked without writing anything."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out!r} is a file; give a folder")
    parent = os.path.abspath(out)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UsageError(f"--out {out!r} cannot be created: {parent!r} is a file")
    if not os.access(parent, os.W_OK | os.X_OK) or not writable(parent):
        raise UsageError(f"--out {out!r} is not writable ({parent!r} does not allow creating files)")


def writable(folder: str) -> bool:
    """Really try (permissions alone say nothing for root or read-only file systems); leaves nothing."""
    import tempfile

    try:
        tempfile.TemporaryDirectory(dir=folder).cleanup()
    except OSError:
        return False
    return True


class OutLock:
    """An exclusive lock on ``<out>/.lock`` for the whole sweep; the kernel drops it when the process dies."""

    def __init__(self, out: str, argv: list[str]) -> None:
        self.path = os.path.join(out, LOCK_NAME)
        self.command = resume_command(argv)
        self.fd: int | None = None

    def __enter__(self) -> "OutLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise UsageError(f"another sweep is writing to {os.path.dirname(self.path) or '.'} (held by {holder}); "
                             "wait for it to finish or give another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: {self.command}\n".encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)  # closing drops the lock
            self.fd = None


def resume_command(argv: list[str]) -> str:
    return shlex.join(["plantnseek", "sweep", *argv])
