"""Regression metric of the paper: MSE after a least-squares per-output rescaling.

A pruned network may fit the target's shape but not its scale (the planted network outputs the ticket
times a per-output factor), so the reference rescales each output by the factor minimising the squared
error before measuring it. We rescale over the whole evaluation set (not per batch), from streaming sums.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class RescaledMSE(Metric):
    """``mean_ij (y_ij - s_j f_ij)^2`` with ``s_j = <y_j, f_j> / <f_j, f_j>`` (1 if ``f_j = 0``)."""

    full_state_update = False
    higher_is_better = False

    def __init__(self, num_outputs: int, **kwargs) -> None:
        super().__init__(**kwargs)
        for name in ("sum_yf", "sum_ff", "sum_yy"):
            self.add_state(name, default=torch.zeros(num_outputs, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        f, y = preds.double(), target.double()
        self.sum_yf += (y * f).sum(dim=0)
        self.sum_ff += (f * f).sum(dim=0)
        self.sum_yy += (y * y).sum(dim=0)
        self.count += y.shape[0]

    def compute(self) -> Tensor:
        scale = torch.where(self.sum_ff > 0, self.sum_yf / self.sum_ff.clamp_min(1e-300), torch.ones_like(self.sum_ff))
        sse = self.sum_yy - 2 * scale * self.sum_yf + scale**2 * self.sum_ff
        return (sse.clamp_min(0).sum() / (self.count * self.sum_yy.numel())).float()
