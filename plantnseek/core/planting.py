"""He-scaled initialisation and planting a ticket into it.

Planting walks the ticket layer by layer. Each ticket unit is placed on the unused network unit whose
initial (bias, incoming ticket weights) best match the ticket unit's up to a positive factor, with the
same signs; the unit's ticket weights are then overwritten by the ticket's, rescaled by that factor.
Because ReLU is positively homogeneous the factor passes through the unit, so the next layer divides
its ticket weights by it. The masked network therefore computes the ticket times a per-output scale.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from plantnseek.core.errors import UsageError
from plantnseek.core.tickets import Layer, min_width


def he_scaled_init(widths: list[int], rng: np.random.Generator) -> list[Layer]:
    """Weights N(0, 2/fan_in); bias std is the product of the sqrt(2/fan_in) factors so far."""
    layers: list[Layer] = []
    bias_std = 1.0
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        std = np.sqrt(2 / fan_in)
        bias_std *= std
        layers.append((rng.normal(0.0, std, size=(fan_out, fan_in)), rng.normal(0.0, bias_std, size=fan_out)))
    return layers


@dataclass
class PlantedNetwork:
    """A dense initialisation holding a planted ticket (all float64, weights ``[out, in]``)."""

    layers: list[Layer]  # the dense network's initial weights and biases
    ticket: list[Layer]  # planted ticket values in network coordinates, zero off the ticket
    scale: np.ndarray  # per-output factor: masked network output = ticket output * scale

    @property
    def weight_masks(self) -> list[np.ndarray]:
        return [w != 0 for w, _ in self.ticket]

    @property
    def bias_masks(self) -> list[np.ndarray]:
        return [b != 0 for _, b in self.ticket]


def _best_unit(candidates: np.ndarray, target: np.ndarray, free: np.ndarray) -> tuple[int, float] | None:
    """Index and factor of the free column of ``candidates`` closest to a positive multiple of ``target``.

    ``candidates`` is (k, n): per unit its bias and incoming ticket weights. Returns None if no free unit
    has the target's signs (on the target's non-zero entries) and a positive least-squares factor.
    """
    with np.errstate(invalid="ignore", divide="ignore"):  # an all-zero target (a unit with only outgoing weights)
        factor = target @ candidates / (target @ target)
    dist = np.abs(candidates - target[:, None] * factor).sum(axis=0)
    nz = target != 0
    same_sign = np.all(np.sign(candidates[nz]) == np.sign(target[nz])[:, None], axis=0)
    ok = free & (factor > 0) & same_sign
    if not ok.any():
        return None
    idx = int(np.flatnonzero(ok)[np.argmin(dist[ok])])
    return idx, float(factor[idx])


def plant(ticket: list[Layer], widths: list[int], rng: np.random.Generator) -> PlantedNetwork:
    """Draw a He-scaled network of ``widths`` and plant ``ticket`` into it."""
    need = min_width(ticket)
    hidden = widths[1:-1]
    if min(hidden) < need:
        raise UsageError(f"width {min(hidden)} cannot hold this ticket; the minimum width is {need}")
    layers = he_scaled_init(widths, rng)
    weights = [w.copy() for w, _ in layers]
    biases = [b.copy() for _, b in layers]
    planted_w = [np.zeros_like(w) for w in weights]
    planted_b = [np.zeros_like(b) for b in biases]
    in_units = np.arange(widths[0])  # network unit carrying each ticket input
    in_scale = np.ones(widths[0])
    for l, (tw, tb) in enumerate(ticket):
        n_ticket = tw.shape[0]
        free = np.ones(widths[l + 1], dtype=bool)
        units = np.zeros(n_ticket, dtype=int)
        scales = np.ones(n_ticket)
        for i in range(n_ticket):
            rows = np.flatnonzero(tw[i])
            target = np.concatenate([[tb[i]], tw[i, rows] / in_scale[rows]])
            net_rows = in_units[rows]
            candidates = np.vstack([biases[l][None, :], weights[l][:, net_rows].T])
            found = _best_unit(candidates, target, free)
            if found is None:
                # No unit matches the signs: take the first free one and keep its initial magnitude.
                unit = int(np.flatnonzero(free)[0])
                norm_t = np.linalg.norm(target)
                factor = float(np.linalg.norm(candidates[:, unit]) / norm_t) if norm_t > 0 else 1.0
                factor = factor if factor > 0 else 1.0
            else:
                unit, factor = found
            free[unit] = False
            units[i], scales[i] = unit, factor
            weights[l][unit, net_rows] = factor * target[1:]
            biases[l][unit] = factor * target[0]
            planted_w[l][unit, net_rows] = weights[l][unit, net_rows]
            planted_b[l][unit] = biases[l][unit]
        in_units, in_scale = units, scales
    # Put the outputs back in the ticket's order so output j is the ticket's output j.
    order = in_units
    weights[-1], biases[-1] = weights[-1][order], biases[-1][order]
    planted_w[-1], planted_b[-1] = planted_w[-1][order], planted_b[-1][order]
    return PlantedNetwork(list(zip(weights, biases)), list(zip(planted_w, planted_b)), in_scale)


def ticket_forward(ticket: list[Layer], scale: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The planted ticket alone on inputs ``x`` [n, d_in], divided by its output scale."""
    for l, (w, b) in enumerate(ticket):
        x = x @ w.T + b
        if l < len(ticket) - 1:
            x = np.maximum(x, 0.0)
    return x / scale
