"""Runs per minute of ``plantnseek sweep`` on a fixed slice of paper_singleshot (circle; rand, mag, snip,
grasp, synflow; densities ticket, 0.01, 0.1, 0.5, 1; 4 seeds; depth 5, width 100, batch 32, 10 epochs)
versus launching the same runs one by one as separate ``plantnseek fit`` processes (timed on a sample of
them, same session). Goal: >= 10x. Also projects the full paper grid (1,875 runs).

    .venv/bin/python benchmarks/sweep_throughput.py [--seeds 4] [--baseline-runs 3] [--workers 2]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys
import tempfile
import time

import yaml

sys.path.insert(0, os.path.dirname(__file__))
from common import emit  # noqa: E402

PRUNERS = ["rand", "mag", "snip", "grasp", "synflow"]
DENSITIES = ["ticket", 0.01, 0.1, 0.5, 1]
FULL_GRID = 1875


def slice_config(seeds: int, epochs: int) -> dict:
    return {
        "name": "throughput", "pictures": False,
        "base": {"data": {"train_batch_size": 32}, "model": {"depth": 5, "width": 100},
                 "pruning": {"post_epochs": epochs, "prune_bias": True}},
        "grid": {"dataset": ["circle"], "pruner": PRUNERS, "sparsity": DENSITIES, "seed": list(range(1, seeds + 1))},
    }


def fit_config(pruner: str, sparsity, seed: int, epochs: int) -> dict:
    return {
        "seed_everything": seed,
        "data": {"dataset": "circle", "train_batch_size": 32},
        "model": {"depth": 5, "width": 100},
        "trainer": {"enable_progress_bar": False, "callbacks": [{
            "class_path": "plantnseek.callbacks.Pruning",
            "init_args": {"pruner": pruner, "sparsity": -1 if sparsity == "ticket" else sparsity,
                          "post_epochs": epochs, "prune_bias": True}}]},
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--baseline-runs", type=int, default=3, help="separate processes timed for the baseline")
    args = p.parse_args()
    exe = os.path.join(os.path.dirname(sys.executable), "plantnseek")
    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "slice.yaml")
        with open(config, "w") as f:
            yaml.safe_dump(slice_config(args.seeds, args.epochs), f)
        from plantnseek.sweep import run

        start = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()):
            result = run(["--config", config, "--out", os.path.join(tmp, "sweep"), "--workers", str(args.workers)])
        sweep_s = time.perf_counter() - start
        n_runs = len(result["rows"])
        samples = [(PRUNERS[i % 5], DENSITIES[(2 * i + 1) % 5], 1 + i % args.seeds) for i in range(args.baseline_runs)]
        times = []
        for i, (pruner, sparsity, seed) in enumerate(samples):
            path = os.path.join(tmp, f"run{i}.yaml")
            with open(path, "w") as f:
                yaml.safe_dump(fit_config(pruner, sparsity, seed, args.epochs), f)
            start = time.perf_counter()
            subprocess.run([exe, "fit", "--config", path], cwd=tmp, check=True, capture_output=True)
            times.append(time.perf_counter() - start)
    sweep_rpm = 60 * n_runs / sweep_s
    base_rpm = 60 / (sum(times) / len(times))
    emit({"benchmark": "sweep_throughput", "runs": n_runs, "failed": result["failed"], "workers": args.workers,
          "sweep_s": round(sweep_s, 1), "sweep_runs_per_min": round(sweep_rpm, 1),
          "baseline_process_s": [round(t, 2) for t in times], "baseline_runs_per_min": round(base_rpm, 2),
          "speedup": round(sweep_rpm / base_rpm, 1), "goal": ">= 10",
          "full_grid_projection_min": round(FULL_GRID / sweep_rpm, 1), "full_grid_goal_min": 30})


if __name__ == "__main__":
    main()
