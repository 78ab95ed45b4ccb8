"""Pruning scores: one small class per rule. Higher score = more important = kept.

Write your own by subclassing :class:`Scorer` and implementing :meth:`Scorer.score`; the pruning
callback does the rest (schedules, exact top-k masking, recovery metrics, summaries, sweeps). Every
scorer gets the same :class:`ScoringContext`, with the network, its prunable parameters and masks, the
pruning subset, the task's loss and a seeded generator; scorers that train (edge-popup) also get the
training split, its batch size, and the density and layer-wise budget the step masks to.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call

Batch = tuple[Tensor, Tensor]


@dataclass
class ScoringContext:
    """Everything a scorer may use.

    Attributes:
        net: the masked MLP (``plantnseek.core.layers.MaskedMLP``); call ``net(x)``.
        names: names of the prunable tensors (e.g. ``layers.0.weight``), in order.
        params: the prunable parameters, aligned with ``names``.
        masks: their current masks (1 kept, 0 pruned), aligned with ``names``.
        batches: the pruning subset, as ``(x, y)`` batches.
        loss: the task's loss ``loss(output, y)``.
        generator: seeded random generator (use it for any randomness so runs are reproducible).
        ticket_masks: the planted ticket's masks (bool), aligned with ``names``; for oracles and analysis.
        train: the training split ``(x, y)``, for scorers with ``uses_train`` (else None).
        batch_size: the data module's training batch size.
        density: the kept fraction this scoring round masks to (of all prunable parameters).
        budget: how the kept parameters are shared among layers (``global``: one ranking across all layers;
            ``uniform``, ``erk``, ``balanced``, ``pyramidal``: a count per layer; see
            :mod:`plantnseek.core.budgets`). Scorers that mask internally (FORCE, edge-popup) use :meth:`select`.
    """

    net: nn.Module
    names: list[str]
    params: list[nn.Parameter]
    masks: list[Tensor]
    batches: Iterable[Batch]
    loss: Callable[[Tensor, Tensor], Tensor]
    generator: torch.Generator
    ticket_masks: list[Tensor]
    train: tuple[Tensor, Tensor] | None = None
    batch_size: int = 64
    density: float = 1.0
    budget: str = "global"

    def select(self, scores: list[Tensor], masks: list[Tensor], density: float) -> list[Tensor]:
        """The masks the callback would make of ``scores``: top scores among the entries alive in ``masks``,
        ``density`` of all prunable parameters, shared among layers by :attr:`budget`."""
        from plantnseek.core.masking import topk_masks

        return topk_masks(scores, masks, density, self.budget, layers=layer_indices(self.names))

    def call(self, tensors: dict[str, Tensor], x: Tensor) -> Tensor:
        """``net(x)`` with some parameters or masks replaced by ``tensors`` (keyed by state-dict name)."""
        return functional_call(self.net, tensors, (x,))


def layer_indices(names: list[str]) -> list[int]:
    """The layer of each prunable tensor, from its name (``layers.2.weight`` -> 2)."""
    return [int(n.split(".")[1]) for n in names]


def mask_gradients(ctx: ScoringContext, masks: Sequence[Tensor], batches: Iterable[Batch]) -> list[Tensor]:
    """``dL/dm`` at ``m = masks`` (the network computes with ``masks`` in place of its own), summed over
    batches: SNIP's connection sensitivity, and each round's of iterative SNIP and FORCE."""
    names = [f"{n}_mask" for n in ctx.names]
    leaves = [m.detach().clone().requires_grad_(True) for m in masks]
    total = [torch.zeros_like(m) for m in leaves]
    for x, y in batches:
        out = ctx.call(dict(zip(names, leaves)), x)
        for acc, g in zip(total, torch.autograd.grad(ctx.loss(out, y), leaves)):
            acc += g
    return total


class Scorer:
    """Base class of pruning scores. Subclasses implement :meth:`score`."""

    #: whether the scorer reads the pruning subset (SynFlow, magnitude and random do not)
    uses_data: bool = True
    #: whether the scorer trains on the training split (``ctx.train``; edge-popup)
    uses_train: bool = False

    def score(self, ctx: ScoringContext) -> list[Tensor]:
        """One score tensor per prunable parameter (same shape), higher = keep."""
        raise NotImplementedError

    @property
    def name(self) -> str:
        return type(self).__name__.lower()


def normalise(scores: list[Tensor], denom: Tensor) -> list[Tensor]:
    return [s / denom for s in scores]


class Rand(Scorer):
    """Gaussian noise: the random-pruning baseline."""

    uses_data = False

    def score(self, ctx: ScoringContext) -> list[Tensor]:
        return [torch.randn(p.shape, generator=ctx.generator, dtype=torch.float64) for p in ctx.params]


class Mag(Scorer):
    """|theta|: magnitude pruning."""

    uses_data = False

    def score(self, ctx: ScoringContext) -> list[Tensor]:
        return [p.detach().abs().double() for p in ctx.params]


class SNIP(Scorer):
    """|theta * dL/dtheta| on the pruning subset (connection sensitivity), normalised to sum 1."""


    def score(self, ctx: ScoringContext) -> list[Tensor]:
        scores = [g.abs().double() for g in mask_gradients(ctx, ctx.masks, ctx.batches)]
        total = sum(s.sum() for s in scores)
        return normalise(scores, total) if total > 0 else scores


class GraSP(Scorer):
    """theta * Hg (gradient signal preservation) with softmax temperature 200, normalised by |sum|."""

    temperature = 200.0
    eps = 1e-10

    def score(self, ctx: ScoringContext) -> list[Tensor]:
        params = [p.detach().clone().requires_grad_(True) for p in ctx.params]
        swap = dict(zip(ctx.names, params))

        def loss(x: Tensor, y: Tensor) -> Tensor:
            return ctx.loss(ctx.call(swap, x) / self.temperature, y)

        batches = list(ctx.batches)
        g_fixed = [torch.zeros_like(p) for p in params]
        for x, y in batches:
            for acc, g in zip(g_fixed, torch.autograd.grad(loss(x, y), params)):
                acc += g
        hg = [torch.zeros_like(p) for p in params]
        for x, y in batches:
            grads = torch.autograd.grad(loss(x, y), params, create_graph=True)
            dot = sum((a * b).sum() for a, b in zip(g_fixed, grads))
            for acc, g in zip(hg, torch.autograd.grad(dot, params)):
                acc += g
        scores = [(h * p).detach().double() for h, p in zip(hg, params)]
        return normalise(scores, torch.stack([s.sum() for s in scores]).sum().abs() + self.eps)


class SynFlow(Scorer):
    """|theta * dR/dtheta| with R the summed output of the all-positive network on an all-ones input.

    Data-free. Computed in float64: at depth 10 the products of |theta| under- or overflow float32 and
    create ties.
    """

    uses_data = False

    def score(self, ctx: ScoringContext) -> list[Tensor]:
        state = {k: v.detach().double().abs() for k, v in ctx.net.state_dict().items()}
        leaves = [state[n].requires_grad_(True) for n in ctx.names]
        d_in = next(iter(ctx.net.parameters())).shape[1]
        out = ctx.call(state, torch.ones(1, d_in, dtype=torch.float64))
        grads = torch.autograd.grad(out.sum(), leaves)
        return [(g * p).detach().abs() for g, p in zip(grads, leaves)]


class Ticket(Scorer):
    """Oracle: 1 on the planted ticket, 0 elsewhere. At the ticket's density it keeps exactly the ticket."""

    uses_data = False

    def score(self, ctx: ScoringContext) -> list[Tensor]:
        return [t.double() for t in ctx.ticket_masks]
