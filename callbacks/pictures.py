"""Pictures of a run, as PNGs in the run directory and images in TensorBoard (at the end of fit).

* ``task.png``: circle decision regions / relu fitted curve / helix fitted 3-D curve, on the test split;
* ``masks.png``: each layer's kept weights against the planted ticket;
* ``scores_level<L>.png``: score histograms per tensor (kept vs pruned) at each pruning step.
"""
from __future__ import annotations

import os

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback


def draw_run_pictures(out: str, module: pl.LightningModule, x, y, pruning=None, loggers=(), step: int = 0) -> None:
    """Write (and log) the task figure, the masks against the ticket, and each pruning step's scores."""
    from plantnseek import figures

    figures.save(figures.task_figure(module, x, y), os.path.join(out, "task.png"), loggers, "pictures/task", step)
    masks = [layer.weight_mask for layer in module.net.layers]
    figures.save(figures.mask_figure(masks, module.ticket.weight_masks()), os.path.join(out, "masks.png"),
                 loggers, "pictures/masks", step)
    ticket = {f"layers.{i}.weight": m for i, m in enumerate(module.ticket.weight_masks())}
    ticket.update({f"layers.{i}.bias": m for i, m in enumerate(module.ticket.bias_masks())})
    for entry in pruning.score_log if pruning else []:
        title = f"{pruning.scorer.name} scores, pruning step {entry['level']}"
        fig = figures.score_histogram_figure(entry["scores"], entry["masks"], title, ticket)
        figures.save(fig, os.path.join(out, f"scores_level{entry['level']}.png"), loggers, "pictures/scores",
                     entry["level"])


class Pictures(Callback):
    """Draws each run's pictures when ``fit`` ends (a second or so per run; turn off for large sweeps).

    ``directories`` are the runs' directories (default: the trainer's log directory, for a single run).
    """

    def __init__(self, directories: list[str] | None = None) -> None:
        self.directories = directories

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from plantnseek.callbacks.summary import pruning_of, run_dir

        for r, run in enumerate(pl_module.runs):
            directory = self.directories[r] if self.directories else run_dir(trainer)
            draw_run_pictures(directory, run, *trainer.datamodule.member(r).split("test"), pruning_of(trainer, r),
                              pl_module.loggers_of(r), trainer.global_step)
