"""Ctrl-C during a run: one line saying what was saved and the command that resumes it (exit 130)."""
from __future__ import annotations

import os
import shlex
import signal
from typing import TYPE_CHECKING

from plantnseek.errors import Interrupted

if TYPE_CHECKING:
    import pytorch_lightning as pl


def restore_sigint() -> None:
    """Lightning ignores further Ctrl-C while it shuts down; give the process its usual handler back."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


def interrupted_message(trainer: pl.Trainer, command: str = "plantnseek fit") -> Interrupted:
    run = trainer.log_dir or trainer.default_root_dir
    config = os.path.join(run, "config.yaml")
    ckpt = next((cb.last_model_path for cb in trainer.checkpoint_callbacks
                 if getattr(cb, "last_model_path", "") and os.path.exists(cb.last_model_path)), "")
    summary = os.path.join(run, "summary.json")
    saved = f"{summary} (status interrupted)" if os.path.exists(summary) else "no summary"
    if ckpt:
        return Interrupted(f"interrupted in epoch {trainer.current_epoch}; saved {ckpt} and {saved}; resume with: "
                           f"{command} --config {shlex.quote(config)} --ckpt_path {shlex.quote(ckpt)}")
    return Interrupted(f"interrupted in epoch {trainer.current_epoch} before the first checkpoint; saved {saved}; "
                       f"start again with: {command} --config {shlex.quote(config)}")
