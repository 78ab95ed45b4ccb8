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
    for entry in pruning.score_log if pruning else []:
        title = f"{pruning.scorer.name} scores, pruning step {entry['level']}"
        fig = figures.score_histogram_figure(entry["scores"], entry["masks"], title)
        figures.save(fig, os.path.join(out, f"scores_level{entry['level']}.png"), loggers, "pictures/scores",
                     entry["level"])


class Pictures(Callback):
    """Draws the run's pictures when ``fit`` ends (a second or so; turn off for large sweeps)."""

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from plantnseek.callbacks.summary import find_pruning, run_dir

        draw_run_pictures(run_dir(trainer), pl_module, *trainer.datamodule.split("test"), find_pruning(trainer),
                          trainer.loggers, trainer.global_step)
