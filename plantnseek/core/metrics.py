"""Metrics, with an optional leading runs dimension (stacked runs: one value per run).

The regression metric of the paper is the MSE after a least-squares per-output rescaling: a pruned
network may fit the target's shape but not its scale (the planted network outputs the ticket times a
per-output factor), so each output is first multiplied by the factor minimising its squared error. We
rescale over the whole evaluation set (not per batch, as the reference did), from streaming sums.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class RescaledMSE(Metric):
    """``mean_ij (y_ij - s_j f_ij)^2`` with ``s_j = <y_j, f_j> / <f_j, f_j>`` (1 if ``f_j = 0``).

    With ``runs=R``, predictions and targets are ``[R, n, d]`` and the result is one value per run.
    """

    full_state_update = False
    higher_is_better = False

    def __init__(self, num_outputs: int, runs: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        shape = (num_outputs,) if runs is None else (runs, num_outputs)
        for name in ("sum_yf", "sum_ff", "sum_yy"):
            self.add_state(name, default=torch.zeros(shape, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        f, y = preds.double(), target.double()
        self.sum_yf += (y * f).sum(dim=-2)
        self.sum_ff += (f * f).sum(dim=-2)
        self.sum_yy += (y * y).sum(dim=-2)
        self.count += y.shape[-2]

    def compute(self) -> Tensor:
        scale = torch.where(self.sum_ff > 0, self.sum_yf / self.sum_ff.clamp_min(1e-300), torch.ones_like(self.sum_ff))
        sse = (self.sum_yy - 2 * scale * self.sum_yf + scale**2 * self.sum_ff).clamp_min(0)
        return (sse.sum(dim=-1) / (self.count * sse.shape[-1])).float()


class RunsAccuracy(Metric):
    """Per-run accuracy of ``[R, n, C]`` logits against ``[R, n]`` labels."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, runs: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("correct", default=torch.zeros(runs, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        self.correct += (preds.argmax(dim=-1) == target).sum(dim=-1)
        self.count += target.shape[-1]

    def compute(self) -> Tensor:
        return self.correct.float() / self.count


class RunsMSE(Metric):
    """Per-run mean squared error of ``[R, n, d]`` predictions."""

    full_state_update = False
    higher_is_better = False

    def __init__(self, runs: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("sse", default=torch.zeros(runs, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        self.sse += ((preds.double() - target.double()) ** 2).sum(dim=(-2, -1))
        self.count += target.shape[-2] * target.shape[-1]

    def compute(self) -> Tensor:
        return (self.sse / self.count).float()


class SumMean(Metric):
    """Mean from streamed (sum, count) pairs, in float64 so grouping the stream cannot change it.

    With ``runs=R``, sums are ``[R]`` (one mean per stacked run; the count is shared).
    """

    full_state_update = False

    def __init__(self, runs: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        shape = () if runs is None else (runs,)
        self.add_state("total", default=torch.zeros(shape, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, total: Tensor, count: float) -> None:
        self.total += total.detach().double()
        self.count += count

    def compute(self) -> Tensor:
        return (self.total / self.count).float()
