"""The built-in tasks and their tickets: sparse ReLU networks that solve each task exactly (up to the knots).

Every ticket is a list of layers ``(weight[out, in], bias[out])`` in float64. The constructions follow
the Plant 'n' Seek paper: a univariate function is a sum of ReLU hinges at evenly spaced knots
(:func:`hinge_layers`); deeper tickets add identity / absolute-value / rotation layers in front so that
every depth >= 3 holds the same function. Zero entries are not part of the ticket; the count of non-zero
weights is the ticket's size and matches the reference implementation exactly (including entries that
are non-zero only through float rounding, which the reference counts too).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from plantnseek.core.tasks import (CIRCLE_BOUNDS, CIRCLE_KNOTS, HELIX_FUNCS, HELIX_KNOTS, Task, sample_circle,
                              sample_helix, sample_relu)

Layer = tuple[np.ndarray, np.ndarray]
Fn = Callable[[np.ndarray], np.ndarray]

MIN_DEPTH = 3


def alternating_signs(n: int) -> np.ndarray:
    signs = np.ones(n)
    signs[1::2] = -1
    return signs


def hinge_layers(knots: np.ndarray, signs: np.ndarray, fn: Fn) -> tuple[Layer, Layer]:
    """Two layers 1 -> n -> 1 that interpolate ``fn`` linearly between ``knots``.

    Hidden unit i is ``relu(sign_i * (x - knot_i))``. A negative sign hinges the other way, which adds
    a linear term; the first unit (always positive) absorbs those slopes so the sum stays the
    interpolant. The last piece is extrapolated one knot spacing beyond the last knot.
    """
    if np.any(np.diff(knots) <= 0):
        raise ValueError("knots must be strictly increasing")
    signs = signs.astype(float).copy()
    signs[0] = 1.0
    w1 = signs
    b1 = -knots * signs
    xt = np.concatenate([knots, [knots[-1] + (knots[1] - knots[0])]])
    yt = np.asarray(fn(xt), dtype=float).reshape(-1)
    slopes = (yt[1:] - yt[:-1]) / (xt[1:] - xt[:-1])
    kinks = slopes[1:] - slopes[:-1]
    w2 = np.concatenate([[slopes[0] + np.sum(kinks[signs[1:] == -1])], kinks])
    b2 = np.asarray(fn(knots[:1]), dtype=float).reshape(-1)[0] - np.sum(
        np.maximum(knots[0] * w1 + b1, 0.0) * w2
    )
    return (w1.reshape(-1, 1), b1), (w2.reshape(1, -1), np.array([b2]))


def _identity_chain(n_layers: int, dim: int) -> list[Layer]:
    return [(np.eye(dim), np.zeros(dim)) for _ in range(n_layers)]


def _shift_univariate(fn: Fn) -> Fn:
    """Tickets of depth > 3 first compute relu(x + 1) in [0, 2]; the hinges then see x + 1."""
    return lambda x: fn(x - 1)


def univariate_ticket(fns: tuple[Fn, ...], depth: int, n_knots: int) -> list[Layer]:
    """Ticket for ``[-1, 1] -> R^k`` (relu-free univariate targets: helix).

    depth 3: hinges on [-1, 1]. depth > 3: relu(x + 1), hinges on [0, 2]; depth > 4 adds identity layers,
    carrying the outputs through relu by a +1 offset that the last layer removes.
    """
    if depth == 3:
        knots, pre = np.linspace(-1, 1, n_knots), []
        shifted = fns
    else:
        knots, pre = np.linspace(0, 2, n_knots), [(np.ones((1, 1)), np.ones(1))]
        shifted = tuple(_shift_univariate(f) for f in fns)
    signs = alternating_signs(n_knots)
    outs = [hinge_layers(knots, signs, f) for f in shifted]
    (w1, b1), _ = outs[0]
    w2 = np.concatenate([o[1][0] for o in outs], axis=0)
    b2 = np.concatenate([o[1][1] for o in outs])
    layers = pre + [(w1, b1), (w2, b2)]
    if depth > 4:
        k = len(fns)
        layers[-1] = (w2, b2 + 1)
        tail = _identity_chain(depth - 4, k)
        tail[-1] = (tail[-1][0], -np.ones(k))
        layers += tail
    return layers


def relu_ticket(depth: int) -> list[Layer]:
    """relu(x) through depth - 1 single-unit layers."""
    return [(np.ones((1, 1)), np.zeros(1)) for _ in range(depth - 1)]


def _square(x: np.ndarray) -> np.ndarray:
    return x**2


def _class_readout(hidden: list[np.ndarray], bias0: float, n_class: int) -> Layer:
    """Linear class scores a_j * r^2 + c_j with a_j doubling per class, crossing at the class bounds.

    ``hidden`` are the hinge read-out weights of the blocks whose sum is r^2 (before ``bias0``).
    """
    w_r2 = np.concatenate(hidden)
    weight = np.zeros((n_class, w_r2.size))
    bias = np.zeros(n_class)
    a, a_old, b_old = 5.0, 5.0, 0.0
    weight[0] = a * w_r2
    bias[0] = bias0 * a
    for j in range(1, n_class):
        a = 2 * a
        weight[j] = a * w_r2
        bias[j] = (a_old - a) * CIRCLE_BOUNDS[j - 1] + b_old + bias0 * a
        b_old = (a_old - a) * CIRCLE_BOUNDS[j - 1] + b_old
        a_old = a
    return weight, bias


def _block_diag_rows(rows: list[np.ndarray], cols: list[tuple[int, np.ndarray]], width: int) -> np.ndarray:
    """Weight (width, len(rows)) that feeds input ``i`` into the units given by ``cols[i]``."""
    weight = np.zeros((width, len(cols)))
    for i, (start, values) in enumerate(cols):
        weight[start : start + values.size, i] = values
    return weight


def circle_ticket(depth: int, n_knots: int = CIRCLE_KNOTS) -> list[Layer]:
    """Ticket for the four-class circle: class scores linear in r^2 = x1^2 + x2^2.

    depth 3: x_i^2 by hinges on [-1, 1]. depth 4: |x_i| = relu(x) + relu(-x) first, hinges on [0, 1].
    depth >= 5: |x_i| as two layers, then depth - 5 rotation layers (each halves an angle, keeping the
    norm in a (v, v_perp) pair), then hinges for the squares of the two components.
    """
    n_class = len(CIRCLE_BOUNDS) + 1
    layers: list[Layer] = []
    if depth in (3, 4):
        knots = np.linspace(-1, 1, n_knots) if depth == 3 else np.linspace(0, 1, n_knots)
        signs = alternating_signs(n_knots)
        signs[-1] = -1
        (w1, b1), (w2, b2) = hinge_layers(knots, signs, _square)
        if depth == 4:
            split = np.zeros((4, 2))
            split[[0, 1], 0] = [1, -1]
            split[[2, 3], 1] = [1, -1]
            layers.append((split, np.zeros(4)))
            n_in, blocks = 4, [(0, 0), (1, 0), (2, n_knots), (3, n_knots)]
        else:
            n_in, blocks = 2, [(0, 0), (1, n_knots)]
        first = np.zeros((2 * n_knots, n_in))
        for i, start in blocks:
            first[start : start + n_knots, i] = w1[:, 0]
        layers.append((first, np.concatenate([b1, b1])))
        layers.append(_class_readout([w2[0], w2[0]], 2 * b2[0], n_class))
        return layers

    split = np.zeros((4, 2))
    split[[0, 1], 0] = [1, -1]
    split[[2, 3], 1] = [1, -1]
    merge = np.zeros((2, 4))
    merge[0, [0, 1]] = 1
    merge[1, [2, 3]] = 1
    layers += [(split, np.zeros(4)), (merge, np.zeros(2))]
    v_old = np.eye(2)
    phi = np.pi / 2
    v = np.zeros(2)
    for _ in range(depth - 5):
        phi = phi / 2
        v = np.array([np.cos(phi), np.sin(phi)])
        along = v[0] * v_old[0, :] + v[1] * v_old[1, :]
        across = v[1] * v_old[0, :] - v[0] * v_old[1, :]
        layers.append((np.stack([along, across, -across]), np.zeros(3)))
        v_old = np.array([[v[0], v[1], v[1]], [v[1], -v[0], -v[0]]])
    sq_range = np.sqrt(2)
    if depth == 5:
        ortho_range, n_sq, n_ortho = 1.0, n_knots, n_knots
    else:
        ortho_range = np.abs(v[1]) * np.sqrt(CIRCLE_BOUNDS[-1]) + 0.01
        n_sq = int(min(np.ceil(sq_range / (ortho_range + sq_range) * n_knots * 2), n_knots * 2 - 3))
        n_ortho = int(max(2 * n_knots - n_sq, 3))

    def last_positive(n: int) -> np.ndarray:
        s = alternating_signs(n)
        s[-1] = 1
        return s

    (wo1, bo1), (wo2, bo2) = hinge_layers(np.linspace(0, ortho_range, n_ortho), last_positive(n_ortho), _square)
    if depth == 5:
        first = np.zeros((2 * n_ortho, 2))
        first[:n_ortho, 0] = wo1[:, 0]
        first[n_ortho:, 1] = wo1[:, 0]
        layers.append((first, np.concatenate([bo1, bo1])))
        layers.append(_class_readout([wo2[0], wo2[0]], bo2[0] + bo2[0], n_class))
        return layers
    (ws1, bs1), (ws2, bs2) = hinge_layers(np.linspace(0, sq_range, n_sq), last_positive(n_sq), _square)
    first = np.zeros((n_sq + n_ortho, 3))
    first[:n_sq, 0] = ws1[:, 0]
    first[n_sq:, 1] = wo1[:, 0]
    first[n_sq:, 2] = wo1[:, 0]
    layers.append((first, np.concatenate([bs1, bo1])))
    layers.append(_class_readout([ws2[0], wo2[0]], bs2[0] + bo2[0], n_class))
    return layers


class Circle(Task):
    """Four classes of rings r^2 < 0.2, 0.5, 0.7 in [-1, 1]^2; noise moves a label to the runner-up class."""

    d_in, d_out, classification, max_noise = 2, 4, True, 1.0

    def sample(self, rng: np.random.Generator, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
        return sample_circle(rng, n, noise)

    def ticket(self, depth: int) -> list[Layer]:
        return circle_ticket(depth)


class Relu(Task):
    """y = max(0, x) on [-1, 1] with Gaussian noise of std ``noise``."""

    d_in, d_out, classification = 1, 1, False

    def sample(self, rng: np.random.Generator, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
        return sample_relu(rng, n, noise)

    def ticket(self, depth: int) -> list[Layer]:
        return relu_ticket(depth)


class Helix(Task):
    """A 3-D helix of x in [-1, 1] with Gaussian noise of std ``noise``."""

    d_in, d_out, classification = 1, 3, False

    def sample(self, rng: np.random.Generator, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
        return sample_helix(rng, n, noise)

    def ticket(self, depth: int) -> list[Layer]:
        return univariate_ticket(HELIX_FUNCS, depth, HELIX_KNOTS)


BUILTIN_TASKS: dict[str, type[Task]] = {"circle": Circle, "relu": Relu, "helix": Helix}


def min_width(ticket: list[Layer]) -> int:
    """Widest hidden layer of the ticket: the network's width must be at least this."""
    return max(w.shape[0] for w, _ in ticket[:-1])
