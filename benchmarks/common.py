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


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)
