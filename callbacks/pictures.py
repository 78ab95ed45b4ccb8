"""Pictures of a run, as PNGs in the run directory and images in TensorBoard (at the end of fit).

* ``task.png``: circle decision regions / relu fitted curve / helix fitted 3-D curve, on the test split;
* ``masks.png``: each layer's kept weights against the planted ticket;
* ``scores_level<L>.png``: score histograms per tensor (kept vs pruned) at each pruning step.
"""
from __future__ import annotations


import contextlib
import multiprocessing
import os
import signal
from typing import TYPE_CHECKING, Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

if TYPE_CHECKING:
    from plantnseek.core.run import Run


def scores_file(level: int) -> str:
    return f"scores_level{level}.png"


def picture_names(pruning: Any = None) -> list[str]:
    """The files a run's pictures are written to."""
    return ["task.png", "masks.png", *(scores_file(e["level"]) for e in (pruning.score_log if pruning else []))]


def draw_run_pictures(out: str, run: "Run", x, y, pruning=None, loggers=(), step: int = 0,
                      drawn: set[str] | None = None) -> None:
    """Write (and log) the task figure, the masks against the ticket, and each pruning step's scores; the path
    of each picture written is added to ``drawn``."""
    from plantnseek.core import figures
    drawn = set() if drawn is None else drawn
    drawn.add(figures.save(figures.task_figure(run, x, y), os.path.join(out, "task.png"), loggers, "pictures/task",
                           step))
    _draw_masks_and_scores(out, *_mask_and_score_inputs(run, pruning), loggers=loggers, step=step, drawn=drawn)


def _mask_and_score_inputs(run: "Run", pruning: Any) -> tuple[list, list, list, str, dict]:
    """What masks.png and the score histograms are drawn from (copies: a helper process may draw them)."""
    masks = [layer.weight_mask.detach().clone() for layer in run.net.layers]
    ticket = [m.clone() for m in run.ticket.weight_masks()]
    params = {f"layers.{i}.weight": m for i, m in enumerate(ticket)}
    params.update({f"layers.{i}.bias": m.clone() for i, m in enumerate(run.ticket.bias_masks())})
    log = list(pruning.score_log) if pruning else []
    return masks, ticket, log, pruning.scorer.name if pruning else "", params


def _draw_masks_and_scores(out: str, masks: list, ticket: list, score_log: list, scorer: str, ticket_params: dict,
                           loggers=(), step: int = 0, drawn: set[str] | None = None) -> None:
    from plantnseek.core import figures
    drawn = set() if drawn is None else drawn
    drawn.add(figures.save(figures.mask_figure(masks, ticket), os.path.join(out, "masks.png"), loggers,
                           "pictures/masks", step))
    for entry in score_log:  # the ticket's parameters marked in the same colours as in masks.png
        fig = figures.score_histogram_figure(entry["scores"], entry["masks"],
                                             f"{scorer} scores, pruning step {entry['level']}", ticket_params)
        drawn.add(figures.save(fig, os.path.join(out, scores_file(entry["level"])), loggers, "pictures/scores",
                               entry["level"]))


def _helper_main(out: str, *inputs: Any) -> None:
    # Ctrl-C reaches the whole process group: it is the parent's to handle. The parent stops the helper with
    # SIGTERM, which must end it (the handler inherited from Lightning would only print "Received SIGTERM").
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    torch.set_num_threads(1)  # one core for the helper; training keeps the others
    _draw_masks_and_scores(out, *inputs)


def _log_png(loggers, tag: str, path: str, step: int) -> None:
    """Add an already encoded PNG to TensorBoard as is (no decode and re-encode)."""
    from PIL import Image
    from tensorboard.compat.proto.summary_pb2 import Summary

    with open(path, "rb") as f:
        data = f.read()
    with Image.open(path) as im:
        width, height = im.size
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=data)
    from torch.utils.tensorboard import SummaryWriter

    for logger in loggers:
        writer = getattr(logger, "experiment", None)
        if isinstance(writer, SummaryWriter):  # not e.g. fast_dev_run's dummy experiment
            writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)


