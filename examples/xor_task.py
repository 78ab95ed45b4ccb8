"""A user task with a ticket written by hand: XOR of signs (is x1 * x2 > 0?), two classes.

Run plantnseek from this directory (or put it on PYTHONPATH) and name the task by its dotted path:

    plantnseek ticket --dataset xor_task.Xor --depth 4 --width 20

The ticket uses |a + b| - |a - b| = 2 sign(ab) min(|a|, |b|): class 1 scores |x1 + x2|, class 0
scores |x1 - x2|, each absolute value as relu(v) + relu(-v). Four hidden units, 12 weights at depth 3;
every extra layer passes the four non-negative units through an identity (4 more weights).
"""
from __future__ import annotations

import numpy as np

from plantnseek.core.tasks import Task


class Xor(Task):
    """Inputs uniform in [-1, 1]^2; label 1 when x1 and x2 have the same sign; noise flips a label."""

    d_in, d_out, classification = 2, 2, True
    max_noise = 1.0  # noise is a flip probability

    def sample(self, rng: np.random.Generator, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
        x = rng.uniform(-1.0, 1.0, size=(n, 2))
        label = (x[:, 0] * x[:, 1] > 0).astype(np.int64)
        flip = rng.uniform(0.0, 1.0, size=n) < noise
        return x, np.where(flip, 1 - label, label)

    def ticket(self, depth: int) -> list[tuple[np.ndarray, np.ndarray]]:
        first = np.array([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]])  # +-(x1 + x2), +-(x1 - x2)
        middle = [(np.eye(4), np.zeros(4)) for _ in range(depth - 3)]
        last = np.array([[0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]])  # class 0: |x1 - x2|, class 1: |x1 + x2|
        return [(first, np.zeros(4)), *middle, (last, np.zeros(2))]
