"""Many runs as one model: every weight, mask and metric gets a leading runs dimension.

Runs that share a task, an architecture, data sizes, optimizer settings and a schedule, but differ in
seed, pruner or sparsity, train together with batched matmuls. Each run keeps its own planted
initialisation, data and data order, masks and optimizer state: the loss is the sum of the runs' losses
and every optimizer here is elementwise, so one optimizer over the stacked tensors makes exactly the
updates that separate optimizers would. Scoring and masking run per run, through the same
:class:`~plantnseek.callbacks.Pruning` code as a single run, on a per-run module kept in sync.
"""
from __future__ import annotations

import math
from typing import Any, Iterator, Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from plantnseek.callbacks.pruning import STREAM_REINIT, Pruning, apply_masks
from plantnseek.data import STREAM_ORDER, PlantedDataModule, stream, torch_generator
from plantnseek.errors import RunFailure
from plantnseek.metrics import RescaledMSE, RunsAccuracy, RunsMSE, SumMean
from plantnseek.module import PlantedMLP, make_optimizer
from plantnseek.planting import he_scaled_init


class StackedMLP(nn.Module):
    """R masked MLPs of the same widths: weights ``[R, out, in]``, biases ``[R, out]``, and their masks."""

    def __init__(self, runs: int, widths: list[int]) -> None:
        super().__init__()
        self.runs, self.widths = runs, list(widths)
        pairs = list(zip(widths[:-1], widths[1:]))
        self.weights = nn.ParameterList(nn.Parameter(torch.empty(runs, o, i)) for i, o in pairs)
        self.biases = nn.ParameterList(nn.Parameter(torch.empty(runs, o)) for _, o in pairs)
        for l, (i, o) in enumerate(pairs):
            self.register_buffer(f"weight_mask_{l}", torch.ones(runs, o, i))
            self.register_buffer(f"bias_mask_{l}", torch.ones(runs, o))

    def masks(self, l: int) -> tuple[Tensor, Tensor]:
        return getattr(self, f"weight_mask_{l}"), getattr(self, f"bias_mask_{l}")

    def forward(self, x: Tensor) -> Tensor:
        """``x`` is ``[R, B, d_in]``; returns ``[R, B, d_out]``."""
        last = len(self.weights) - 1
        for l, (w, b) in enumerate(zip(self.weights, self.biases)):
            wm, bm = self.masks(l)
            x = torch.baddbmm((b * bm).unsqueeze(1), x, (w * wm).transpose(1, 2))
            if l < last:
                x = torch.relu(x)
        return x

    def masked_parameters(self, bias: bool = True) -> Iterator[tuple[str, nn.Parameter, Tensor]]:
        for l in range(len(self.weights)):
            wm, bm = self.masks(l)
            yield f"weights.{l}", self.weights[l], wm
            if bias:
                yield f"biases.{l}", self.biases[l], bm

    @torch.no_grad()
    def load_run(self, r: int, member: PlantedMLP) -> None:
        for l, layer in enumerate(member.net.layers):
            wm, bm = self.masks(l)
            self.weights[l][r].copy_(layer.weight)
            self.biases[l][r].copy_(layer.bias)
            wm[r].copy_(layer.weight_mask)
            bm[r].copy_(layer.bias_mask)

    @torch.no_grad()
    def store_run(self, r: int, member: PlantedMLP) -> None:
        for l, layer in enumerate(member.net.layers):
            wm, bm = self.masks(l)
            layer.weight.copy_(self.weights[l][r])
            layer.bias.copy_(self.biases[l][r])
            layer.weight_mask.copy_(wm[r])
            layer.bias_mask.copy_(bm[r])


