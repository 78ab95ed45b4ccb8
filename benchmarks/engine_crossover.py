"""Where the training kernel stops beating PyTorch: time per optimizer step of one training epoch, kernel
versus the PyTorch path, alternating (A B A B) in the same process, for stacks of R runs of depth 5 over a
range of widths (circle, batch 32). The rule that picks the engine by size (plantnseek.module) is read off
this table.

    .venv/bin/python benchmarks/engine_crossover.py [--widths 100 300 600 1000] [--runs 1 8] [--repeats 3]
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import emit, stats  # noqa: E402

import pytorch_lightning as pl  # noqa: E402

from plantnseek.data import PlantedDataModule, PerRunData  # noqa: E402
from plantnseek.module import PlantedMLP  # noqa: E402


def epoch_seconds(width: int, runs: int, engine: str, n_samples: int) -> tuple[float, int, str]:
    """Seconds of one training epoch (no evaluation), its optimizer steps, and the engine that took them."""
    import time

    os.environ["PLANTNSEEK_KERNEL"] = engine
    seeds = list(range(1, runs + 1))
    model = PlantedMLP(dataset="circle", depth=5, width=width, seed=seeds)
    data = PerRunData([PlantedDataModule(dataset="circle", n_samples=n_samples, train_batch_size=32, seed=s)
                        for s in seeds])
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         limit_val_batches=0)
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    return time.perf_counter() - start, trainer.global_step, str(model.engine)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--widths", type=int, nargs="+", default=[100, 300, 600, 1000, 1500])
    p.add_argument("--runs", type=int, nargs="+", default=[1, 8])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--samples", type=int, default=3000)
    args = p.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    for runs in args.runs:
        for width in args.widths:
            times: dict[str, list[float]] = {"native": [], "torch": []}
            for _ in range(args.repeats):
                for engine in ("native", "torch"):  # A B A B
                    seconds, steps, used = epoch_seconds(width, runs, engine, args.samples)
                    assert used == ("kernel" if engine == "native" else "pytorch"), used
                    times[engine].append(seconds / steps * 1000)
            k, t = stats(times["native"]), stats(times["torch"])
            emit({"benchmark": "engine_crossover", "runs": runs, "width": width, "depth": 5, "batch": 32,
                  "kernel_ms_per_step": k, "pytorch_ms_per_step": t,
                  "kernel_over_pytorch": round(k["median"] / t["median"], 3)})


if __name__ == "__main__":
    main()
