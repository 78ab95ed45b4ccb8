"""What plantnseek's callbacks and commands look up on a trainer: the folder a run writes to, and its
Pruning callback (one at most: two would prune twice on one schedule)."""
from __future__ import annotations

import pytorch_lightning as pl

from plantnseek.core.errors import UsageError


def log_dir_of(trainer: pl.Trainer) -> str:
    return trainer.log_dir or trainer.default_root_dir


def find_pruning(trainer: pl.Trainer):
    """The trainer's Pruning callback (or None); two of them would prune twice with one schedule, so refuse."""
    from plantnseek.callbacks.pruning import Pruning

    found = [c for c in trainer.callbacks if isinstance(c, Pruning)]
    if len(found) > 1:
        raise UsageError(f"the Pruning callback is given {len(found)} times in trainer.callbacks "
                         f"(pruners {', '.join(c.scorer.name for c in found)}); give it once")
    return found[0] if found else None


def pruning_of(trainer: pl.Trainer, r: int):
    """The Pruning settings of run ``r`` (a stack's runs each have their own), or None."""
    pruning = find_pruning(trainer)
    return pruning.of_run(r) if pruning is not None else None
