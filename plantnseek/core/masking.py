"""Turning scores into masks, and measuring masks against the planted ticket.

One place for the selection rule: exactly ``k`` parameters survive, chosen by a stable descending sort
of the scores (ties go to the lower flat index, so the result is deterministic), and a parameter that
is already pruned can never come back.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from plantnseek.core.budgets import BUDGETS, LAYERED, keep_counts, layer_fans
from plantnseek.core.errors import UsageError


def keep_count(density: float, n: int) -> int:
    """How many of ``n`` parameters a kept fraction ``density`` leaves: ``round(density * n)``."""
    return int(round(density * n))


def resolve_density(sparsity: float | None, compression: float | None, ticket_density: float) -> float:
    """Target kept fraction from ``sparsity`` (-1: the ticket's) or, if absent, ``10 ** -compression``."""
    if sparsity is None:
        if compression is None:
            raise UsageError("give a sparsity (kept fraction in (0, 1], or -1 for the ticket's) or a compression")
        if not compression >= 0:
            raise UsageError(f"compression {compression} is invalid; it must be >= 0 (kept fraction 10^-c)")
        return 10.0 ** (-compression)
    if sparsity == -1:
        return ticket_density
    if not 0 < sparsity <= 1:
        raise UsageError(f"sparsity {sparsity} is invalid; allowed: a kept fraction in (0, 1], or -1 for the ticket's")
    return float(sparsity)


def _select(flat_scores: Tensor, alive: Tensor, k: int) -> Tensor:
    scores = torch.where(alive, flat_scores.double(), torch.full_like(flat_scores, float("-inf"), dtype=torch.float64))
    scores = torch.nan_to_num(scores, nan=float("-inf"))
    k = min(k, int(alive.sum()))
    order = torch.sort(scores, descending=True, stable=True).indices[:k]
    keep = torch.zeros_like(alive)
    keep[order] = True
    return keep


def topk_masks(scores: Sequence[Tensor], masks: Sequence[Tensor], density: float, scope: str,
               layers: Sequence[int] | None = None) -> list[Tensor]:
    """New masks keeping the top scores: ``round(density * n)`` globally, or per tensor as a budget says.

    ``scope`` is a budget of :mod:`plantnseek.core.budgets` (``local`` = ``uniform``); ``erk``, ``balanced``
    and ``pyramidal`` need ``layers``, the layer of each tensor. Entries already masked out stay masked
    out. Returns float masks shaped like ``masks``.
    """
    if scope == "uniform":
        scope = "local"
    if scope == "global":
        flat = torch.cat([s.reshape(-1) for s in scores])
        alive = torch.cat([m.reshape(-1) > 0 for m in masks])
        keep = _select(flat, alive, keep_count(density, flat.numel()))
        out, start = [], 0
        for m in masks:
            out.append(keep[start : start + m.numel()].reshape(m.shape).to(m.dtype))
            start += m.numel()
        return out
    if scope == "local":
        return [
            _select(s.reshape(-1), m.reshape(-1) > 0, keep_count(density, m.numel())).reshape(m.shape).to(m.dtype)
            for s, m in zip(scores, masks)
        ]
    if scope in LAYERED:
        if layers is None:
            raise UsageError(f"budget {scope!r} shares the kept parameters among layers: give layers= "
                             "(the layer index of each tensor)")
        counts = keep_counts(scope, [m.numel() for m in masks], layers,
                             layer_fans([m.shape for m in masks], layers), density)
        return [_select(s.reshape(-1), m.reshape(-1) > 0, k).reshape(m.shape).to(m.dtype)
                for s, m, k in zip(scores, masks, counts)]
    raise UsageError(f"unknown scope {scope!r}; allowed: local, {', '.join(BUDGETS)}")


def select_by_threshold(flat_scores: Tensor, alive: Tensor, k: int) -> Tensor:
    """The same selection as :func:`topk_masks` (top ``k`` alive scores, ties to the lower index), found
    through the k-th largest value instead of a full sort: several times faster, for scorers that mask
    at every training step (edge-popup)."""
    scores = torch.where(alive, flat_scores, torch.full_like(flat_scores, float("-inf")))
    scores = torch.nan_to_num(scores, nan=float("-inf"))
    k = min(k, int(alive.sum()))
    if k == 0:
        return torch.zeros_like(alive)
    threshold = torch.kthvalue(scores, scores.numel() - k + 1).values
    above = scores > threshold
    ties = scores == threshold
    return above | (ties & (torch.cumsum(ties, 0) <= k - int(above.sum())))


def schedule_densities(density: float, rounds: int, schedule: str) -> list[float]:
    """Kept fraction after each of ``rounds`` scoring rounds, ending at ``density``."""
    if schedule == "exponential":
        return [density ** ((r + 1) / rounds) for r in range(rounds)]
    if schedule == "linear":
        return [1.0 - (1.0 - density) * ((r + 1) / rounds) for r in range(rounds)]
    raise UsageError(f"unknown schedule {schedule!r}; allowed: exponential, linear")


def shuffle_masks(masks: Sequence[Tensor], alive: Sequence[Tensor], generator: torch.Generator) -> list[Tensor]:
    """Each mask's kept entries moved to random positions among its ``alive`` ones (same count).

    ``alive`` is the mask before this pruning step: permuting only among those positions keeps the
    rule that a parameter pruned once stays pruned (a permutation over the whole tensor would revive
    entries pruned at earlier levels).
    """
    out = []
    for m, a in zip(masks, alive):
        flat, pos = m.reshape(-1).clone(), (a.reshape(-1) > 0).nonzero().flatten()
        flat[pos] = flat[pos[torch.randperm(pos.numel(), generator=generator)]]
        out.append(flat.reshape(m.shape))
    return out


def reachable(weight_masks: Sequence[Tensor]) -> list[Tensor]:
    """Per layer, which output units are reachable from the inputs through kept weights."""
    alive = torch.ones(weight_masks[0].shape[1], dtype=torch.bool)
    out = []
    for m in weight_masks:
        alive = ((m > 0).double() @ alive.double()) > 0
        out.append(alive)
    return out


def recovery(weight_masks: Sequence[Tensor], ticket_masks: Sequence[Tensor]) -> dict:
    """How much of the ticket the kept weights contain, per layer and overall, plus dead units and collapse.

    recall = kept ticket weights / ticket weights; precision = kept ticket weights / kept weights.
    A hidden unit is dead when it has no kept incoming or no kept outgoing weight. The network has
    collapsed when no input-to-output path of kept weights survives.
    """
    layers = []
    tot_hit = tot_ticket = tot_kept = 0
    for i, (m, t) in enumerate(zip(weight_masks, ticket_masks)):
        kept, tk = m > 0, t > 0
        hit, n_ticket, n_kept = int((kept & tk).sum()), int(tk.sum()), int(kept.sum())
        tot_hit, tot_ticket, tot_kept = tot_hit + hit, tot_ticket + n_ticket, tot_kept + n_kept
        row = {"layer": i, "recall": hit / n_ticket if n_ticket else 1.0,
               "precision": hit / n_kept if n_kept else 0.0, "kept": n_kept, "ticket": n_ticket}
        if i < len(weight_masks) - 1:
            no_in = ~kept.any(dim=1)
            no_out = ~(weight_masks[i + 1] > 0).any(dim=0)
            row["dead_units"] = int((no_in | no_out).sum())
        layers.append(row)
    collapsed = not bool(reachable(weight_masks)[-1].any())
    return {
        "recall": tot_hit / tot_ticket if tot_ticket else 1.0,
        "precision": tot_hit / tot_kept if tot_kept else 0.0,
        "collapsed": collapsed,
        "layers": layers,
    }
