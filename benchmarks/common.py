"""Shared helpers: repeat a measurement, report min and median, print one JSON line."""
from __future__ import annotations

import json
import statistics
import time
from typing import Any, Callable


def timeit(fn: Callable[[], Any], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def stats(times: list[float]) -> dict[str, float]:
    return {"min": round(min(times), 6), "median": round(statistics.median(times), 6)}


def training_flop_per_sample(widths: list[int]) -> int:
    """Arithmetic of one training sample of an MLP with these widths: per layer, forward, weight gradient
    and input gradient 2·in·out each, except the first layer's input, which needs no gradient."""
    return 6 * sum(a * b for a, b in zip(widths[:-1], widths[1:])) - 2 * widths[0] * widths[1]


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)
