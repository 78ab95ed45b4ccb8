"""Where a stacked batch's time goes: one epoch of R paper-grid runs through the real ``fit``, profiled.

Training runs in the native kernel (``kernel``: forward, backward and optimizer of every run, one call
per group of steps; ``PLANTNSEEK_KERNEL=torch`` profiles the PyTorch path instead). Other ops are
grouped by what they are for (self CPU time): the matrix products, the optimizer, keeping
pruned entries at zero, the other tensor ops (activations, bias sums, loss, metrics), and the rest
(Python, Lightning, autograd bookkeeping) as wall time minus all ops. One thread, freed memory kept, as
in a sweep worker.

    .venv/bin/python benchmarks/profile_stacked.py [--runs 64] [--epochs 1]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import emit, training_flop_per_sample  # noqa: E402

GROUPS = {"matmul": ("aten::bmm", "aten::baddbmm", "aten::mm", "aten::addmm"),
          "zero_pruned": ("aten::_foreach_mul_",),  # before "optimizer": its prefix aten::_foreach_ also matches
          "optimizer": ("aten::_fused_adam_", "aten::_fused_sgd_", "aten::_foreach_add_", "aten::_foreach_")}


def group_of(name: str) -> str:
    for group, prefixes in GROUPS.items():
        if any(name == p or (p.endswith("_") and name.startswith(p)) for p in prefixes):
            return group
    return "other_ops"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=64)
    p.add_argument("--epochs", type=int, default=1)
    args = p.parse_args()
    import pytorch_lightning as pl
    from torch.profiler import ProfilerActivity, profile

    from plantnseek.engine import kernel
    from plantnseek.data import PlantedDataModule, PerRunData
    from plantnseek.module import PlantedMLP
    from plantnseek.core.tuning import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(1)
    seeds = list(range(1, args.runs + 1))
    dms = [PlantedDataModule(dataset="circle", train_batch_size=32, seed=s) for s in seeds]
    model = PlantedMLP(dataset="circle", depth=5, width=100, seed=seeds)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, max_epochs=args.epochs)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        trainer.fit(model, datamodule=PerRunData(dms))
        wall = time.perf_counter() - start
    seconds: dict[str, float] = {"kernel": 0.0, **{g: 0.0 for g in (*GROUPS, "other_ops")}}
    for event in prof.key_averages():
        if event.key == kernel.PROFILE_NAME:  # the native training kernel: one call per group of steps
            seconds["kernel"] += event.cpu_time_total / 1e6
        if event.key.startswith("aten::"):
            seconds[group_of(event.key)] += event.self_cpu_time_total / 1e6
        if group_of(event.key) == "zero_pruned":  # on CPU it runs as one aten::mul_ per tensor, its children
            children = (event.cpu_time_total - event.self_cpu_time_total) / 1e6
            seconds["zero_pruned"] += children
            seconds["other_ops"] -= children
    seconds["python_lightning_autograd"] = max(0.0, wall - sum(seconds.values()))
    gflop = training_flop_per_sample(model.stack.widths) * dms[0].n_train * args.runs * args.epochs / 1e9
    emit({"benchmark": "profile_stacked", "runs": args.runs, "epochs": args.epochs, "wall_s": round(wall, 2),
          "gflops_achieved": round(gflop / wall, 1), "seconds": {k: round(v, 2) for k, v in seconds.items()},
          "share": {k: round(v / wall, 3) for k, v in seconds.items()},
          "note": "profiler overhead included in wall time; shares are what matters",
          "load_average_1min": round(os.getloadavg()[0], 2)})


if __name__ == "__main__":
    main()
