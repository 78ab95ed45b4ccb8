"""Files a reader may open while they are being written (summaries, results.csv, run configs): each is
written whole to a temporary file and renamed into place, so a reader sees the old file or the new one,
never a part, and a run killed mid-write leaves no half file behind."""
from __future__ import annotations

import json
import math
import os
from typing import Any


def atomic_write(path: str, text: str) -> str:
    """Write ``text`` to ``path`` atomically (a temporary file in the same folder, then a rename)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", newline="") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def clean(x: Any) -> Any:
    """JSON-safe: non-finite floats become None (JSON has no NaN or infinity)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    return x


def write_summary(directory: str, data: dict[str, Any], filename: str = "summary.json") -> str:
    """A run's summary (or any JSON record) as ``directory/filename``, atomically."""
    return atomic_write(os.path.join(directory, filename), json.dumps(clean(data), indent=1))
