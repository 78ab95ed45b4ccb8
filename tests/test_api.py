"""The README's Python API example runs as written, and each call returns what its command writes."""
from __future__ import annotations

import csv
import json
import os
import re

import pytest

import plantnseek
from plantnseek.core.errors import UsageError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_block() -> str:
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs_and_returns_what_the_commands_write(in_tmp, capsys):
    namespace: dict = {}
    exec(compile(readme_block(), "README.md", "exec"), namespace)
    t, summary, rows = namespace["t"], namespace["summary"], namespace["rows"]
    # 124: the circle ticket at depth 4 (tests/test_tickets.py), 520 weights by hand
    assert (t["nonzero"], t["total"], t["min_width"]) == (124, 2 * 20 + 20 * 20 + 20 * 4, 20)
    fit_dir, = [d for d in (in_tmp / "lightning_logs/circle/d4w20/synflow/0.2/seed1").iterdir()]
    assert json.loads((fit_dir / "summary.json").read_text()) == json.loads(json.dumps(summary))
    with open(in_tmp / "lightning_logs/sweeps/api/results.csv", newline="") as f:
        assert rows == list(csv.DictReader(f))
    assert sorted(r["pruner"] for r in rows) == ["mag", "synflow"] and all(r["status"] == "completed" for r in rows)
    assert (in_tmp / "lightning_logs/sweeps/api/sweep.yaml").exists()  # the resume command's config exists


def test_bad_input_raises_the_commands_message(in_tmp):
    with pytest.raises(UsageError, match="minimum width is 20"):
        plantnseek.plant_ticket("circle", width=5)
    with pytest.raises(UsageError, match="unknown axis 'colour'"):
        plantnseek.run_sweep({"grid": {"colour": [1]}}, "--out", "sw")
