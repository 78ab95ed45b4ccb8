"""Edge-popup's score training versus training the same network for the same epochs, in the same process:
circle, depth 5, width 100, batch 32, 9,000 training samples, density 0.5, all parameters prunable.
Edge-popup: one pruning step (``prune_level``) with E epochs of score training. Training: a plain
Lightning fit of the planted MLP for E epochs (no per-epoch test). Goal: ratio about 1.

    .venv/bin/python benchmarks/edgepopup_speed.py [--repeats 3] [--epochs 2]
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import emit, stats, timeit  # noqa: E402

import pytorch_lightning as pl  # noqa: E402

from plantnseek.callbacks import EdgePopup, Pruning  # noqa: E402
from plantnseek.data import PlantedDataModule  # noqa: E402
from plantnseek.module import PlantedMLP  # noqa: E402


def make():
    return (PlantedMLP(dataset="circle", depth=5, width=100, seed=1),
            PlantedDataModule(dataset="circle", train_batch_size=32, seed=1))


def edgepopup(epochs: int) -> None:
    model, dm = make()
    Pruning(pruner=EdgePopup(epochs=epochs), sparsity=0.5, prune_bias=True, post_epochs=0).prune_level(model.run, 0, dm)


def train(epochs: int) -> None:
    model, dm = make()
    trainer = pl.Trainer(accelerator="cpu", max_epochs=epochs, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         limit_val_batches=0)
    trainer.fit(model, datamodule=dm)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--epochs", type=int, default=2)
    args = p.parse_args()
    warnings.simplefilter("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    edgepopup(1)  # warm up
    train(1)
    ep, tr = [], []
    for _ in range(args.repeats):  # interleaved, so machine drift hits both sides alike
        ep += timeit(lambda: edgepopup(args.epochs), 1)
        tr += timeit(lambda: train(args.epochs), 1)
    ratios = sorted(a / b for a, b in zip(ep, tr))
    emit({"benchmark": "edgepopup_speed", "epochs": args.epochs, "edgepopup_s": stats(ep), "train_s": stats(tr),
          "paired_ratio_median": round(ratios[len(ratios) // 2], 3), "goal": "about 1"})


if __name__ == "__main__":
    main()
