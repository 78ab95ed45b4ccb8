"""Pruning a stack of runs: each run with its own pruner, sparsity and scope, on one shared schedule.

Runs that share a task, an architecture, data sizes, optimizer settings and a schedule, but differ in
seed, pruner or sparsity, train together as one :class:`~plantnseek.module.PlantedMLP` stack. Scoring and
masking stay per run, through each run's own :class:`~plantnseek.callbacks.Pruning` on its
:class:`~plantnseek.run.Run` view (which aliases the stack, so there is nothing to copy back).
"""
from __future__ import annotations

from typing import Any, Sequence

import pytorch_lightning as pl
import torch

from plantnseek.callbacks.pruning import Pruning


class StackedPruning(Pruning):
    """Runs each run's own :class:`Pruning` on its run of the stack.

    The schedule (levels, epochs, rewinding, optimizer reset) is the shared one, inherited from Pruning.
    """

    def __init__(self, prunings: Sequence[Pruning]) -> None:
        first = prunings[0]
        super().__init__(pruner=first.scorer, sparsity=first.sparsity, compression=first.compression,
                         levels=first.levels, pre_epochs=first.pre_epochs, post_epochs=first.post_epochs,
                         rewind=first.rewind)
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

    def prune_level(self, pl_module: pl.LightningModule, level: int, datamodule: Any = None,
                    trainer: pl.Trainer | None = None) -> dict[str, Any]:
        for r, (p, run) in enumerate(zip(self.prunings, pl_module.runs)):
            event = p.prune_level(run, level, datamodule.member(r) if datamodule is not None else None)
            p._log_event(pl_module.loggers_of(r), event)
        self.events.append({"level": level + 1})
        return self.events[-1]

    def record_pruned(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Each run's ``pruned`` results: its network as the last pruning step (and rewind) left it."""
        for r, (p, run) in enumerate(zip(self.prunings, pl_module.runs)):
            p.measure_pruned(run, trainer.datamodule.member(r).test_dataloader())
            pl_module.log_run(r, {f"test_pruned/{k}": v for k, v in p.pruned.items()}, step=0)

    @torch.no_grad()
    def _reinitialize(self, pl_module: pl.LightningModule) -> None:
        for p, run in zip(self.prunings, pl_module.runs):
            if p.reinitialize:
                p._reinitialize(run)


def fit_stacked(model: pl.LightningModule, datamodules: Sequence[Any], prunings: Sequence[Pruning] | None,
                trainer_kwargs: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Train a stack (``PlantedMLP`` with a list of seeds) without writing files; each run's summary."""
    from plantnseek.callbacks.summary import build_summary, ticket_info
    from plantnseek.data import StackedData

    tickets = [ticket_info(run, *dm.split("test")) for run, dm in zip(model.runs, datamodules)]
    initial = [run.evaluate(dm.test_dataloader()) for run, dm in zip(model.runs, datamodules)]
    from plantnseek.trainer import build_trainer

    trainer = build_trainer(schedule=StackedPruning(prunings) if prunings else None, **(trainer_kwargs or {}))
    trainer.fit(model, datamodule=StackedData(list(datamodules)))
    return [build_summary(run, p if prunings else None, t, i, trainer.current_epoch, "completed")
            for run, p, t, i in zip(model.runs, prunings or [None] * len(model.runs), tickets, initial)]