class StackedBatches:
    """Batches ``([R, B, d_in], [R, B, ...])``; each run in its own order, as its own run would see it."""

    def __init__(self, x: Tensor, y: Tensor, batch_size: int, seeds: Sequence[int] | None = None,
                 epoch_fn: Any = None) -> None:
        self.x, self.y, self.batch_size, self.seeds, self.epoch_fn = x, y, batch_size, seeds, epoch_fn

    def __len__(self) -> int:
        return math.ceil(self.x.shape[1] / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        x, y = self.x, self.y
        if self.seeds is not None:
            epoch = self.epoch_fn() if self.epoch_fn else 0
            n = x.shape[1]
            order = torch.stack([torch.randperm(n, generator=torch_generator(s, STREAM_ORDER, epoch)) for s in self.seeds])
            runs = torch.arange(len(self.seeds))[:, None]
            x, y = x[runs, order], y[runs, order]
        for start in range(0, x.shape[1], self.batch_size):
            yield x[:, start : start + self.batch_size], y[:, start : start + self.batch_size]


class StackedData(pl.LightningDataModule):
    """The runs' own data modules, stacked."""

    def __init__(self, members: Sequence[PlantedDataModule]) -> None:
        super().__init__()
        self.members = list(members)
        first = self.members[0].hparams
        self.train_batch_size, self.test_batch_size = first.train_batch_size, first.test_batch_size
        self.seeds = [dm.seed for dm in self.members]

    def stacked(self, split: str) -> tuple[Tensor, Tensor]:
        xs, ys = zip(*(dm.split(split) for dm in self.members))
        return torch.stack(xs), torch.stack(ys)

    def train_dataloader(self) -> StackedBatches:
        x, y = self.stacked("train")
        epoch = lambda: self.trainer.current_epoch if self.trainer is not None else 0  # noqa: E731
        return StackedBatches(x, y, self.train_batch_size, self.seeds, epoch)

    def val_dataloader(self) -> StackedBatches:
        return StackedBatches(*self.stacked("test"), self.test_batch_size)


class StackedRuns(pl.LightningModule):
    """R planted MLPs (``members``, same task and architecture) trained as one stacked model."""

    def __init__(self, members: Sequence[PlantedMLP]) -> None:
        super().__init__()
        self.members = list(members)  # per-run modules: tickets, scoring, summaries (not trained directly)
        first = self.members[0]
        self.task, self.hp = first.task, dict(first.hparams)
        self.runs = len(self.members)
        self.net = StackedMLP(self.runs, first.net.widths)
        for r, m in enumerate(self.members):
            self.net.load_run(r, m)
        self.train_loss = SumMean(self.runs)
        self.eval_loss = SumMean(self.runs)
        if self.task.classification:
            self.eval_metrics = nn.ModuleDict({"accuracy": RunsAccuracy(self.runs)})
        else:
            self.eval_metrics = nn.ModuleDict({"mse": RunsMSE(self.runs),
                                               "rescaled_mse": RescaledMSE(self.task.d_out, runs=self.runs)})
        self.histories: list[list[dict[str, float]]] = [[] for _ in self.members]

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def run_losses(self, out: Tensor, y: Tensor) -> Tensor:
        """Each run's mean loss over the batch, ``[R]``."""
        if self.task.classification:
            per = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1), reduction="none")
            return per.view(y.shape).mean(dim=1)
        return ((out - y) ** 2).mean(dim=(1, 2))

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        losses = self.run_losses(self(x), y)
        self.train_loss.update(losses.detach().double() * x.shape[1], x.shape[1])
        return losses.sum()

    def on_train_epoch_start(self) -> None:
        self.train_loss.reset()

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        out = self(x)
        self.eval_loss.update(self.run_losses(out, y).double() * x.shape[1], x.shape[1])
        for metric in self.eval_metrics.values():
            metric.update(out, y)

    def on_validation_epoch_end(self) -> None:
        results = {"loss": self.eval_loss.compute()}
        results.update({k: m.compute() for k, m in self.eval_metrics.items()})
        self.eval_loss.reset()
        for m in self.eval_metrics.values():
            m.reset()
        train = self.train_loss.compute() if self.train_loss.update_count > 0 else None
        if train is not None and not torch.isfinite(train).all():
            bad = int((~torch.isfinite(train)).nonzero()[0])
            raise RunFailure(f"training loss of run {bad} diverged in epoch {self.current_epoch}")
        for r, history in enumerate(self.histories):
            row = {"epoch": float(self.current_epoch)}
            if train is not None:
                row["train_loss"] = float(train[r])
            row.update({f"test_{k}": float(v[r]) for k, v in results.items()})
            history.append(row)

    def configure_optimizers(self) -> dict[str, Any]:
        return make_optimizer(self.hp, self.net.parameters())

    def sync_members(self) -> None:
        """Copy each run's current weights and masks into its per-run module."""
        for r, m in enumerate(self.members):
            self.net.store_run(r, m)
            m.history = self.histories[r]