class Pictures(Callback):
    """Draws the run's pictures; fit returns only when all of them are written.

    The masks and score histograms are final once the last pruning step is done, so a forked helper
    process draws them on another core while training goes on; the task figure needs the trained
    network and is drawn when fit ends. If the helper cannot start or fails, everything is drawn inline.
    If fit ends by an exception once the run is complete (Ctrl-C while the pictures are drawn), :meth:`missing`
    names what was not drawn, for the summary.

    A stack of runs (a sweep batch) draws each run's pictures into its own directory, inline at fit end.

    Args:
        helper: draw masks and score histograms in the helper process (False: all inline at fit end).
        directories: the runs' directories (default: the trainer's log directory, for a single run).
    """

    def __init__(self, helper: bool = True, directories: list[str] | None = None) -> None:
        self.helper = helper
        self.directories = directories
        self._helper: Any = None
        self._helper_paths: list[str] = []  # what the helper writes: drawn once it has finished
        self._out: str | None = None
        self.drawn: set[str] = set()  # paths of the pictures written completely

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from plantnseek.callbacks.lookup import find_pruning, log_dir_of

        pruning = find_pruning(trainer)
        if self.directories is not None or len(pl_module.runs) != 1:
            return
        if self._helper is not None or (pruning is not None and pruning.levels_done < pruning.levels):
            return
        if not self.helper or "fork" not in multiprocessing.get_all_start_methods():
            return
        self._out = log_dir_of(trainer)
        os.makedirs(self._out, exist_ok=True)
        self._helper_paths = [os.path.join(self._out, name) for name in picture_names(pruning)[1:]]
        try:
            ctx = multiprocessing.get_context("fork")
            self._helper = ctx.Process(target=_helper_main, args=(self._out, *_mask_and_score_inputs(pl_module.run, pruning)),
                                       daemon=True)
            self._helper.start()
        except (AssertionError, OSError):  # e.g. inside a daemonic worker process
            self._helper = None

    def _end_helper(self, stop: bool) -> bool:
        """Wait for the helper (``stop``: terminate it first); True if it drew all its pictures."""
        helper, self._helper = self._helper, None
        if helper is None:
            return False
        if stop and helper.is_alive():
            helper.terminate()
        helper.join()
        if helper.exitcode == 0:
            self.drawn.update(self._helper_paths)
        return helper.exitcode == 0

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._end_helper(stop=True)

    def missing(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> list[list[str]]:
        """Per run, the pictures not completely written (a file cut off mid-write is removed); stops the helper."""
        from plantnseek.callbacks.lookup import log_dir_of, pruning_of

        self._end_helper(stop=True)
        found = []
        for r in range(len(pl_module.runs)):
            directory = self.directories[r] if self.directories else log_dir_of(trainer)
            lost = [n for n in picture_names(pruning_of(trainer, r)) if os.path.join(directory, n) not in self.drawn]
            for name in lost:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(directory, name))
            found.append(lost)
        return found

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from plantnseek.core import figures
        from plantnseek.callbacks.lookup import find_pruning, log_dir_of, pruning_of

        if self.directories is not None or len(pl_module.runs) != 1:
            for r, run in enumerate(pl_module.runs):
                directory = self.directories[r] if self.directories else log_dir_of(trainer)
                draw_run_pictures(directory, run, *trainer.datamodule.member(r).split("test"), pruning_of(trainer, r),
                                  pl_module.loggers_of(r), trainer.global_step, self.drawn)
            return
        out, step, loggers, pruning = log_dir_of(trainer), trainer.global_step, trainer.loggers, find_pruning(trainer)
        if self._helper is None or out != self._out:
            self._end_helper(stop=False)
            draw_run_pictures(out, pl_module.run, *trainer.datamodule.split("test"), pruning, loggers, step, self.drawn)
            return
        x, y = trainer.datamodule.split("test")
        self.drawn.add(figures.save(figures.task_figure(pl_module.run, x, y), os.path.join(out, "task.png"), loggers,
                                    "pictures/task", step))
        if not self._end_helper(stop=False):
            _draw_masks_and_scores(out, *_mask_and_score_inputs(pl_module.run, pruning), loggers=loggers, step=step,
                                   drawn=self.drawn)
            return
        _log_png(loggers, "pictures/masks", os.path.join(out, "masks.png"), step)
        for entry in pruning.score_log if pruning else []:
            _log_png(loggers, "pictures/scores", os.path.join(out, scores_file(entry["level"])), entry["level"])
