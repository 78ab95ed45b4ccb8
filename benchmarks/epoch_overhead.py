"""One training epoch of the planted MLP (circle, depth 5, width 100, batch 32, 9,000 samples) through
plantnseek's Lightning fit, as a user runs it (progress bar, TensorBoard logger, run summary, pictures,
checkpoints, per-epoch test), versus a bare PyTorch loop over the same model, data and batch size, in the same process.
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
from plantnseek.callbacks.pictures import Pictures  # noqa: E402
from plantnseek.data import PlantedDataModule  # noqa: E402
from plantnseek.core.sampling import TensorBatches  # noqa: E402
from plantnseek.trainer import cli_defaults  # noqa: E402
from plantnseek.module import PlantedMLP  # noqa: E402


def make():
    model = PlantedMLP(dataset="circle", depth=5, width=100, seed=1)
    dm = PlantedDataModule(dataset="circle", train_batch_size=32, seed=1)
    return model, dm


def lightning_epochs(epochs: int, helper: bool = True) -> None:
    model, dm = make()
    with tempfile.TemporaryDirectory() as root:
        defaults = cli_defaults()  # all of a user's callbacks: summary (its printed line off), pictures, checkpoints
        defaults["callbacks"] = [RunSummary(verbose=False) if isinstance(c, RunSummary) else
                                 Pictures(helper=helper) if isinstance(c, Pictures) else c for c in defaults["callbacks"]]
        defaults["enable_progress_bar"] = True  # as a user runs it in a terminal, even when piped here
        trainer = pl.Trainer(max_epochs=epochs, default_root_dir=root, enable_model_summary=False, **defaults)
        trainer.fit(model, datamodule=dm)


def bare_epochs(epochs: int) -> None:
    model, dm = make()
    dm.setup()
    opt = torch.optim.Adam(model.run.net.parameters(), lr=1e-3)
    loader = TensorBatches(*dm.split("train"), batch_size=32, shuffle=True, seed=1)
    for _ in range(epochs):
        for x, y in loader:
            opt.zero_grad()
            loss = F.cross_entropy(model.run.net(x), y)
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
    light, inline, bare = [], [], []
    for _ in range(args.repeats):  # interleaved, so machine drift hits all sides alike
        light += timeit(lambda: lightning_epochs(args.epochs), 1)
        bare += timeit(lambda: bare_epochs(args.epochs), 1)
        inline += timeit(lambda: lightning_epochs(args.epochs, helper=False), 1)
    per = lambda t: [x / args.epochs for x in t]  # noqa: E731
    paired = lambda a, b: round(sorted(x / y for x, y in zip(a, b))[len(a) // 2], 3)  # noqa: E731
    emit({"benchmark": "epoch_overhead", "epochs_per_repeat": args.epochs, "lightning_epoch_s": stats(per(light)),
          "bare_epoch_s": stats(per(bare)), "ratio_of_medians": round(stats(light)["median"] / stats(bare)["median"], 3),
          "ratio_of_mins": round(stats(light)["min"] / stats(bare)["min"], 3),
          "paired_ratio_median": paired(light, bare), "goal": "<= 1.25",
          "pictures_inline_epoch_s": stats(per(inline)), "pictures_inline_paired_ratio_median": paired(inline, bare),
          "threads": torch.get_num_threads(), "cpus": os.cpu_count()})


if __name__ == "__main__":
    main()
