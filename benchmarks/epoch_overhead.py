"""One training epoch of the planted MLP (circle, depth 5, width 100, batch 32, 9,000 samples) through
plantnseek's Lightning fit, as a user runs it (progress bar, TensorBoard logger, checkpoint, per-epoch
test), versus a bare PyTorch loop over the same model, data and batch size, in the same process.
Goal: ratio <= 1.25.

    .venv/bin/python benchmarks/epoch_overhead.py [--repeats 5] [--epochs 2]
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import warnings

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from common import emit, stats, timeit  # noqa: E402

import pytorch_lightning as pl  # noqa: E402

from plantnseek.callbacks import RunSummary  # noqa: E402
from plantnseek.data import PlantedDataModule, TensorBatches  # noqa: E402
from plantnseek.lightning_cli import trainer_defaults  # noqa: E402
from plantnseek.module import PlantedMLP  # noqa: E402


def make():
    model = PlantedMLP(dataset="circle", depth=5, width=100, seed=1)
    dm = PlantedDataModule(dataset="circle", train_batch_size=32, seed=1)
    return model, dm


def lightning_epochs(epochs: int) -> None:
    model, dm = make()
    with tempfile.TemporaryDirectory() as root:
        defaults = trainer_defaults()
        defaults["callbacks"] = [RunSummary(verbose=False)] + [c for c in defaults["callbacks"]
                                                               if type(c).__name__ == "ModelCheckpoint"]
        defaults["enable_progress_bar"] = True  # as a user runs it in a terminal, even when piped here
        trainer = pl.Trainer(max_epochs=epochs, default_root_dir=root, enable_model_summary=False, **defaults)
        trainer.fit(model, datamodule=dm)


def bare_epochs(epochs: int) -> None:
    model, dm = make()
    dm.setup()
    opt = torch.optim.Adam(model.net.parameters(), lr=1e-3)
    loader = TensorBatches(*dm.split("train"), batch_size=32, shuffle=True, seed=1)
    for _ in range(epochs):
        for x, y in loader:
            opt.zero_grad()
            loss = F.cross_entropy(model.net(x), y)
            loss.backward()
            opt.step()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--epochs", type=int, default=10, help="epochs per fit (a user's run); reported per epoch")
    args = p.parse_args()
    warnings.simplefilter("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    lightning_epochs(1)  # warm up imports and caches
    bare_epochs(1)
    light, bare = [], []
    for _ in range(args.repeats):  # interleaved, so machine drift hits both sides alike
        light += timeit(lambda: lightning_epochs(args.epochs), 1)
        bare += timeit(lambda: bare_epochs(args.epochs), 1)
    per = lambda t: [x / args.epochs for x in t]  # noqa: E731
    ratios = sorted(a / b for a, b in zip(light, bare))
    emit({"benchmark": "epoch_overhead", "epochs_per_repeat": args.epochs, "lightning_epoch_s": stats(per(light)),
          "bare_epoch_s": stats(per(bare)), "ratio_of_medians": round(stats(light)["median"] / stats(bare)["median"], 3),
          "ratio_of_mins": round(stats(light)["min"] / stats(bare)["min"], 3),
          "paired_ratio_median": round(ratios[len(ratios) // 2], 3), "goal": "<= 1.25"})


if __name__ == "__main__":
    main()
