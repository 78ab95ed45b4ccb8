"""The three planted tasks: their shapes, target functions and vectorised samplers.

A task is pure data: input/output sizes, the kind of problem (which fixes loss and metrics) and how
to draw labelled samples. Everything else (ticket, model, data module) looks tasks up here, so adding
a task means adding one entry.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

# Circle: class boundaries on r^2 = x1^2 + x2^2 (four classes).
CIRCLE_BOUNDS = (0.2, 0.5, 0.7)
CIRCLE_KNOTS = 10
HELIX_KNOTS = 30


def helix_t(x: np.ndarray) -> np.ndarray:
    return 5 * np.pi + 3 * np.pi * x


def helix_x(x: np.ndarray) -> np.ndarray:
    t = helix_t(x)
    return t * np.cos(t) / (8 * np.pi)


def helix_y(x: np.ndarray) -> np.ndarray:
    t = helix_t(x)
    return t * np.sin(t) / (8 * np.pi)


def helix_z(x: np.ndarray) -> np.ndarray:
    return helix_t(x) / (8 * np.pi)


HELIX_FUNCS: tuple[Callable[[np.ndarray], np.ndarray], ...] = (helix_x, helix_y, helix_z)


def circle_logits(r2: np.ndarray) -> np.ndarray:
    """Piecewise-linear class scores in r^2 whose pairwise crossings are the class bounds.

    Class j wins on the j-th interval between bounds; the runner-up is the neighbouring class that a
    noisy label is moved to.
    """
    slopes = np.array([0.1, 0.2, 0.4, 0.8])
    offsets = np.zeros(4)
    for j, bound in enumerate(CIRCLE_BOUNDS, start=1):
        offsets[j] = offsets[j - 1] + (slopes[j - 1] - slopes[j]) * bound
    return r2[:, None] * slopes + offsets


def sample_circle(rng: np.random.Generator, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    x = rng.uniform(-1.0, 1.0, size=(n, 2))
    order = np.argsort(circle_logits((x**2).sum(axis=1)), axis=1)
    best, second = order[:, -1], order[:, -2]
    flip = rng.uniform(0.0, 1.0, size=n) <= noise
    return x, np.where(flip, second, best)


def sample_relu(rng: np.random.Generator, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    x = rng.uniform(-1.0, 1.0, size=(n, 1))
    return x, np.maximum(x, 0.0) + rng.normal(0.0, noise, size=(n, 1))


def sample_helix(rng: np.random.Generator, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    x = rng.uniform(-1.0, 1.0, size=(n, 1))
    y = np.concatenate([f(x) for f in HELIX_FUNCS], axis=1)
    return x, y + rng.normal(0.0, noise, size=(n, 3))


@dataclass(frozen=True)
class Task:
    """Static description of one planted task."""

    name: str
    d_in: int
    d_out: int
    classification: bool
    sample: Callable[[np.random.Generator, int, float], tuple[np.ndarray, np.ndarray]]
    max_noise: float | None  # circle noise is a probability

    @property
    def metric_name(self) -> str:
        return "accuracy" if self.classification else "mse"


TASKS: dict[str, Task] = {
    "circle": Task("circle", 2, 4, True, sample_circle, 1.0),
    "relu": Task("relu", 1, 1, False, sample_relu, None),
    "helix": Task("helix", 1, 3, False, sample_helix, None),
}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        from plantnseek.errors import UsageError

        raise UsageError(f"unknown dataset {name!r}; allowed: {', '.join(TASKS)}") from None
