"""One run of a stack, seen alone, and the loss and metrics every run is measured with.

A :class:`Run` is what per-run code works on (pruning, summaries, pictures, user scorers): its settings,
task, planted ticket, history, and a view of its network that aliases the stack's tensors. Loss and
metrics are computed here once, with a leading runs dimension, for training a whole stack and for
evaluating a single run alike.
"""
from __future__ import annotations

from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from plantnseek.core.layers import MaskedMLP
from plantnseek.core.metrics import RescaledMSE, RunsAccuracy, RunsMSE, SumMean
from plantnseek.core.tasks import Task


# A network is dead when its outputs vary across the test inputs by less than this fraction of the planted
# ticket's: it then answers every input alike (e.g. every unit on its paths inactive), even with a path left.
DEAD_TOLERANCE = 1e-3


def output_spread(out: Tensor) -> Tensor:
    """Largest standard deviation over inputs (dim -2) of any output unit, per leading index: exactly 0 when
    the output does not depend on the input."""
    return out.double().std(dim=-2, unbiased=False).amax(dim=-1)


def as_runs(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """A batch with a leading runs dimension: one run's ``[B, d]`` batch becomes ``[1, B, d]``."""
    return (x, y) if x.dim() == 3 else (x.unsqueeze(0), y.unsqueeze(0))


def run_losses(task: Task, out: Tensor, y: Tensor) -> Tensor:
    """Each run's mean loss over the batch, ``[R]``: cross-entropy or MSE."""
    if task.classification:
        per = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1), reduction="none")
        return per.view(y.shape).mean(dim=1)
    return ((out - y) ** 2).mean(dim=(1, 2))


def make_metrics(task: Task, runs: int) -> nn.ModuleDict:
    """The task's test metrics, one value per run: accuracy, or MSE and the paper's rescaled MSE."""
    if task.classification:
        return nn.ModuleDict({"accuracy": RunsAccuracy(runs)})
    return nn.ModuleDict({"mse": RunsMSE(runs), "rescaled_mse": RescaledMSE(task.d_out, runs=runs)})


class Evaluation:
    """Streaming loss and metrics of R runs over ``[R, B, ...]`` batches."""

    def __init__(self, task: Task, runs: int) -> None:
        self.task = task
        self.loss = SumMean(runs)
        self.metrics = make_metrics(task, runs)

    def update(self, out: Tensor, y: Tensor) -> None:
        self.loss.update(run_losses(self.task, out, y).detach().double() * y.shape[1], y.shape[1])
        for metric in self.metrics.values():
            metric.update(out, y)

    def compute(self) -> dict[str, Tensor]:
        """``{"loss": [R], <metric>: [R], ...}``, then reset (torchmetrics squeezes one run's values: unsqueezed)."""
        results = {"loss": self.loss.compute().reshape(-1)}
        results.update({k: m.compute().reshape(-1) for k, m in self.metrics.items()})
        self.loss.reset()
        for metric in self.metrics.values():
            metric.reset()
        return results


class Run:
    """One run: settings (``hparams``, with its own ``seed``), task, ticket, history and network view."""

    def __init__(self, hparams: Any, task: Task, ticket: nn.Module, net: MaskedMLP) -> None:
        self.hparams, self.task, self.ticket, self.net = hparams, task, ticket, net
        self.history: list[dict[str, float]] = []

    def __call__(self, x: Tensor) -> Tensor:
        return self.net(x)

    def loss(self, out: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(out, y) if self.task.classification else F.mse_loss(out, y)

    @property
    def primary_metric(self) -> str:
        """The metric the paper reports: accuracy for circle, rescaled MSE for regression."""
        return "accuracy" if self.task.classification else "rescaled_mse"

    @torch.no_grad()
    def evaluate(self, batches: Iterable[tuple[Tensor, Tensor]]) -> dict[str, float]:
        """Loss and metrics of this run's network on ``batches`` (e.g. the test split right after pruning)."""
        was_training = self.net.training
        self.net.eval()
        evaluation = Evaluation(self.task, 1)
        for batch in batches:
            x, y = as_runs(*batch)
            evaluation.update(self.net(x), y)
        self.net.train(was_training)
        return {k: float(v[0]) for k, v in evaluation.compute().items()}

    @torch.no_grad()
    def output_spread(self, batches: Iterable[tuple[Tensor, Tensor]]) -> float:
        """:func:`output_spread` of this network over the inputs of ``batches`` (0: a dead network)."""
        was_training = self.net.training
        self.net.eval()
        spread = float(output_spread(self.net(torch.cat([as_runs(*batch)[0] for batch in batches], dim=1)))[0])
        self.net.train(was_training)
        return spread

    @torch.no_grad()
    def ticket_spread(self, x: Tensor) -> float:
        """:func:`output_spread` of the ticket as planted (its output times the per-output scale, ~1e-5) on
        ``x``: what the network computes under the ticket's mask, the yardstick a dead network is measured by."""
        return float(output_spread(self.ticket(x) * self.ticket.scale))

    @torch.no_grad()
    def ticket_metric(self, x: Tensor, y: Tensor) -> float:
        """The ticket's own metric on (x, y): accuracy (circle) or MSE (regression)."""
        return self.ticket.metric(self.task, x, y)
