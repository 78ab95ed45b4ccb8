"""How close a stacked training batch comes to the machine's matmul throughput.

Times (1) a large ``torch.bmm`` — the floor: what these cores do on batched matrix products —, (1b) the
stack's own hidden-layer product shape alone (``[R, 100, 100] @ [R, 100, 32]``), and (2) one
steady epoch of a stacked batch of paper-grid runs (circle, depth 5, width 100, batch 32), whose
arithmetic is counted analytically (forward 2·B·in·out per layer and run, backward twice that but for
the first layer's input). Both in GFLOP/s, in the same process, alternating, so the gap to the floor
is visible.

    .venv/bin/python benchmarks/matmul_floor.py [--runs 64] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import emit, stats, training_flop_per_sample  # noqa: E402


def bmm_gflops(size: int = 512, batch: int = 16) -> float:
    a, b = torch.randn(batch, size, size), torch.randn(batch, size, size)
    torch.bmm(a, b)
    start = time.perf_counter()
    torch.bmm(a, b)
    return 2 * batch * size**3 / (time.perf_counter() - start) / 1e9


def stack_shape_gflops(runs: int, width: int = 100, batch: int = 32, repeats: int = 50) -> float:
    """The stack's own hidden-layer product, ``[R, w, w] @ [R, w, B]``, alone: what its shape allows."""
    w, h = torch.randn(runs, width, width), torch.randn(runs, width, batch)
    torch.bmm(w, h)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.bmm(w, h)
    return 2 * runs * width * width * batch * repeats / (time.perf_counter() - start) / 1e9


def stacked_epoch(runs: int) -> tuple[float, float]:
    """(seconds, GFLOP) of one steady training epoch of ``runs`` stacked paper-grid runs (no pruning).

    The second epoch is timed: the first also makes the data and the step's buffers.
    """
    import pytorch_lightning as pl

    from plantnseek.data import PlantedDataModule, PerRunData
    from plantnseek.module import PlantedMLP

    class EpochTimer(pl.Callback):
        def __init__(self) -> None:
            self.seconds: list[float] = []

        def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            self.seconds.append(time.perf_counter() - self.start)

    dms = [PlantedDataModule(dataset="circle", train_batch_size=32, seed=s) for s in range(1, runs + 1)]
    module = PlantedMLP(dataset="circle", depth=5, width=100, seed=list(range(1, runs + 1)))
    timer = EpochTimer()
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, max_epochs=2, limit_val_batches=0,
                         callbacks=[timer])
    gflop = training_flop_per_sample(module.stack.widths) * dms[0].n_train * runs / 1e9
    trainer.fit(module, datamodule=PerRunData(dms))
    return timer.seconds[-1], gflop


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1, as in a sweep worker)")
    args = p.parse_args()
    from plantnseek.core.tuning import keep_freed_memory

    keep_freed_memory()  # as sweep workers and CLI commands do
    torch.set_num_threads(args.threads)
    floor, achieved = [], []
    shape = []
    for _ in range(args.repeats):
        floor.append(bmm_gflops())
        shape.append(stack_shape_gflops(args.runs))
        seconds, gflop = stacked_epoch(args.runs)
        achieved.append(gflop / seconds)
    emit({"benchmark": "matmul_floor", "threads": torch.get_num_threads(), "runs": args.runs,
          "bmm_gflops": stats(floor), "stack_shape_bmm_gflops": stats(shape), "stacked_epoch_gflops": stats(achieved),
          "fraction_of_floor": round(stats(achieved)["median"] / stats(floor)["median"], 3),
          "fraction_of_stack_shape": round(stats(achieved)["median"] / stats(shape)["median"], 3),
          "load_average_1min": round(os.getloadavg()[0], 2)})


if __name__ == "__main__":
    main()
