"""Pruning a stack of runs: each run with its own pruner, sparsity and scope, on one shared schedule.

Runs that share a task, an architecture, data sizes, optimizer settings and a schedule, but differ in
seed, pruner or sparsity, train together as one :class:`~plantnseek.module.PlantedMLP` stack. Scoring and
masking stay per run, through each run's own :class:`~plantnseek.callbacks.Pruning` on its
:class:`~plantnseek.core.run.Run` view (which aliases the stack, so there is nothing to copy back).
"""
from __future__ import annotations

from typing import Sequence

import pytorch_lightning as pl

from plantnseek.callbacks.pruning import Pruning


class PerRunPruning(Pruning):
    """Runs each run's own :class:`Pruning` on its run of the stack.

    The schedule (levels, epochs, rewinding, optimizer reset) is the shared one, inherited from Pruning.
    """

    def __init__(self, prunings: Sequence[Pruning]) -> None:
        first = prunings[0]
        super().__init__(pruner=first.scorer, sparsity=first.sparsity, compression=first.compression,
                         levels=first.levels, pre_epochs=first.pre_epochs, post_epochs=first.post_epochs,
                         rewind=first.rewind, rewind_epoch=first.rewind_epoch, lr_rewind=first.lr_rewind)
        self.prunings = list(prunings)
        self.reinitialize = any(p.reinitialize for p in self.prunings)

    def of_run(self, r: int) -> Pruning:
        return self.prunings[r]

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        for p, run in zip(self.prunings, pl_module.runs):
            p.density = p.target_density(run)
        trainer.fit_loop.max_epochs = self.total_epochs

    def prune_model(self, pl_module: pl.LightningModule, level: int, trainer: pl.Trainer) -> None:
        datamodule = trainer.datamodule
        for r, (p, run) in enumerate(zip(self.prunings, pl_module.runs)):
            event = p.prune_level(run, level, datamodule.member(r) if datamodule is not None else None)
            p._log_event(pl_module.loggers_of(r), event)
        self.events.append({"level": level + 1})

    def record_pruned(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Each run's ``pruned`` results: its network as the last pruning step (and rewind) left it."""
        for r, (p, run) in enumerate(zip(self.prunings, pl_module.runs)):
            p.measure_pruned(run, trainer.datamodule.member(r).test_dataloader())
            pl_module.log_run(r, {f"test_pruned/{k}": v for k, v in p.pruned.items()}, step=0)

    def reinitialize_model(self, pl_module: pl.LightningModule) -> None:
        for p, run in zip(self.prunings, pl_module.runs):
            if p.reinitialize:
                p._reinitialize(run)
