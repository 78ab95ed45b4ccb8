"""examples/: the hand-written XOR ticket solves its task, and the README walk-through runs as written
(tiny: one epoch, widths 20 and 30 instead of 50 and 100, and a two-run slice of the sweep)."""
import csv
import json
import os
import re
import shlex
import shutil

import numpy as np
import pytest

from plantnseek.cli.entry import main
from plantnseek.core.planting import ticket_forward

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
TINY = {("--post-epochs", "5"): "1", ("--post-epochs", "10"): "1", ("--width", "50"): "20", ("--width", "100"): "30"}
SWEEP_SLICE = ["--grid", "width=30", "--grid", "seed=1", "--grid", "pruner=ticket,synflow",
               "--grid", "pruning.post_epochs=1", "--grid", "data.n_samples=2000", "--workers", "1"]


def readme_commands() -> list[list[str]]:
    with open(os.path.join(EXAMPLES, "README.md")) as f:
        blocks = re.findall(r"```bash\n(.*?)```", f.read(), flags=re.S)
    return [shlex.split(line)[1:] for block in blocks for line in block.splitlines()
            if line.startswith("plantnseek ")]


@pytest.mark.parametrize("depth", [3, 4, 6])
def test_xor_ticket_computes_the_sign_of_x1_x2(depth):
    import sys

    sys.path.insert(0, EXAMPLES)
    try:
        from xor_task import Xor
    finally:
        sys.path.remove(EXAMPLES)
    x = np.random.default_rng(depth).uniform(-1, 1, size=(2000, 2))
    scores = ticket_forward(Xor().ticket(depth), np.ones(2), x)
    np.testing.assert_array_equal(scores.argmax(axis=1), (x[:, 0] * x[:, 1] > 0).astype(int))
    np.testing.assert_allclose(scores, np.stack([np.abs(x[:, 0] - x[:, 1]), np.abs(x[:, 0] + x[:, 1])], axis=1))


def test_readme_walk_through(tmp_path, monkeypatch, capsys):
    work = tmp_path / "examples"
    shutil.copytree(EXAMPLES, work, ignore=shutil.ignore_patterns("results", "__pycache__"))
    monkeypatch.chdir(work)
    commands = readme_commands()
    assert [c[0] for c in commands] == ["ticket", "main", "main", "ticket", "main", "sweep"]
    outputs = []
    for argv in commands:
        argv = [TINY.get((prev, a), a) for prev, a in zip([None, *argv], argv)]
        if argv[0] == "sweep":
            argv += SWEEP_SLICE
        assert main(argv) == 0, argv
        outputs.append(capsys.readouterr().out)
    assert "16/480 = 0.033333" in outputs[0]  # xor at depth 4, width 20: 8 + 4 + 4 weights
    for name in ("xor", "found", "seek"):
        with open(work / f"results/{name}/version_0/summary.json") as f:
            s = json.load(f)
        assert s["status"] == "completed" and s["epochs"] == 1
    assert s["dataset"] == "run:results/found/version_0" and s["width"] == 30
    with open(work / "results/found/version_0/summary.json") as f:
        found = json.load(f)
    weights = int(re.search(r"sparsity +(\d+)/1980", outputs[3]).group(1))
    biases = int(re.search(r"biases +(\d+) non-zero", outputs[3]).group(1))
    assert weights + biases == found["param_kept"]  # every parameter the run kept (biases were prunable)
    with open(work / "results/seek/results.csv") as f:
        rows = {r["pruner"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"ticket", "synflow"} and all(r["status"] == "completed" for r in rows.values())
    assert float(rows["ticket"]["recall"]) == 1.0 and float(rows["ticket"]["precision"]) == 1.0
