"""Layer-wise budgets: how many entries each prunable tensor keeps at a kept fraction ``density``.

Pruning at a density is two choices: how many parameters each layer keeps (the budget, here) and which
ones (the scores, :func:`plantnseek.core.masking.topk_masks`). Separating them lets any scorer be run
under the layer-wise ratios of the sparse-training literature:

- ``global``: no per-tensor count (one ranking over all tensors decides): :func:`keep_counts` gives None.
- ``uniform``: every tensor keeps ``round(density * n_t)`` (the reference's ``scope: local``).
- ``erk`` (Evci et al. 2020, "Rigging the lottery"): layer density ``eps * (n_in + n_out) / (n_in * n_out)``,
  layers whose density would exceed 1 kept dense and ``eps`` re-solved for the others.
- ``balanced`` (Gadhikar, Mukherjee & Burkholz, ICML 2023): every layer keeps the same number ``x`` of
  parameters; a layer smaller than ``x`` is kept dense and ``x`` re-solved for the others.
- ``pyramidal`` (same paper): layer ``l`` (1 = first, by depth) has density ``r ** l``, with ``r`` in
  [0, 1] the root of ``sum_l m_l r ** l = K`` (``m_l`` the layer's prunable entries).

Every rule but ``uniform`` keeps exactly ``K = round(density * N)`` entries (``N`` all prunable entries):
the real-valued per-tensor counts sum to ``K`` and are rounded by largest remainder. A layer's weight and
bias (when prunable) get the layer's density. ERK and balanced are computed in exact rationals so that
ties (and hand-checked examples) do not depend on floating-point noise.
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Mapping, Sequence

from plantnseek.core.errors import UsageError

BUDGETS = ("global", "uniform", "erk", "balanced", "pyramidal")
#: budgets that need each tensor's layer (and, for erk, the layers' fans)
LAYERED = ("erk", "balanced", "pyramidal")


def check_budget(budget: str) -> None:
    """Refuse a name that is not a budget."""
    if budget not in BUDGETS:
        raise UsageError(f"unknown budget {budget!r}; allowed: {', '.join(BUDGETS)}")


def layer_fans(shapes: Sequence[Sequence[int]], layers: Sequence[int]) -> dict[int, tuple[int, int]]:
    """``{layer: (n_in, n_out)}`` from the 2-D (weight, ``[n_out, n_in]``) shapes among ``shapes``."""
    return {l: (int(s[1]), int(s[0])) for s, l in zip(shapes, layers) if len(s) == 2}


def keep_counts(budget: str, sizes: Sequence[int], layers: Sequence[int],
                fans: Mapping[int, tuple[int, int]], density: float) -> list[int] | None:
    """Entries each tensor keeps (``sizes[t]`` entries, in layer ``layers[t]``); None for ``global``.

    ``fans[l] = (n_in, n_out)`` of layer ``l`` (used by ``erk``). Refuses an unknown budget, mismatched
    lengths, and a density whose target ``round(density * N)`` is negative or above ``N``.
    """
    check_budget(budget)
    if budget == "global":
        return None
    if len(sizes) != len(layers):
        raise UsageError(f"{len(sizes)} tensor sizes but {len(layers)} layer indices; give one layer per tensor")
    if not (isinstance(density, (int, float)) and math.isfinite(density)):
        raise UsageError(f"density {density!r} is invalid; it must be a finite number in [0, 1]")
    if budget == "uniform":
        counts = [int(round(density * n)) for n in sizes]  # masking.keep_count, per tensor
        if any(not 0 <= k <= n for k, n in zip(counts, sizes)):
            raise UsageError(f"density {density} is invalid for budget 'uniform'; allowed: [0, 1]")
        return counts
    total = sum(sizes)
    target = int(round(density * total))  # masking.keep_count over all tensors
    if not 0 <= target <= total:
        raise UsageError(f"density {density} asks to keep {target} of {total} parameters; "
                         f"budget {budget!r} needs a density in [0, 1]")
    per_layer: dict[int, int] = {}
    for n, l in zip(sizes, layers):
        per_layer[l] = per_layer.get(l, 0) + n
    if budget == "erk":
        missing = sorted(l for l in per_layer if l not in fans)
        if missing:
            raise UsageError(f"budget 'erk' needs the fans (n_in, n_out) of layers {missing}; give their weights")
        density_of = _erk(per_layer, fans, target)
    elif budget == "balanced":
        density_of = _balanced(per_layer, target)
    else:
        density_of = _pyramidal(per_layer, target)
    return _apportion([density_of[l] * n for n, l in zip(sizes, layers)], sizes, target)


def _erk(sizes: dict[int, int], fans: Mapping[int, tuple[int, int]], target: int) -> dict[int, Fraction]:
    """Layer densities ``min(1, eps * (n_in + n_out) / (n_in * n_out))`` with sum of kept = ``target``.

    Capping a layer only frees budget for the rest (``eps`` grows), so every layer over 1 at the current
    ``eps`` is capped at once and ``eps`` re-solved, until none is over.
    """
    raw = {l: Fraction(fans[l][0] + fans[l][1], fans[l][0] * fans[l][1]) for l in sizes}
    dense: set[int] = set()
    while True:
        free = [l for l in sizes if l not in dense]
        weight = sum((raw[l] * sizes[l] for l in free), Fraction(0))
        eps = (target - sum(sizes[l] for l in dense)) / weight if weight else Fraction(0)
        over = {l for l in free if eps * raw[l] > 1}
        if not over:
            return {l: Fraction(1) if l in dense else eps * raw[l] for l in sizes}
        dense |= over


def _balanced(sizes: dict[int, int], target: int) -> dict[int, Fraction]:
    """Layer densities giving every layer the same kept count ``x`` (``min(x, m_l)``), summing to ``target``.

    Layers smaller than ``x`` are kept dense and ``x`` is re-solved over the others (water filling).
    """
    dense: set[int] = set()
    while True:
        free = [l for l in sizes if l not in dense]
        x = Fraction(target - sum(sizes[l] for l in dense), len(free)) if free else Fraction(0)
        over = {l for l in free if sizes[l] < x}
        if not over:
            return {l: Fraction(1) if l in dense else x / sizes[l] for l in sizes}
        dense |= over


def _pyramidal(sizes: dict[int, int], target: int) -> dict[int, float]:
    """Layer densities ``r ** depth`` (depth 1, 2, ... in layer order), ``sum m_l r ** depth = target``.

    The left side grows strictly from 0 (r = 0) to N (r = 1), so the root is unique: found by bisection.
    """
    depth = {l: i + 1 for i, l in enumerate(sorted(sizes))}
    total = sum(sizes.values())
    if target in (0, total):
        return {l: float(target == total) for l in sizes}

    def kept(r: float) -> float:
        return sum(m * r ** depth[l] for l, m in sizes.items())

    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if kept(mid) < target else (lo, mid)
    r = (lo + hi) / 2
    return {l: r ** depth[l] for l in sizes}


def _apportion(reals: Sequence, sizes: Sequence[int], target: int) -> list[int]:
    """Integers near ``reals`` summing to ``target``: floors, plus one for the largest fractional parts
    (ties to the lower tensor index), never above a tensor's size."""
    reals = [min(max(c, 0), n) for c, n in zip(reals, sizes)]
    counts = [math.floor(c) for c in reals]
    order = sorted(range(len(reals)), key=lambda i: (-(reals[i] - counts[i]), i))
    short = target - sum(counts)
    for i in [i for i in order if counts[i] < sizes[i]][:max(short, 0)]:
        counts[i] += 1
    return counts
