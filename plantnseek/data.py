"""Planted datasets as a LightningDataModule (the drawing itself, without Lightning: :mod:`plantnseek.core.sampling`).

Training order is a fresh permutation per epoch, derived from (seed, epoch) so that a resumed run sees
the same order as an uninterrupted one.
"""
from __future__ import annotations

from typing import Any, Callable

import pytorch_lightning as pl
import torch
from torch import Tensor

from plantnseek.engine_choice import steps_observed
from plantnseek.core.errors import UsageError, check_number, check_seed
from plantnseek.core.registry import CheckedTask, get_task
from plantnseek.core.sampling import (N_SAMPLES, PRUNE_RATIO, TRAIN_FRACTION, TensorBatches, make_splits, split_sizes,
                                 validate_data_args)

class PlantedDataModule(pl.LightningDataModule):
    """Train/test/pruning data of one planted task.

    Args:
        dataset: task: ``circle``, ``relu``, ``helix``, a ``module.Class`` task or ``run:<run dir or
            checkpoint>`` (the network a finished run found, as the ticket).
        noise: circle: probability that a label moves to the neighbouring class; relu/helix: std of the
            Gaussian noise on the targets (a user task defines its own; run: tasks follow their source's).
        n_samples: samples drawn in total, split into train and test.
        train_fraction: share of samples used for training (the rest is the test set).
        train_batch_size: training batch size.
        test_batch_size: evaluation batch size.
        prune_dataset_ratio: the pruning subset has ``ratio x 4`` training samples (as the reference).
        prune_batch_size: batch size when scoring on the pruning subset.
        seed: fixes the data, the training order and the pruning subset.
        batches_per_step: optimizer steps grouped into one Lightning batch where no setting or callback
            counts or watches batches (see :func:`steps_observed`); each is still one step of
            ``train_batch_size`` samples and counts in ``trainer.global_step``: only speed changes.
    """

    def __init__(
        self,
        dataset: str = "circle",
        noise: float = 0.01,
        n_samples: int = N_SAMPLES,
        train_fraction: float = TRAIN_FRACTION,
        train_batch_size: int = 64,
        test_batch_size: int = 256,
        prune_dataset_ratio: int = PRUNE_RATIO,
        prune_batch_size: int = 256,
        seed: int = 1,
        batches_per_step: int = 32,
    ) -> None:
        super().__init__()
        self.task: CheckedTask = get_task(dataset)
        check_seed(seed)
        check_number("batches_per_step", batches_per_step, integer=True)
        validate_data_args(self.task, noise, n_samples, train_fraction, train_batch_size, test_batch_size,
                           prune_dataset_ratio, prune_batch_size)
        if batches_per_step < 1:
            raise UsageError(f"batches_per_step {batches_per_step} is invalid; it must be at least 1")
        self.save_hyperparameters(logger=False)  # logged once, with the outcome, at the end of the run
        self.dataset, self.noise, self.seed = dataset, noise, seed
        self.n_train, self.n_prune = split_sizes(n_samples, train_fraction, prune_dataset_ratio)
        self._tensors: dict[str, tuple[Tensor, Tensor]] | None = None

    def setup(self, stage: str | None = None) -> None:
        if self._tensors is None:
            self._tensors = make_splits(self.task, self.hparams.n_samples, self.n_train, self.n_prune,
                                        self.noise, self.seed)

    def split(self, name: str) -> tuple[Tensor, Tensor]:
        """``(x, y)`` of ``train``, ``test`` or ``prune``."""
        self.setup()
        assert self._tensors is not None
        return self._tensors[name]

    def _epoch(self) -> int:
        trainer = getattr(self, "trainer", None)
        return trainer.current_epoch if trainer is not None else 0

    def member(self, r: int) -> "PlantedDataModule":
        """The data of run ``r`` (this module is the data of one run)."""
        return self

    def train_dataloader(self) -> TensorBatches:
        return stacked_train_batches([self], self._epoch, getattr(self, "trainer", None))

    def val_dataloader(self) -> TensorBatches:
        return self.test_dataloader()

    def test_dataloader(self) -> TensorBatches:
        x, y = self.split("test")
        return TensorBatches(x, y, self.hparams.test_batch_size)

    def prune_dataloader(self) -> TensorBatches:
        x, y = self.split("prune")
        return TensorBatches(x, y, self.hparams.prune_batch_size)


def stacked_train_batches(members: list[PlantedDataModule], epoch_fn: Callable[[], int],
                          trainer: pl.Trainer | None = None) -> TensorBatches:
    """The training batches of runs trained as one stack, ``[R, B, ...]``, each run in its own order;
    grouped ``batches_per_step`` to a Lightning batch unless :func:`steps_observed` says otherwise."""
    xs, ys = zip(*(dm.split("train") for dm in members))
    first = members[0].hparams
    group = 1 if steps_observed(trainer) else first.batches_per_step
    return TensorBatches(torch.stack(xs), torch.stack(ys), first.train_batch_size, shuffle=True,
                         seed=[dm.seed for dm in members], epoch_fn=epoch_fn, group=group)


class PerRunData(pl.LightningDataModule):
    """The data of runs trained as one stack: their own data modules, stacked for training and testing."""

    def __init__(self, members: list[PlantedDataModule]) -> None:
        super().__init__()
        self.members = list(members)

    def member(self, r: int) -> PlantedDataModule:
        return self.members[r]

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def train_dataloader(self) -> TensorBatches:
        return stacked_train_batches(self.members, self._epoch, self.trainer)

    def val_dataloader(self) -> TensorBatches:
        xs, ys = zip(*(dm.split("test") for dm in self.members))
        return TensorBatches(torch.stack(xs), torch.stack(ys), self.members[0].hparams.test_batch_size,
                             seed=[dm.seed for dm in self.members])

    def test_dataloader(self) -> TensorBatches:
        return self.val_dataloader()


def data_settings(hp: Any) -> dict[str, Any]:
    """The data module's hyperparameters keyed as in a fit config (dataset and seed are the model's keys).

    ``batches_per_step`` is included: it does not change the mathematics, but a checkpoint taken mid-epoch
    counts its position in groups of that many batches.
    """
    return {f"data.{k}": v for k, v in hp.items() if k not in ("dataset", "seed")}
