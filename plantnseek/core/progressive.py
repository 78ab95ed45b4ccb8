"""Progressive skeletonization (de Jorge et al., ICLR 2021, "Progressive Skeletonization: Trimming more fat
from a network at initialization"): Iterative SNIP and FORCE.

One-shot SNIP ranks every connection by its sensitivity in the *dense* network; at high sparsity that
ranking is stale, because pruning changes which connections matter. Both scorers here prune in ``rounds``
internal rounds instead, recomputing the connection sensitivity on the network masked by the previous
round's mask (the paper's two procedures, as in the authors' ``naver/force`` code, ``pruning/pruning_algos.py``):

- the kept fraction follows the paper's exponential schedule (:func:`progressive_densities`);
- the sensitivity is ``|w * dL/d(theta_bar)|`` at ``theta_bar = m * theta`` (the masked weights), with the
  gradient summed over the pruning batches (the authors average it: same ranking). ``w = theta_bar`` gives
  **Iterative SNIP** (a pruned entry scores 0 and, selection being restricted to the survivors, never
  returns); ``w = theta`` (the full weights) gives **FORCE**, which selects among every entry alive when
  the step began, so a connection pruned in an early round can come back once the others are gone.

Since ``d L / d m = theta * dL/d(theta_bar)`` at the same point, both are read off one mask gradient, as
SNIP does: FORCE's score is ``|dL/dm|``, Iterative SNIP's ``|m * dL/dm|``.
A unit whose inputs are all masked has pre-activation exactly 0, where autograd takes relu'(0) = 0: its
incoming connections score 0 (FORCE cannot revive into a unit that is entirely cut off).

Each round re-selects with ``ctx.select`` (exact top-k under the run's budget). The callback then masks
once more at ``ctx.density``; :func:`final_scores` makes that last top-k reproduce the final internal mask.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from plantnseek.core.errors import UsageError, check_number
from plantnseek.core.scorers import Scorer, ScoringContext, mask_gradients


def progressive_densities(start: float, target: float, rounds: int) -> list[float]:
    """Kept fraction after each internal round ``t = 1..T``: ``start ** (1 - t/T) * target ** (t/T)``.

    Geometric interpolation from the kept fraction ``start`` at entry to ``target``: every round keeps the
    same share ``(target / start) ** (1/T)`` of the previous survivors (the paper's exponential schedule;
    from a dense network, ``target ** (t/T)``). The last value is ``target`` exactly (no float drift).
    """
    out = [start ** (1 - t / rounds) * target ** (t / rounds) for t in range(1, rounds)]
    return out + [target]


def final_scores(scores: Sequence[Tensor], final: Sequence[Tensor], alive: Sequence[Tensor]) -> list[Tensor]:
    """Scores whose top-k among ``alive`` at the final density is exactly the ``final`` mask.

    The last round's scores, zeroed outside ``alive`` (those cannot be chosen anyway), divided by their
    largest value (into [0, 1]), plus 2 on the final mask: every entry of the final mask (>= 2) is then
    strictly above every other alive entry (<= 1), while the order within each set is the last round's
    (up to rounding of relative differences below ~1e-16). Since the final mask holds exactly the count
    the callback keeps at that density, its top-k is the final mask.
    """
    zeroed = [torch.where(a > 0, s.double(), torch.zeros((), dtype=torch.float64)) for s, a in zip(scores, alive)]
    top = max((float(s.max()) for s in zeroed if s.numel()), default=0.0)
    return [(s / top if top > 0 else s) + 2.0 * (f > 0).double() for s, f in zip(zeroed, final)]


class Progressive(Scorer):
    """Progressive skeletonization in ``rounds`` internal rounds (base of :class:`IterSNIP` and :class:`FORCE`).

    Args:
        rounds: internal rounds ``T``. Default 10, the default of the authors' ``iterative_pruning`` (their
            CIFAR examples use 60): each round costs one SNIP pass over the pruning subset, and at the
            densities of planted tickets (1e-1 to 1e-2) ten rounds prune at most 37% of the survivors per
            round, small enough for the sensitivities to be recomputed before most of a layer goes.

    After :meth:`score`, ``round_densities`` holds the schedule used and ``round_masks`` each round's mask
    (bool, aligned with ``ctx.names``).
    """

    #: whether an entry pruned in an earlier internal round may be selected again (FORCE) or not (Iter SNIP)
    revive: bool = False

    def __init__(self, rounds: int = 10) -> None:
        check_number(f"{self.name} rounds", rounds, integer=True)
        if rounds < 1:
            raise UsageError(f"{self.name} rounds {rounds} is invalid; it must be an integer >= 1")
        self.rounds = rounds
        self.round_densities: list[float] = []
        self.round_masks: list[list[Tensor]] = []

    def sensitivity(self, grads: list[Tensor], masks: list[Tensor]) -> list[Tensor]:
        """Connection sensitivity from the mask gradient ``dL/dm`` at the current internal ``masks``."""
        raise NotImplementedError

    def score(self, ctx: ScoringContext) -> list[Tensor]:
        batches = list(ctx.batches)
        if not batches:
            raise UsageError(f"pruner {self.name!r} needs the pruning subset; it got no batches")
        entry = [m.detach().clone() for m in ctx.masks]
        total = sum(m.numel() for m in entry)
        start = sum(int((m > 0).sum()) for m in entry) / total if total else 0.0
        self.round_densities = progressive_densities(start, ctx.density, self.rounds)
        self.round_masks = []
        masks = entry
        for density in self.round_densities:
            scores = self.sensitivity(mask_gradients(ctx, masks, batches), masks)
            masks = ctx.select(scores, entry if self.revive else masks, density)
            self.round_masks.append([m > 0 for m in masks])
        return final_scores(scores, masks, entry)


class IterSNIP(Progressive):
    """Iterative SNIP: ``|theta_bar * dL/d(theta_bar)|`` with ``theta_bar = m * theta``, re-selected among the
    survivors of the previous round; pruned entries score 0 and never return (de Jorge et al. 2021)."""

    revive = False

    def sensitivity(self, grads: list[Tensor], masks: list[Tensor]) -> list[Tensor]:
        return [(m * g).abs().double() for g, m in zip(grads, masks)]


class FORCE(Progressive):
    """FORCE: ``|theta * dL/d(theta_bar)|`` (the full weights) on the masked network, re-selected among all
    entries alive at entry, so entries pruned in an earlier round may come back (de Jorge et al. 2021)."""

    revive = True

    def sensitivity(self, grads: list[Tensor], masks: list[Tensor]) -> list[Tensor]:
        return [g.abs().double() for g in grads]

