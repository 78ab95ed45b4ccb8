"""The memory estimate against measured peak memory, and runs that cannot fit refused before allocating."""
import os
import subprocess
import sys

import pytest
import yaml

from plantnseek import memory

from plantnseek.sweep import execute as sweep_exec

from plantnseek.core import tuning
from plantnseek.cli.entry import main
from plantnseek.sweep.check import expand

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs")
ONE_EPOCH = ["--data.n_samples", "600", "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false"]
SYNFLOW = {"pruner": "synflow", "sparsity": 0.1, "prune_bias": True, "post_epochs": 1}
# (config, width, data and pruning as the estimate reads them, extra arguments)
FITS = [
    ("circle.yaml", 50, {"dataset": "circle", "n_samples": 600}, None, []),
    ("synflow_singleshot.yaml", 400, {"dataset": "circle", "n_samples": 600, "train_batch_size": 32,
                                      "test_batch_size": 512},
     SYNFLOW, ["--trainer.callbacks.init_args.post_epochs", "1"]),
    ("circle.yaml", 1500, {"dataset": "circle", "n_samples": 600}, None, []),
]


def test_estimate_is_within_2x_of_the_measured_peak(tmp_path):
    """Each fit in its own process, all at once; os.wait4 gives each one's peak resident memory."""
    started = {}
    for config, width, data, pruning, extra in FITS:
        folder = tmp_path / f"w{width}"
        folder.mkdir()
        argv = [sys.executable, "-m", "plantnseek.cli.entry", "fit", "--config", os.path.join(CONFIGS, config),
                "--model.width", str(width), *ONE_EPOCH, *extra]
        proc = subprocess.Popen(argv, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        started[proc.pid] = (proc, width, memory.run_bytes(data, {"depth": 5, "width": width}, pruning))
    ratios = {}
    for _ in FITS:
        pid, status, usage = os.wait4(-1, 0)  # also waited for: the pictures helper each fit forks
        proc, width, estimate = started[pid]
        proc.returncode = os.waitstatus_to_exitcode(status)
        assert proc.returncode == 0, proc.stderr.read().decode()[-2000:]
        ratios[width] = estimate / (usage.ru_maxrss * 1024)
    assert all(0.5 <= r <= 2 for r in ratios.values()), ratios


def test_the_size_that_took_the_machine_down_is_counted():
    """fit --model.width 20000 reached 23 GB resident before the OOM killer ended it (exit 137)."""
    assert memory.run_bytes({"dataset": "circle"}, {"depth": 5, "width": 20000}, None) > 23 * 2**30


@pytest.fixture
def little_memory(monkeypatch):
    """Memory for a process and a little more, and planting that fails the test if anything is allocated."""
    import plantnseek.module

    have = memory.BASELINE + 2**20
    monkeypatch.setattr(tuning, "available_memory", lambda: have)
    monkeypatch.setattr(plantnseek.module, "plant_network", lambda *a, **k: pytest.fail("the network was allocated"))
    return have


@pytest.mark.parametrize("argv,message", [
    (["fit", "--config", os.path.join(CONFIGS, "circle.yaml"), "--model.width", "400"], "model.width 400 (depth 5): "),
    (["main", "--width", "400", "--result-dir", "res"], "--width 400 (depth 5): "),
])
def test_oversize_run_is_refused_before_allocating(argv, message, little_memory, in_tmp, capfd):
    assert main(argv) == 2
    err = capfd.readouterr().err.strip()
    assert err.startswith("plantnseek: error: " + message + "this run needs about "), err
    assert "available; use a smaller width or depth" in err and "\n" not in err
    assert os.listdir(in_tmp) == []


def sweep_specs(tmp_path, width, seeds, **base):
    config = {"name": "m", "pictures": False, "base": {"data": {"n_samples": 600, "prune_dataset_ratio": 5},
                                                       "model": {"depth": 5, "width": width}, **base},
              "grid": {"seed": list(range(1, seeds + 1))}}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, config


def test_sweep_run_too_large_is_refused_before_writing(little_memory, in_tmp, capfd):
    path, _ = sweep_specs(in_tmp, 400, 2)
    assert main(["sweep", "--config", str(path), "--out", "out"]) == 2
    err = capfd.readouterr().err.strip()
    assert err.startswith("plantnseek: error: run seed=1: model.width 400 (depth 5): this run needs about "), err
    assert not (in_tmp / "out").exists()


def test_sweep_workers_and_stacks_fit_the_memory(tmp_path, monkeypatch):
    _, config = sweep_specs(tmp_path, 1000, 8, pruning={"pruner": "synflow", "post_epochs": 1})
    specs = expand(config)
    one, four = sweep_exec.run_memory(specs[0]), sweep_exec.run_memory(specs[0], 4)
    monkeypatch.setattr(sweep_exec, "available_cores", lambda: 2)
    monkeypatch.setattr(sweep_exec, "available_memory", lambda: 64 * 2**30)
    assert sweep_exec.cap_workers(2, specs) == (2, None)
    assert [len(b) for b in sweep_exec.plan(specs, 2, 64)] == [4, 4]  # plenty: split only to give both work
    monkeypatch.setattr(sweep_exec, "available_memory", lambda: int(1.5 * one))
    workers, message = sweep_exec.cap_workers(2, specs)
    assert workers == 1 and f"at ~{one // 2**20} MB per worker" in message
    budget = (one + four) // 2  # each of two workers' share: a stack of one fits, one of four does not
    monkeypatch.setattr(sweep_exec, "available_memory", lambda: 2 * budget)
    batches = sweep_exec.plan(specs, 2, 64)
    assert sum(map(len, batches)) == 8 and len(batches) > 2
    assert all(sweep_exec.run_memory(b[0], len(b)) <= budget for b in batches)
