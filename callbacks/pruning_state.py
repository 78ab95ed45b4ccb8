"""What a pruning run keeps between levels and in its checkpoint, and the fingerprint that refuses a
resume under other settings.

:class:`PruningState` is the state half of :class:`~plantnseek.callbacks.Pruning`: its settings as one
flat fingerprint (``config``), its progress (levels done, a pending optimizer reset, events), the rewind
point (weights, optimizer state and lr schedule at fit start, or at ``rewind_epoch``) and how a rewind
restores it, and what the summary and pictures are drawn from (scores, masks, the after-pruning
metrics). A fit resumes only under the settings it was made with; evaluating a checkpoint may use others.
"""
from __future__ import annotations

import copy
from typing import Any

import pytorch_lightning as pl
import torch

from plantnseek.core.pruners import SCORERS
from plantnseek.core.pruning_step import apply_masks


class PruningState:
    """Checkpoint state of the Pruning callback (a mixin: the settings and progress live on the callback)."""

    def pruner_path(self) -> str:
        """The pruner as the user names it: a built-in name, or the scorer's ``module.Class``."""
        cls = type(self.scorer)
        return self.scorer.name if SCORERS.get(self.scorer.name) is cls else f"{cls.__module__}.{cls.__qualname__}"

    def config(self) -> dict[str, Any]:
        """Every setting that changes a pruned run's numbers (flat, JSON-safe): its fingerprint.

        Checkpoints carry it, so a resume under other settings is refused rather than mislabelled.
        """
        import inspect

        # a scorer's constructor arguments (kept as attributes of the same name) are settings; counters are not
        params = inspect.signature(type(self.scorer).__init__).parameters
        args = {k: getattr(self.scorer, k) for k in sorted(params) if k != "self" and hasattr(self.scorer, k)
                and isinstance(getattr(self.scorer, k), (bool, int, float, str, type(None)))}
        return {
            "pruner": self.pruner_path(), **{f"pruner.{k}": v for k, v in args.items()},
            "sparsity": self.sparsity, "compression": self.compression, "levels": self.levels,
            "pre_epochs": self.pre_epochs, "post_epochs": self.post_epochs, "prune_epochs": self.prune_epochs,
            "schedule": self.schedule, "scope": self.scope, "budget": self.budget, "prune_bias": self.prune_bias, "invert": self.invert,
            "shuffle": self.shuffle, "reinitialize": self.reinitialize, "prune_train_mode": self.prune_train_mode,
            "rewind": self.rewind, "rewind_epoch": self.rewind_epoch, "lr_rewind": self.lr_rewind,
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": self.config(),
            "levels_done": self.levels_done, "reset_pending": self.reset_pending, "events": self.events,
            "initial": self._initial, "initial_optim": self._initial_optim, "initial_sched": self._initial_sched,
            "rewind_taken_at": self.rewind_taken_at,
            # what the summary's score statistics and the score pictures are drawn from
            "last_scores": self.last_scores, "score_log": self.score_log, "pruned": self.pruned,
            "pruned_spread": self.pruned_spread,
        }

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        self._resuming_fit = trainer.state.fn == "fit"  # (called just before load_state_dict)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume a fit only under the settings the checkpoint was made with; evaluating may use others."""
        from plantnseek.core.fingerprint import refuse_differences

        if "config" in state_dict and getattr(self, "_resuming_fit", True):
            refuse_differences({f"pruning.{k}": v for k, v in state_dict["config"].items()},
                               {f"pruning.{k}": v for k, v in self.config().items()})
        self.levels_done = state_dict["levels_done"]
        self.reset_pending = state_dict["reset_pending"]
        self.events = list(state_dict["events"])
        self._initial = state_dict["initial"]
        self._initial_optim = state_dict["initial_optim"]
        self._initial_sched = state_dict["initial_sched"]
        self.rewind_taken_at = state_dict.get("rewind_taken_at", 0)
        self.last_scores = dict(state_dict.get("last_scores", {}))
        self.score_log = list(state_dict.get("score_log", []))
        self.pruned = state_dict.get("pruned")
        self.pruned_spread = state_dict.get("pruned_spread")

    # -- the rewind point ------------------------------------------------------------------------------
    def _reset_if_pending(self, trainer: pl.Trainer) -> None:
        """Reset optimizer and lr schedule at the start of the next epoch (after Lightning's lr step)."""
        if not self.reset_pending:
            return
        for opt, state in zip(trainer.optimizers, self._initial_optim or []):
            opt.load_state_dict(copy.deepcopy(state))
        for cfg, state in zip(trainer.lr_scheduler_configs, self._initial_sched or []):
            cfg.scheduler.load_state_dict(copy.deepcopy(state))
        self.reset_pending = False

    def remember_initial(self, pl_module: pl.LightningModule) -> None:
        """The initial values of every run of the model (a single run is a stack of one)."""
        self._initial = {k: v.detach().clone() for k, v in pl_module.stack.named_parameters()}

    def remember_rewind_point(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """What a rewind restores: the weights, optimizer state and lr schedule as they are now (at fit start,
        then, with ``rewind_epoch: k``, again at the start of epoch ``k``)."""
        self.remember_initial(pl_module)
        self._initial_optim = [copy.deepcopy(o.state_dict()) for o in trainer.optimizers]
        self._initial_sched = [copy.deepcopy(c.scheduler.state_dict()) for c in trainer.lr_scheduler_configs]
        self.rewind_taken_at = trainer.current_epoch

    @torch.no_grad()
    def rewind_weights(self, pl_module: pl.LightningModule) -> None:
        """Every weight and bias of every run back to its value at the rewind point (pruned ones stay zero)."""
        assert self._initial is not None, "remember_initial() was not called"
        for name, p in pl_module.stack.named_parameters():
            p.copy_(self._initial[name])
        for run in pl_module.runs:
            apply_masks(run)
