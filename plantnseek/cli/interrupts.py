"""How a ``fit`` or ``main`` run that ends early is reported, and what it leaves.

Ctrl-C: one line saying what was saved and the command that resumes it (exit 130); a run whose summary
already says ``completed`` (Ctrl-C while its pictures were drawn) stays completed and is not offered a
resume. A refusal (bad input found after the run folder was made) leaves nothing: no folder, no summary.
"""
from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
from typing import TYPE_CHECKING, Iterator

from plantnseek.core.errors import Interrupted, UsageError, find_cause, lightning_refusal

if TYPE_CHECKING:
    import pytorch_lightning as pl


def restore_sigint() -> None:
    """Lightning ignores further Ctrl-C while it shuts down; give the process its usual handler back."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


def is_refusal(error: BaseException) -> bool:
    """Bad input, as the command line reports it (exit code 2): a UsageError, also wrapped, or a trainer
    setting Lightning refuses."""
    return find_cause(error, UsageError) is not None or lightning_refusal(error)


@contextlib.contextmanager
def refusal_leaves_nothing(run_dir: str | None) -> Iterator[None]:
    """If a refusal ends the run, remove ``run_dir`` and the empty parents this run created.

    Only folders that did not exist when the run started go (and parents only while empty), so an
    existing folder, or another run's, is never touched.
    """
    created: list[str] = []
    path = os.path.abspath(run_dir) if run_dir else None
    while path and not os.path.exists(path):
        created.append(path)
        path = os.path.dirname(path)
    try:
        yield
    except BaseException as e:
        if created and is_refusal(e):
            shutil.rmtree(created[0], ignore_errors=True)
            for parent in created[1:]:
                with contextlib.suppress(OSError):
                    os.rmdir(parent)  # only if empty
        raise


def read_status(summary: str) -> tuple[str | None, list[str]]:
    """A summary's status and the pictures it lists as missing (None if there is no readable summary)."""
    try:
        with open(summary) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None, []
    return data.get("status"), list(data.get("pictures_missing") or [])


def interrupted_message(trainer: pl.Trainer, command: str = "plantnseek fit") -> Interrupted:
    run = trainer.log_dir or trainer.default_root_dir
    config = os.path.join(run, "config.yaml")
    summary = os.path.join(run, "summary.json")
    status, missing = read_status(summary)
    if status == "completed":  # Ctrl-C after the run's result was written: nothing to resume
        pictures = f"; pictures not drawn: {', '.join(missing)}" if missing else ""
        return Interrupted(f"interrupted after the run completed: {summary} has its results "
                           f"(status completed){pictures}")
    ckpt = next((cb.last_model_path for cb in trainer.checkpoint_callbacks
                 if getattr(cb, "last_model_path", "") and os.path.exists(cb.last_model_path)), "")
    saved = f"{summary} (status {status})" if status else "no summary"
    if ckpt:
        return Interrupted(f"interrupted in epoch {trainer.current_epoch}; saved {ckpt} and {saved}; resume with: "
                           f"{command} --config {shlex.quote(config)} --ckpt_path {shlex.quote(ckpt)}")
    return Interrupted(f"interrupted in epoch {trainer.current_epoch} before the first checkpoint; saved {saved}; "
                       f"start again with: {command} --config {shlex.quote(config)}")
