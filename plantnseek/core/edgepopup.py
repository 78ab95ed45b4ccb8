"""Edge-popup (Ramanujan et al. 2020) as a pruner: a scorer that *trains* its scores, to find strong tickets.

The network's weights and biases stay frozen at their current (planted) values. Every prunable tensor
gets a learnable score tensor; each forward pass masks the network to the top-k ``|score|`` at the
current density (exactly ``k``, by the same stable selection the Pruning callback applies afterwards,
globally or per tensor as its budget says; pruned parameters stay pruned) and the gradient goes
straight through the mask to the scores. The scores train with the task's own loss on the training
split (no softmax head on regression outputs). The returned scores are the trained ``|score|``, so
the callback's usual top-k turns them into the mask (counts, recovery, summaries, pictures as for
every pruner).

Differences from the reference program (``edgepopup_benchmarkdata``): bias scores start like weight
scores (there they start at exactly 0, where ``|s|`` has zero gradient, so they never train), the
keep count is ``round(density * n)`` as for every pruner, and relu/helix get no softmax head.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from plantnseek.core.budgets import LAYERED, check_budget, keep_counts, layer_fans
from plantnseek.core.errors import UsageError, check_number
from plantnseek.core.masking import keep_count, select_by_threshold
from plantnseek.core.scorers import Scorer, ScoringContext, layer_indices

SCORE_INITS = ("kaiming", "magnitude")


class Selector:
    """Exact top-k masks of the flat ``|scores|`` at a density, computed once per training step.

    All score tensors live in one flat tensor, so a global selection needs no concatenation; the
    selection is :func:`~plantnseek.core.masking.select_by_threshold`, the callback's rule (ties to the lower
    index) without a full sort. ``scope`` is any budget (``local`` = ``uniform``); ``layers`` (the layer
    of each tensor) is needed by ``erk``, ``balanced`` and ``pyramidal``. Per-tensor counts are computed
    once per density (annealing visits one density per epoch), not at every step.
    """

    def __init__(self, alive: list[Tensor], scope: str, layers: list[int] | None = None) -> None:
        self.sizes = [a.numel() for a in alive]
        self.shapes = [a.shape for a in alive]
        self.alive = torch.cat([a.reshape(-1) for a in alive])
        self.scope = "uniform" if scope == "local" else scope
        check_budget(self.scope)
        if self.scope in LAYERED and layers is None:
            raise UsageError(f"budget {self.scope!r} needs layers= (the layer index of each tensor)")
        self.layers = list(layers) if layers is not None else [0] * len(alive)
        self.fans = layer_fans(self.shapes, self.layers)
        self.counts: dict[float, list[int]] = {}

    def keep(self, density: float) -> list[int]:
        """Entries each tensor keeps at ``density`` under the budget (not used for ``global``)."""
        if density not in self.counts:
            self.counts[density] = keep_counts(self.scope, self.sizes, self.layers, self.fans, density)
        return self.counts[density]

    def hard(self, magnitude: Tensor, density: float) -> Tensor:
        """Flat 0/1 mask keeping exactly ``round(density * n)`` (global) or the budget's count per tensor."""
        if self.scope == "global":
            return select_by_threshold(magnitude, self.alive, keep_count(density, magnitude.numel())).float()
        parts = zip(magnitude.split(self.sizes), self.alive.split(self.sizes), self.keep(density))
        return torch.cat([select_by_threshold(s, a, k) for s, a, k in parts]).float()

    def straight_through(self, scores: Tensor, density: float) -> list[Tensor]:
        """The masks, shaped like the parameters; forward exactly 0/1, backward ``d mask / d |s| = 1``."""
        magnitude = scores.abs()
        with torch.no_grad():
            hard = self.hard(magnitude.detach(), density)
        flat = hard + (magnitude - magnitude.detach())
        return [part.view(shape) for part, shape in zip(flat.split(self.sizes), self.shapes)]