class StackedPruning(Pruning):
    """Runs each run's own :class:`Pruning` (scorer, sparsity, scope, ...) on its slice of the stack.

    The schedule (levels, epochs, rewinding, optimizer reset) is the shared one, inherited from Pruning.
    """

    def __init__(self, prunings: Sequence[Pruning], datamodules: Sequence[PlantedDataModule]) -> None:
        first = prunings[0]
        super().__init__(pruner=first.scorer, sparsity=first.sparsity, compression=first.compression,
                         levels=first.levels, pre_epochs=first.pre_epochs, post_epochs=first.post_epochs,
                         rewind=first.rewind)
        self.prunings, self.datamodules = list(prunings), list(datamodules)
        self.reinitialize = any(p.reinitialize for p in self.prunings)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        for p, m in zip(self.prunings, pl_module.members):
            p.density = p.target_density(m)
        trainer.fit_loop.max_epochs = self.total_epochs

    def prune_level(self, pl_module: pl.LightningModule, level: int, datamodule: Any = None,
                    trainer: pl.Trainer | None = None) -> dict[str, Any]:
        pl_module.sync_members()
        for r, (p, m, dm) in enumerate(zip(self.prunings, pl_module.members, self.datamodules)):
            p.prune_level(m, level, dm)
            pl_module.net.load_run(r, m)
        self.events.append({"level": level + 1})
        return self.events[-1]

    def record_pruned(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Each run's ``pruned`` results: its own module, as the last pruning step (and rewind) left it."""
        pl_module.sync_members()
        for p, m, dm in zip(self.prunings, pl_module.members, self.datamodules):
            p.pruned = m.evaluate(dm.test_dataloader())

    @torch.no_grad()
    def _reinitialize(self, pl_module: pl.LightningModule) -> None:
        for r, (p, m) in enumerate(zip(self.prunings, pl_module.members)):
            if not p.reinitialize:
                continue
            fresh = he_scaled_init(m.net.widths, stream(m.hparams.seed, STREAM_REINIT))
            for l, (w, b) in enumerate(fresh):
                pl_module.net.weights[l][r].copy_(torch.as_tensor(w))
                pl_module.net.biases[l][r].copy_(torch.as_tensor(b))
        apply_masks(pl_module)


def log_history(directory: str, summary: dict[str, Any]) -> None:
    """TensorBoard scalars of a stacked run, from its history (the same tags as a single run logs)."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(directory)
    try:
        writer.add_scalar("ticket/sparsity", summary["ticket"]["sparsity"], 0)
        writer.add_scalar("ticket/metric", summary["ticket"]["metric"], 0)
        for row in summary["history"]:
            step = int(row["epoch"])
            for k, v in row.items():
                if k == "train_loss":
                    writer.add_scalar("train/loss", v, step)
                elif k.startswith("test_"):
                    writer.add_scalar(f"test/{k[5:]}", v, step)
        for k, v in (summary.get("pruned") or {}).items():
            writer.add_scalar(f"test_pruned/{k}", v, 0)
        for i, event in enumerate(summary["prune_events"], start=1):
            writer.add_scalar("prune/density", event["density"], i)
            writer.add_scalar("prune/recall", event["recovery"]["recall"], i)
            writer.add_scalar("prune/precision", event["recovery"]["precision"], i)
            writer.add_scalar("prune/collapsed", float(event["recovery"]["collapsed"]), i)
    finally:
        writer.close()


def fit_stacked(members: Sequence[PlantedMLP], datamodules: Sequence[PlantedDataModule],
                prunings: Sequence[Pruning] | None, trainer_kwargs: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Train the runs together; returns each run's summary (as summary.json would hold it)."""
    from plantnseek.callbacks.summary import build_summary, ticket_info

    tickets = [ticket_info(m, *dm.split("test")) for m, dm in zip(members, datamodules)]
    initial = [m.evaluate(dm.test_dataloader()) for m, dm in zip(members, datamodules)]
    module = StackedRuns(members)
    callbacks: list[Any] = []
    kwargs = {"max_epochs": 10, **(trainer_kwargs or {})}
    if prunings:
        callbacks.append(StackedPruning(prunings, datamodules))
        kwargs["max_epochs"] = callbacks[0].total_epochs
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         callbacks=callbacks, **kwargs)
    trainer.fit(module, datamodule=StackedData(datamodules))
    module.sync_members()
    return [build_summary(m, p if prunings else None, t, i, trainer.current_epoch, "completed")
            for m, p, t, i in zip(members, prunings or [None] * len(members), tickets, initial)]
