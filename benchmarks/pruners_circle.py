"""Each pruner on circle d5 w50 at density 0.1 and at the ticket's density (seed README setting).

Singleshot, prune bias, Adam 1e-3, batch 32, 10 post-epochs: the setting of the reference figures in
shared/reference. Prints one JSON line per run (final accuracy, ticket recall, wall time) and a table.

    .venv/bin/python benchmarks/pruners_circle.py --seeds 1 2 3
"""
from __future__ import annotations

import argparse
import json
import logging
import time
import warnings

import pytorch_lightning as pl

from plantnseek.callbacks import Pruning, RunSummary
from plantnseek.data import PlantedDataModule
from plantnseek.module import PlantedMLP


def run(pruner: str, sparsity: float, seed: int, epochs: int, dataset: str) -> dict:
    start = time.perf_counter()
    model = PlantedMLP(dataset=dataset, depth=5, width=50, seed=seed)
    dm = PlantedDataModule(dataset=dataset, train_batch_size=32, test_batch_size=512, seed=seed)
    pruning = Pruning(pruner=pruner, sparsity=sparsity, prune_bias=True, post_epochs=epochs)
    summary = RunSummary(verbose=False)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, callbacks=[pruning, summary])
    trainer.fit(model, datamodule=dm)
    s = summary.summary(trainer, model, "completed")
    return {"dataset": dataset, "pruner": pruner, "sparsity": sparsity, "seed": seed,
            "final": s["final"][s["primary_metric"]], "recall": s["recovery"]["recall"],
            "precision": s["recovery"]["precision"], "collapsed": s["recovery"]["collapsed"],
            "kept": s["param_kept"], "seconds": round(time.perf_counter() - start, 2)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    p.add_argument("--pruners", nargs="+", default=["rand", "mag", "snip", "grasp", "synflow", "ticket"])
    p.add_argument("--sparsities", type=float, nargs="+", default=[0.1, -1])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--dataset", default="circle")
    args = p.parse_args()
    warnings.simplefilter("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    rows = []
    for sparsity in args.sparsities:
        for pruner in args.pruners:
            for seed in args.seeds:
                rows.append(run(pruner, sparsity, seed, args.epochs, args.dataset))
                print(json.dumps(rows[-1]), flush=True)
    print(f"{'density':>8} {'pruner':>8}  final metric per seed / ticket recall / seconds")
    for sparsity in args.sparsities:
        for pruner in args.pruners:
            sel = [r for r in rows if r["pruner"] == pruner and r["sparsity"] == sparsity]
            print(f"{'ticket' if sparsity == -1 else sparsity:>8} {pruner:>8}  "
                  + " / ".join(f"{r['final']:.4g}" for r in sel) + "   recall "
                  + " / ".join(f"{r['recall']:.2f}" for r in sel) + "   "
                  + " / ".join(f"{r['seconds']:.1f}s" for r in sel))


if __name__ == "__main__":
    main()
