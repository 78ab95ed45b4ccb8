"""Where a sweep's speed comes from, like with like: every variant runs the same runs and writes the same
outputs (summary.json and TensorBoard events per run; no pictures, no checkpoints).

* ``processes``: one fresh Python process per run (import, build, fit, write), one at a time;
* ``inprocess``: ``plantnseek sweep --workers 1 --max-stack 1`` (one process, runs one by one);
* ``stacked``: ``plantnseek sweep --workers 1`` (one process, runs trained as one stacked model);
* ``parallel``: ``plantnseek sweep --workers W`` (stacked batches on W worker processes).

Reported separately: process start-up saved (inprocess / processes), stacking (stacked / inprocess, same
single worker) and parallelism (parallel / stacked, same stacking), and their product. The slice is
paper_singleshot's circle column (rand, mag, snip, grasp, synflow; densities ticket, 0.01, 0.1, 0.5, 1;
``--seeds`` seeds; depth 5, width 100, batch 32, 10 epochs). ``processes`` is timed on a sample of runs.

    .venv/bin/python benchmarks/sweep_throughput.py [--seeds 2] [--baseline-runs 3] [--workers 2]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
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


def one_run(spec: dict) -> None:
    """What one sweep run does (same callbacks and outputs), alone in this process."""
    import pytorch_lightning as pl

    from plantnseek.callbacks import Pruning, RunSummary
    from plantnseek.data import PlantedDataModule
    from plantnseek.module import PlantedMLP

    pl.seed_everything(spec["seed"], verbose=False)
    model = PlantedMLP(dataset="circle", depth=5, width=100, seed=spec["seed"])
    dm = PlantedDataModule(dataset="circle", train_batch_size=32, seed=spec["seed"])
    sparsity = -1 if spec["sparsity"] == "ticket" else spec["sparsity"]
    pruning = Pruning(pruner=spec["pruner"], sparsity=sparsity, post_epochs=spec["epochs"], prune_bias=True)
    trainer = pl.Trainer(accelerator="cpu", devices=1, default_root_dir=spec["root"], enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         callbacks=[pruning, RunSummary(verbose=False)], max_epochs=pruning.total_epochs)
    trainer.fit(model, datamodule=dm)


def sweep_seconds(config: str, out: str, workers: int, max_stack: int) -> tuple[float, int, int]:
    from plantnseek.sweep.command import run

    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        result = run(["--config", config, "--out", out, "--workers", str(workers), "--max-stack", str(max_stack)])
    return time.perf_counter() - start, len(result["rows"]), result["failed"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--baseline-runs", type=int, default=3, help="separate processes timed for the baseline")
    p.add_argument("--one-run", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one_run:
        one_run(json.loads(args.one_run))
        return
    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "slice.yaml")
        with open(config, "w") as f:
            yaml.safe_dump(slice_config(args.seeds, args.epochs), f)
        seconds: dict[str, float] = {}
        runs = failed = 0
        for name, workers, max_stack in (("inprocess", 1, 1), ("stacked", 1, 64), ("parallel", args.workers, 64)):
            seconds[name], runs, f = sweep_seconds(config, os.path.join(tmp, name), workers, max_stack)
            failed += f
        samples = [{"pruner": PRUNERS[i % 5], "sparsity": DENSITIES[(2 * i + 1) % 5], "seed": 1 + i % args.seeds,
                    "epochs": args.epochs, "root": os.path.join(tmp, f"proc{i}")} for i in range(args.baseline_runs)]
        times = []
        for spec in samples:
            start = time.perf_counter()
            subprocess.run([sys.executable, __file__, "--one-run", json.dumps(spec)], check=True, capture_output=True)
            times.append(time.perf_counter() - start)
    rpm = {k: 60 * runs / s for k, s in seconds.items()}
    rpm["processes"] = 60 / (sum(times) / len(times))
    emit({"benchmark": "sweep_throughput", "runs": runs, "failed": failed, "workers": args.workers,
          "outputs": "summary.json + TensorBoard events per run; no pictures, no checkpoints (all variants)",
          "runs_per_min": {k: round(v, 1) for k, v in rpm.items()},
          "sweep_s": {k: round(v, 1) for k, v in seconds.items()},
          "process_s": [round(t, 2) for t in times],
          "gain_one_process": round(rpm["inprocess"] / rpm["processes"], 2),
          "gain_stacking_same_workers": round(rpm["stacked"] / rpm["inprocess"], 2),
          "gain_parallel_same_stacking": round(rpm["parallel"] / rpm["stacked"], 2),
          "total_vs_processes": round(rpm["parallel"] / rpm["processes"], 1),
          "full_grid_projection_min": round(FULL_GRID / rpm["parallel"], 1),
          "note": "ratios within one session; other jobs share the CPU, so compare ratios, not absolute times"})


if __name__ == "__main__":
    main()
