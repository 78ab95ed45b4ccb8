"""The one place plantnseek builds a Lightning Trainer, and assembles the callbacks of a run.

``fit``/``validate``/``test`` (LightningCLI builds its own Trainer from :func:`cli_defaults`), ``main``,
sweeps, stacks trained from Python and the validation of a sweep's trainer settings all start here, so
a run has the same settings and callbacks whichever command started it. It sits above ``callbacks/``
(it assembles them) and below the commands and sweeps that use it.
"""
from __future__ import annotations

import functools
import inspect
import sys
from typing import Any, Sequence

import pytorch_lightning as pl

from plantnseek.core.runconfig import DENSE_EPOCHS

# Every run: the CPU, one process (runs are stacked, sweeps use processes), no sanity steps (the first
# evaluation is the run's own), no model table (it says little here: "Total Flops 0").
BASE = {"accelerator": "cpu", "devices": 1, "num_sanity_val_steps": 0, "enable_model_summary": False}


@functools.lru_cache(maxsize=None)
def defaults(section: str) -> tuple[tuple[str, Any], ...]:
    """The constructor defaults of the class that takes a config section's keys (``data``, ``model`` or
    ``pruning``): how sweeps and the memory estimate resolve a run's settings as its command would."""
    from plantnseek.callbacks.pruning import Pruning
    from plantnseek.data import PlantedDataModule
    from plantnseek.module import PlantedMLP

    cls = {"data": PlantedDataModule, "model": PlantedMLP, "pruning": Pruning}[section]
    return tuple((k, p.default) for k, p in inspect.signature(cls.__init__).parameters.items()
                 if p.default is not inspect.Parameter.empty and k not in ("seed", "dataset" if section == "model" else ""))


def run_callbacks(summary: Any = None, pictures: bool = True, checkpoints: bool = True,
                  progress_lines: bool | None = None, directories: list[str] | None = None) -> list[pl.Callback]:
    """The callbacks every run has: its summary, pictures, checkpoints (``fit``/``main``), and a line per
    epoch where output is not a terminal (a progress bar there is carriage-return noise)."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    from plantnseek.callbacks import Pictures, RunSummary
    from plantnseek.callbacks.progress import ProgressLines

    callbacks: list[pl.Callback] = [summary if summary is not None else RunSummary()]
    callbacks += [Pictures(directories=directories)] if pictures else []
    callbacks += [ModelCheckpoint(save_last="link")] if checkpoints else []
    lines = not sys.stdout.isatty() if progress_lines is None else progress_lines
    return callbacks + ([ProgressLines()] if lines else [])


def cli_defaults() -> dict[str, Any]:
    """LightningCLI's trainer defaults: the base settings and a run's callbacks."""
    return {**BASE, "enable_progress_bar": sys.stdout.isatty(), "callbacks": run_callbacks()}


def build_trainer(callbacks: list[Any] = (), schedule: Any = None, logger: Any = False, **settings: Any) -> pl.Trainer:
    """A Trainer with the base settings and ``settings`` on top (a sweep's or the user's ``trainer`` keys).

    ``schedule``, a Pruning callback (or a stack's), comes first among the callbacks and sets the epoch
    count (levels x pre_epochs + post_epochs); without one, ``max_epochs`` defaults to DENSE_EPOCHS.
    Checkpoints are written exactly when a ModelCheckpoint is among the callbacks.
    """
    from pytorch_lightning.callbacks import ModelCheckpoint

    callbacks = ([schedule] if schedule is not None else []) + list(callbacks)
    kw: dict[str, Any] = {**BASE, "max_epochs": DENSE_EPOCHS, "enable_progress_bar": False, **settings}
    if schedule is not None:
        kw["max_epochs"] = schedule.total_epochs
    kw["enable_checkpointing"] = any(isinstance(c, ModelCheckpoint) for c in callbacks)
    return pl.Trainer(logger=logger, callbacks=callbacks, **kw)


def fit_stacked(model: pl.LightningModule, datamodules: Sequence[Any], prunings: Sequence[Any] | None,
                trainer_kwargs: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Train a stack (``PlantedMLP`` with a list of seeds) without writing files; each run's summary."""
    from plantnseek.callbacks.per_run import PerRunPruning
    from plantnseek.callbacks.summary import build_summary, ticket_info
    from plantnseek.data import PerRunData

    tickets = [ticket_info(run, *dm.split("test")) for run, dm in zip(model.runs, datamodules)]
    initial = [run.evaluate(dm.test_dataloader()) for run, dm in zip(model.runs, datamodules)]
    trainer = build_trainer(schedule=PerRunPruning(prunings) if prunings else None, **(trainer_kwargs or {}))
    trainer.fit(model, datamodule=PerRunData(list(datamodules)))
    return [build_summary(run, p if prunings else None, t, i, trainer.current_epoch, "completed")
            for run, p, t, i in zip(model.runs, prunings or [None] * len(model.runs), tickets, initial)]
