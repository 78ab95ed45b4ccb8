"""What a planted task is (:class:`Task`), and the built-in tasks' target functions and samplers.

A task gives its input/output sizes, the kind of problem (which fixes loss and metrics), how to draw
labelled samples and its ticket. The built-in task classes live with their tickets in
:mod:`plantnseek.core.tickets`; :mod:`plantnseek.core.registry` turns a dataset string into a checked task.
"""
from __future__ import annotations

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


class Task:
    """Base class of a planted task (optional: any class with the same members works).

    A task names its shapes and kind, draws labelled samples, and builds its ticket:

    * ``d_in``, ``d_out``: input and output sizes (``d_out`` is the number of classes for classification);
    * ``classification``: cross-entropy and accuracy if true, MSE and rescaled MSE otherwise;
    * ``sample(rng, n, noise)``: ``n`` inputs ``[n, d_in]`` and labels, int classes ``[n]`` or float
      targets ``[n, d_out]``, drawn only from ``rng`` so that the run's seed fixes them;
    * ``ticket(depth)``: ``depth - 1`` pairs ``(weight [out, in], bias [out])`` computing the task with
      ``depth`` layers (input and output included); zero entries are not part of the ticket.

    Defaults given here: ``max_noise`` (None: any noise >= 0) and ``name`` (None: the dataset string
    it was looked up by). The built-in tasks (``plantnseek.core.tickets``) are subclasses.
    """

    d_in: int
    d_out: int
    classification: bool
    name: str | None = None
    max_noise: float | None = None