class EdgePopup(Scorer):
    """Edge-popup: train scores of the frozen network with straight-through top-k masks (strong tickets).

    Args:
        epochs: epochs of score training on the training split (the paper: 10).
        lr: SGD learning rate, cosine-annealed to 0 over ``epochs`` (the paper: 0.1).
        momentum: SGD momentum (0.9).
        weight_decay: L2 weight decay on the scores (5e-4).
        score_init: ``kaiming`` (uniform in +-1/sqrt(fan_in) per layer, as the paper; biases too) or
            ``magnitude`` (``|theta|``: score training starts from the magnitude mask).
        anneal: lower the density during score training, ``d0 * (d / d0) ** (i / epochs)`` in epoch ``i``
            of ``epochs`` (``d0`` the kept fraction before this step: 1 at initialisation), instead of
            masking to the target from the first step.
    """

    uses_data = False  # no pruning subset: it trains on the training split
    uses_train = True

    def __init__(self, epochs: int = 10, lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 5e-4,
                 score_init: str = "kaiming", anneal: bool = False) -> None:
        check_number("epochs", epochs, integer=True)
        for name, value in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
            check_number(name, value)
        if epochs < 1:
            raise UsageError(f"edge-popup epochs {epochs} is invalid; it must be at least 1")
        if not lr > 0:
            raise UsageError(f"edge-popup lr {lr} is invalid; it must be > 0")
        if not 0 <= momentum < 1:
            raise UsageError(f"edge-popup momentum {momentum} is invalid; allowed: 0 <= momentum < 1")
        if not weight_decay >= 0:
            raise UsageError(f"edge-popup weight_decay {weight_decay} is invalid; it must be >= 0")
        if score_init not in SCORE_INITS:
            raise UsageError(f"unknown edge-popup score_init {score_init!r}; allowed: {', '.join(SCORE_INITS)}")
        if not isinstance(anneal, bool):
            raise UsageError(f"edge-popup anneal {anneal!r} is invalid; allowed: true, false")
        self.epochs, self.lr, self.momentum, self.weight_decay = epochs, lr, momentum, weight_decay
        self.score_init, self.anneal = score_init, anneal
        self.epochs_trained = 0  # of the last call (0 when the density keeps everything)

    @property
    def name(self) -> str:
        return "edgepopup-anneal" if self.anneal else "edgepopup"

    def initial_scores(self, ctx: ScoringContext) -> list[Tensor]:
        if self.score_init == "magnitude":
            return [p.detach().abs().clone() for p in ctx.params]
        fan_in = {n.rsplit(".", 1)[0]: p.shape[1] for n, p in ctx.net.named_parameters() if p.dim() == 2}
        out = []
        for name, p in zip(ctx.names, ctx.params):
            bound = 1.0 / math.sqrt(fan_in.get(name.rsplit(".", 1)[0], p.shape[-1]))
            out.append((torch.rand(p.shape, generator=ctx.generator) * 2 - 1) * bound)
        return out

    def epoch_density(self, start: float, target: float, epoch: int) -> float:
        """Kept fraction in epoch ``epoch`` (1-based): the target, or annealed from ``start`` towards it."""
        if not self.anneal or start <= target:
            return target
        return start * (target / start) ** (epoch / self.epochs)

    def score(self, ctx: ScoringContext) -> list[Tensor]:
        if ctx.train is None:
            raise UsageError("edge-popup trains on the training split: use a plantnseek.PlantedDataModule")
        x_all, y_all = ctx.train
        alive = [m.detach() > 0 for m in ctx.masks]
        selector = Selector(alive, ctx.budget, layer_indices(ctx.names))
        scores = torch.cat([s.reshape(-1) for s in self.initial_scores(ctx)]).requires_grad_(True)
        start = int(selector.alive.sum()) / selector.alive.numel()
        if torch.equal(selector.hard(scores.detach().abs(), ctx.density).bool(), selector.alive):
            self.epochs_trained = 0  # the density keeps every alive parameter: nothing to choose, nothing to train
            return self.split(scores.detach().abs().double(), selector)
        mask_names = [f"{n}_mask" for n in ctx.names]
        opt = torch.optim.SGD([scores], lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.epochs)
        n, bs = len(x_all), ctx.batch_size
        for epoch in range(1, self.epochs + 1):
            density = self.epoch_density(start, ctx.density, epoch)
            order = torch.randperm(n, generator=ctx.generator)
            x_ep, y_ep = x_all[order], y_all[order]
            for i in range(0, n, bs):
                masks = selector.straight_through(scores, density)
                out = ctx.call(dict(zip(mask_names, masks)), x_ep[i : i + bs])
                # only the scores' gradient: the weights and biases stay as they are, and untouched
                (scores.grad,) = torch.autograd.grad(ctx.loss(out, y_ep[i : i + bs]), [scores])
                opt.step()
            sched.step()
        self.epochs_trained = self.epochs
        return self.split(scores.detach().abs().double(), selector)

    @staticmethod
    def split(flat: Tensor, selector: Selector) -> list[Tensor]:
        return [part.view(shape) for part, shape in zip(flat.split(selector.sizes), selector.shapes)]


class EdgePopupAnneal(EdgePopup):
    """Edge-popup with annealing (``anneal: true``): the named pruner ``edgepopup-anneal``."""

    def __init__(self, epochs: int = 10, lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 5e-4,
                 score_init: str = "kaiming", anneal: bool = True) -> None:
        super().__init__(epochs, lr, momentum, weight_decay, score_init, anneal)

