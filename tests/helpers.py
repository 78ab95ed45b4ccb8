"""Small builders shared by tests: tiny planted modules, data modules and trainers."""
from __future__ import annotations

import json
import os

import pytorch_lightning as pl

from plantnseek.callbacks import Pruning, RunSummary
from plantnseek.data import PlantedDataModule
from plantnseek.module import PlantedMLP

MIN_W = {"circle": 20, "relu": 4, "helix": 30}


def tiny(dataset="circle", depth=4, width=None, seed=1, n_samples=600, batches_per_step=2, **model_kw):
    width = width or MIN_W[dataset]
    model = PlantedMLP(dataset=dataset, depth=depth, width=width, seed=seed, **model_kw)
    dm = PlantedDataModule(dataset=dataset, n_samples=n_samples, train_batch_size=64, seed=seed,
                           prune_dataset_ratio=5, batches_per_step=batches_per_step)
    return model, dm


def fit(model, dm, pruning=None, root=".", **trainer_kw):
    callbacks = ([pruning] if pruning else []) + [RunSummary(verbose=False)]
    trainer = pl.Trainer(accelerator="cpu", devices=1, default_root_dir=root, callbacks=callbacks,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         max_epochs=trainer_kw.pop("max_epochs", 1), **trainer_kw)
    trainer.fit(model, datamodule=dm)
    return trainer


def read_summary(trainer) -> dict:
    with open(os.path.join(trainer.log_dir, "summary.json")) as f:
        return json.load(f)


def make_pruning(**kw):
    kw.setdefault("post_epochs", 0)
    return Pruning(**kw)


def run_dirs(root) -> list:
    """Every run directory (one with a summary.json) under ``root``, in creation order."""
    from pathlib import Path

    found = [Path(d) for d, _, files in os.walk(root) if "summary.json" in files]
    return sorted(found, key=lambda p: os.path.getmtime(p / "summary.json"))


def versions(root) -> list:
    """The ``version_N`` run folders under ``root`` (any run name), in version order."""
    from pathlib import Path

    found = [p for p in Path(root).rglob("version_*") if p.is_dir()]
    return sorted(found, key=lambda p: (int(p.name.split("_")[1]), str(p)))


class RecordingLogger:
    """A logger that keeps what it is given: ``(step, metrics)`` pairs."""

    def __init__(self):
        self.logged = []

    def log_metrics(self, metrics, step):
        self.logged.append((step, metrics))


class FakeTrainer:
    """Just what the Pruning callback reads of a trainer when a test drives it directly."""

    def __init__(self, datamodule=None):
        self.datamodule = datamodule
        self.loggers = [RecordingLogger()]
