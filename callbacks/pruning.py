"""The pruning callback: scores and masks the planted MLP at fit start and between multishot levels.

Schedule (one ``fit``; the callback sets the trainer's epoch count):

* singleshot (``levels=1``): train ``pre_epochs``, prune to the target, train ``post_epochs``
  (optimizer state kept);
* multishot (``levels=L``): ``L`` times {train ``pre_epochs``; prune to ``target ** (l / L)``; rewind
  weights and biases to their initial planted values; reset optimizer and lr schedule}, then train
  ``post_epochs``: iterative magnitude pruning as the lottery-ticket papers run it, with ``pruner: mag``.
  ``rewind_epoch: k`` rewinds to the weights, optimizer state and lr schedule of epoch ``k`` of the first
  level's training instead (Frankle et al. 2020, "Linear mode connectivity and the lottery ticket
  hypothesis"); ``lr_rewind: true`` keeps the trained weights and rewinds only the optimizer and the lr
  schedule (Renda et al. 2020, "Comparing rewinding and fine-tuning in neural network pruning").

Each pruning step runs ``prune_epochs`` scoring rounds (exponential or linear schedule towards the
step's target) and keeps exactly ``round(density * n)`` parameters; pruned parameters stay pruned.

Right after the last pruning step (after its rewind and, with ``reinitialize``, the fresh weights: the
network that post-training starts from) the callback evaluates the test split once: ``pruned``, the
strong-ticket metric (the network as pruned, before any further training), and whether it is dead.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch import Tensor

from plantnseek.core.pruning_step import (STREAM_REINIT, STREAM_SCORE, STREAM_SHUFFLE, apply_masks, describe,
                                         event_metrics, make_scorer, reinitialize, score_rounds, scoring_data)
from plantnseek.callbacks.pruning_state import PruningState
from plantnseek.core.scorers import Scorer
from plantnseek.core.sampling import stream, torch_generator
from plantnseek.core.errors import UsageError, check_number
from plantnseek.core.masking import resolve_density, shuffle_masks

if TYPE_CHECKING:
    from plantnseek.core.run import Run

SCOPES = ("global", "local")
SCOPE_BUDGET = {"global": "global", "local": "uniform"}
SCHEDULES = ("exponential", "linear")
__all__ = ["Pruning", "make_scorer", "apply_masks", "STREAM_SCORE", "STREAM_SHUFFLE", "STREAM_REINIT"]


def ticket_density(ticket: Any, prune_bias: bool) -> float:
    """The fraction of the prunable parameters (weights, and biases with ``prune_bias``) the ticket occupies:
    the one ticket density, what ``sparsity: -1`` keeps and what results and figures compare against."""
    masks = ticket.weight_masks() + (ticket.bias_masks() if prune_bias else [])
    return sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks)


class Pruning(PruningState, Callback):
    """Prune the planted MLP at initialisation (singleshot) or iteratively with rewinding (multishot).

    Args:
        pruner: ``rand``, ``mag``, ``snip``, ``grasp``, ``synflow``, ``ticket`` (oracle), ``edgepopup``,
            ``edgepopup-anneal``, a dotted path to a :class:`Scorer` subclass, or a Scorer instance
            (``class_path`` and ``init_args`` in a config, e.g. edge-popup's options).
        sparsity: fraction of prunable parameters kept (0.1 keeps 10%); -1 keeps as many as the ticket has.
        compression: used when ``sparsity`` is None: keep ``10 ** -compression``.
        levels: 1 for singleshot; L > 1 for multishot with L prune-rewind levels.
        pre_epochs: training epochs before each pruning step.
        post_epochs: training epochs after the last pruning step (0: a pure strong-ticket search).
        prune_epochs: scoring rounds per pruning step.
        schedule: how the kept fraction falls over the rounds: ``exponential`` or ``linear``.
        scope: ``global`` (one ranking over all tensors) or ``local`` (each tensor keeps the fraction): the
            reference's names for ``budget: global`` and ``budget: uniform``.
        budget: how the kept parameters are shared among layers: ``global`` (one ranking), ``uniform`` (each
            tensor keeps the fraction), ``erk`` (Erdos-Renyi-Kernel), ``balanced`` or ``pyramidal``
            (:mod:`plantnseek.core.budgets`); default: what ``scope`` says.
        prune_bias: prune biases too (otherwise only weights are prunable).
        invert: keep the lowest scores instead of the highest.
        shuffle: after pruning, randomly permute each tensor's mask (same count, random positions).
        reinitialize: after the last pruning step, draw fresh (unplanted) weights under the mask.
        prune_train_mode: score with the network in train mode (no effect on this MLP; kept for parity).
        rewind: rewind weights and reset the optimizer after each level; default: only when levels > 1
            (and not with ``lr_rewind``).
        rewind_epoch: the epoch of the first level's training whose weights, optimizer state and lr
            schedule a rewind restores: 0 (initialisation, the default) up to ``pre_epochs - 1``.
        lr_rewind: learning-rate rewinding: after each level keep the trained (pruned) weights and
            restore only the optimizer state and lr schedule of ``rewind_epoch``.
    """

    def __init__(
        self,
        pruner: str | Scorer = "synflow",
        sparsity: float | None = 0.1,
        compression: float | None = None,
        levels: int = 1,
        pre_epochs: int = 0,
        post_epochs: int = 10,
        prune_epochs: int = 1,
        schedule: str = "exponential",
        scope: str = "global",
        budget: str | None = None,
        prune_bias: bool = False,
        invert: bool = False,
        shuffle: bool = False,
        reinitialize: bool = False,
        prune_train_mode: bool = False,
        rewind: bool | None = None,
        rewind_epoch: int = 0,
        lr_rewind: bool = False,
    ) -> None:
        check_number("sparsity", sparsity, optional=True)
        check_number("compression", compression, optional=True)
        for name, value, low in (("levels", levels, 1), ("prune_epochs", prune_epochs, 1),
                                 ("pre_epochs", pre_epochs, 0), ("post_epochs", post_epochs, 0)):
            check_number(name, value, integer=True)
            if value < low:
                raise UsageError(f"{name} {value} is invalid; it must be at least {low}")
        if scope not in SCOPES:
            raise UsageError(f"unknown scope {scope!r}; allowed: {', '.join(SCOPES)}")
        from plantnseek.core.budgets import BUDGETS

        if budget is not None and budget not in BUDGETS:
            raise UsageError(f"unknown budget {budget!r}; allowed: {', '.join(BUDGETS)}")
        if budget is not None and scope != "global" and SCOPE_BUDGET[scope] != budget:
            raise UsageError(f"scope {scope!r} and budget {budget!r} contradict each other; give the budget alone")
        if schedule not in SCHEDULES:
            raise UsageError(f"unknown schedule {schedule!r}; allowed: {', '.join(SCHEDULES)}")
        if sparsity is not None:
            resolve_density(sparsity, None, 1.0)  # validates the range
        else:
            resolve_density(None, compression, 1.0)
        self.scorer = make_scorer(pruner)
        self.sparsity, self.compression = sparsity, compression
        self.levels, self.pre_epochs, self.post_epochs = levels, pre_epochs, post_epochs
        self.prune_epochs, self.schedule, self.scope = prune_epochs, schedule, scope
        self.budget = budget if budget is not None else SCOPE_BUDGET[scope]
        self.prune_bias, self.invert, self.shuffle = prune_bias, invert, shuffle
        self.reinitialize, self.prune_train_mode = reinitialize, prune_train_mode
        check_number("rewind_epoch", rewind_epoch, integer=True)
        if lr_rewind and rewind:
            raise UsageError("lr_rewind keeps the trained weights and rewind: true rewinds them; give one of the two")
        self.rewind = levels > 1 and not lr_rewind if rewind is None else rewind
        self.rewind_epoch, self.lr_rewind = rewind_epoch, bool(lr_rewind)
        if rewind_epoch != 0:
            if not (self.rewind or self.lr_rewind):
                raise UsageError(f"rewind_epoch {rewind_epoch} has no effect: nothing is rewound "
                                 "(multishot levels > 1 rewind by default, or give rewind: true or lr_rewind: true)")
            if not 0 < rewind_epoch < pre_epochs:
                raise UsageError(f"rewind_epoch {rewind_epoch} is invalid; allowed: 0 to pre_epochs - 1 "
                                 f"({pre_epochs - 1}), an epoch of the first level's training")
        # progress, saved in checkpoints
        self.levels_done = 0
        self.reset_pending = False
        self.events: list[dict[str, Any]] = []
        self.density: float | None = None
        self.pruned: dict[str, float] | None = None  # test results right after the last pruning step
        self.pruned_spread: float | None = None  # and the network's output spread then (0: dead)
        self._initial: dict[str, Tensor] | None = None
        self._initial_optim: list[dict] | None = None
        self._initial_sched: list[dict] | None = None
        self.rewind_taken_at = 0  # the epoch whose state _initial* hold (the rewind point once it is reached)
        self.last_scores: dict[str, Tensor] = {}
        self.score_log: list[dict[str, Any]] = []  # per pruning step: scores and resulting masks (pictures)

    # -- configuration ---------------------------------------------------------------------------------
    @staticmethod
    def run_of(pl_module: pl.LightningModule) -> Run:
        """The single run this callback prunes; a stack's runs each need their own (PerRunPruning)."""
        runs = getattr(pl_module, "runs", None)
        if runs is None:
            raise UsageError(f"the Pruning callback needs a plantnseek.PlantedMLP model, not {type(pl_module).__name__}")
        if len(runs) != 1:
            raise UsageError(f"one Pruning callback prunes one run; this model stacks {len(runs)} runs "
                             "(give each its own Pruning: plantnseek.callbacks.PerRunPruning)")
        return runs[0]

    def of_run(self, r: int) -> "Pruning":
        """The settings of run ``r`` of the model (one Pruning serves a single run)."""
        return self

    @property
    def total_epochs(self) -> int:
        return self.levels * self.pre_epochs + self.post_epochs

    def prunable(self, run: Run) -> list[tuple[str, torch.nn.Parameter, Tensor]]:
        return list(run.net.masked_parameters(bias=self.prune_bias))

    def ticket_density(self, run: Run) -> float:
        """Kept fraction that keeps exactly as many prunable parameters as the ticket has."""
        return ticket_density(run.ticket, self.prune_bias)

    def target_density(self, run: Run) -> float:
        density = resolve_density(self.sparsity, self.compression, self.ticket_density(run))
        n = sum(p.numel() for _, p, _ in self.prunable(run))
        if round(density * n) < 1:
            raise UsageError(f"sparsity {density:g} keeps no parameter of the {n} prunable ones; "
                             f"the smallest kept fraction is {0.5 / n:.2g}")
        return density

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self.density = self.target_density(self.run_of(pl_module))
        trainer.fit_loop.max_epochs = self.total_epochs

    # -- schedule --------------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._initial is None:
            self.remember_rewind_point(trainer, pl_module)
        self._run_due_levels(trainer, pl_module, epochs_done=trainer.current_epoch)
        self._reset_if_pending(trainer)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._reset_if_pending(trainer)
        if self.rewind_taken_at < self.rewind_epoch == trainer.current_epoch and self.levels_done == 0:
            self.remember_rewind_point(trainer, pl_module)  # after epoch k's lr step: the state after k epochs

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._run_due_levels(trainer, pl_module, epochs_done=trainer.current_epoch + 1)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A schedule with no training epochs at all never reaches on_train_start.
        if self._initial is None:
            self.remember_initial(pl_module)
            self._run_due_levels(trainer, pl_module, epochs_done=trainer.current_epoch)

    def _run_due_levels(self, trainer: pl.Trainer, pl_module: pl.LightningModule, epochs_done: int) -> None:
        for level in range(self.levels_done, self.levels):  # a bounded loop: no schedule can spin forever
            if (level + 1) * self.pre_epochs > epochs_done:
                break
            self.prune_model(pl_module, level, trainer)
            self.levels_done = level + 1
            if self.rewind:
                self.rewind_weights(pl_module)
                self.reset_pending = True
            elif self.lr_rewind:
                self.reset_pending = True
            if self.levels_done == self.levels:
                if self.reinitialize:
                    self.reinitialize_model(pl_module)
                self.record_pruned(trainer, pl_module)

    def record_pruned(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Evaluate the network as the last pruning step left it (``pruned``; TensorBoard ``test_pruned/*``)."""
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "test_dataloader"):
            return
        self.measure_pruned(self.run_of(pl_module), datamodule.test_dataloader())
        pl_module.log_run(0, {f"test_pruned/{k}": v for k, v in self.pruned.items()}, step=0)

    def measure_pruned(self, run: Run, test: Iterable[tuple[Tensor, Tensor]]) -> None:
        """``pruned`` (test results) and ``pruned_spread`` (is it dead?) of ``run`` as pruning left it."""
        self.pruned, self.pruned_spread = run.evaluate(test), run.output_spread(test)

    def reinitialize_model(self, pl_module: pl.LightningModule) -> None:
        self._reinitialize(self.run_of(pl_module))

    def _reinitialize(self, run: Run) -> None:
        reinitialize(run, stream(run.hparams.seed, STREAM_REINIT))

    # -- one pruning step ------------------------------------------------------------------------------
    def level_density(self, level: int) -> float:
        assert self.density is not None
        return self.density ** ((level + 1) / self.levels)

    def prune_model(self, pl_module: pl.LightningModule, level: int, trainer: pl.Trainer) -> None:
        """One pruning step of the model's run (a stack's runs: :class:`~plantnseek.callbacks.PerRunPruning`)."""
        self.prune_level(self.run_of(pl_module), level, trainer.datamodule, trainer)

    def prune_level(self, run: Run, level: int, datamodule: Any = None,
                    trainer: pl.Trainer | None = None) -> dict[str, Any]:
        """Score and mask towards this level's density in ``prune_epochs`` rounds; log and return the result.

        ``datamodule`` provides the pruning subset (scorers with ``uses_data``) and the test split.
        """
        if self.density is None:
            self.density = self.target_density(run)
        target = self.level_density(level)
        params = self.prunable(run)
        names = [n for n, _, _ in params]
        ticket = {f"layers.{i}.weight": m for i, m in enumerate(run.ticket.weight_masks())}
        ticket.update({f"layers.{i}.bias": m for i, m in enumerate(run.ticket.bias_masks())})
        seed = run.hparams.seed
        batches, train, batch_size = scoring_data(self.scorer, datamodule)
        alive = [m.detach().clone() for _, _, m in params]  # before this step: shuffle stays inside it
        self.last_scores = score_rounds(
            run, self.scorer, params, [ticket[n] for n in names], target=target, rounds=self.prune_epochs,
            schedule=self.schedule, budget=self.budget, invert=self.invert, train_mode=self.prune_train_mode,
            generators=lambda r: torch_generator(seed, STREAM_SCORE, level, r), batches=batches, train=train,
            batch_size=batch_size)
        if self.shuffle:
            gen = torch_generator(seed, STREAM_SHUFFLE, level)
            with torch.no_grad():
                for (_, _, mask), m in zip(params, shuffle_masks([m for _, _, m in params], alive, gen)):
                    mask.copy_(m)
        apply_masks(run)
        self.score_log.append({"level": level + 1, "scores": dict(self.last_scores),
                               "masks": {n: m.detach().clone() for n, _, m in params}})
        event = describe(run, params, level, target)
        if datamodule is not None:
            event["test_after_prune"] = run.evaluate(datamodule.test_dataloader())
        self.events.append(event)
        if trainer is not None:
            self._log_event(trainer.loggers, event)
        return event

    def _log_event(self, loggers: Any, event: dict[str, Any]) -> None:
        for logger in loggers:
            logger.log_metrics(event_metrics(event), step=len(self.events))
