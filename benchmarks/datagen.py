"""Generating each task's 10,000 samples: plantnseek's vectorised sampler versus a per-sample Python loop
doing the same mathematics (the reference's way). Goal: >= 50x faster.

Also checks that both draw the same distribution (independent seeds, so not sample by sample): a
two-sample Kolmogorov-Smirnov statistic per input and output column, against its critical value at
alpha = 0.001, and the class frequencies for circle.

    .venv/bin/python benchmarks/datagen.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import emit, stats, timeit  # noqa: E402

from plantnseek.core.registry import get_task  # noqa: E402
from plantnseek.core.tasks import HELIX_FUNCS, circle_logits  # noqa: E402

N = 10_000


def loop_circle(rng: np.random.Generator, n: int, noise: float):
    data = np.zeros((n, 3))
    for i in range(n):
        x = rng.uniform(-1.0, 1.0, size=2)
        logits = circle_logits(np.array([x @ x]))[0]
        order = np.argsort(logits)
        label = order[-1]
        if rng.uniform(0.0, 1.0) <= noise:
            label = order[-2]
        data[i] = (x[0], x[1], label)
    return data


def loop_relu(rng: np.random.Generator, n: int, noise: float):
    data = np.zeros((n, 2))
    for i in range(n):
        x = rng.uniform(-1.0, 1.0)
        data[i] = (x, max(x, 0.0) + rng.normal(0.0, noise))
    return data


def loop_helix(rng: np.random.Generator, n: int, noise: float):
    data = np.zeros((n, 4))
    for i in range(n):
        x = rng.uniform(-1.0, 1.0)
        data[i, 0] = x
        for j, f in enumerate(HELIX_FUNCS):
            data[i, 1 + j] = float(f(np.array(x))) + rng.normal(0.0, noise)
    return data


LOOPS = {"circle": loop_circle, "relu": loop_relu, "helix": loop_helix}


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    return float(np.abs(np.searchsorted(a, grid, side="right") / len(a)
                        - np.searchsorted(b, grid, side="right") / len(b)).max())


def same_distribution(name: str, n: int) -> dict:
    """Compare the vectorised and loop samplers' draws (seeds 1 and 2) column by column."""
    x, y = get_task(name).sample(np.random.default_rng(1), n, 0.01)
    loop = LOOPS[name](np.random.default_rng(2), n, 0.01)
    fast = np.concatenate([np.asarray(x, dtype=float).reshape(n, -1), np.asarray(y, dtype=float).reshape(n, -1)], axis=1)
    critical = float(np.sqrt(-np.log(0.001 / 2) / 2) * np.sqrt(2 / n))
    ks = [round(ks_statistic(fast[:, j], loop[:, j]), 4) for j in range(loop.shape[1])]
    out = {"ks_per_column": ks, "ks_critical_0.001": round(critical, 4), "same": all(k < critical for k in ks)}
    if name == "circle":
        freq = lambda labels: [round(float(np.mean(labels == c)), 4) for c in range(4)]  # noqa: E731
        out["class_freq_vectorised"], out["class_freq_loop"] = freq(fast[:, -1]), freq(loop[:, -1])
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    for name in LOOPS:
        task = get_task(name)
        fast = timeit(lambda: task.sample(np.random.default_rng(0), N, 0.01), args.repeats)
        slow = timeit(lambda: LOOPS[name](np.random.default_rng(0), N, 0.01), max(2, args.repeats // 2))
        emit({"benchmark": "datagen", "task": name, "samples": N, "vectorised_s": stats(fast),
              "loop_s": stats(slow), "speedup_median": round(stats(slow)["median"] / stats(fast)["median"], 1),
              "goal": ">= 50", "distribution": same_distribution(name, N)})


if __name__ == "__main__":
    main()
