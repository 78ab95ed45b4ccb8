"""The pruning callback: scores and masks the planted MLP at fit start and between multishot levels.

Schedule (one ``fit``; the callback sets the trainer's epoch count):

* singleshot (``levels=1``): train ``pre_epochs``, prune to the target, train ``post_epochs``
  (optimizer state kept);
* multishot (``levels=L``): ``L`` times {train ``pre_epochs``; prune to ``target ** (l / L)``; rewind
  weights and biases to their initial planted values; reset optimizer and lr schedule}, then train
  ``post_epochs``.

Each pruning step runs ``prune_epochs`` scoring rounds (exponential or linear schedule towards the
step's target) and keeps exactly ``round(density * n)`` parameters; pruned parameters stay pruned.

Right after the last pruning step (after its rewind and, with ``reinitialize``, the fresh weights: the
network that post-training starts from) the callback evaluates the test split once: ``pruned``, the
strong-ticket metric (the network as pruned, before any further training).
"""
from __future__ import annotations

import copy
import importlib
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch import Tensor

from plantnseek.data import stream, torch_generator
from plantnseek.errors import RunFailure, UsageError, check_number
from plantnseek.masking import recovery, resolve_density, schedule_densities, shuffle_masks, topk_masks
from plantnseek.planting import he_scaled_init
from plantnseek.callbacks.scorers import SCORERS, Scorer, ScoringContext

SCOPES = ("global", "local")
SCHEDULES = ("exponential", "linear")
STREAM_SCORE, STREAM_SHUFFLE, STREAM_REINIT = 10, 11, 12


def make_scorer(pruner: str | Scorer) -> Scorer:
    """A scorer from a built-in name, a dotted ``module.Class`` path, or an instance."""
    if isinstance(pruner, Scorer):
        return pruner
    if not isinstance(pruner, str):
        raise UsageError(f"pruner {pruner!r} is invalid; give a built-in name or a module.Class Scorer path")
    if pruner in SCORERS:
        return SCORERS[pruner]()
    if "." in pruner:
        module_name, _, cls_name = pruner.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), cls_name)
        except (ImportError, AttributeError):
            raise UsageError(f"cannot import pruner {pruner!r}; give a built-in name or an importable Scorer class")
        if not (isinstance(cls, type) and issubclass(cls, Scorer)):
            raise UsageError(f"pruner {pruner!r} is not a subclass of plantnseek.callbacks.Scorer")
        try:
            return cls()
        except TypeError as e:  # a constructor that needs arguments
            raise UsageError(f"pruner {pruner!r} cannot be built without arguments ({e}); give its arguments "
                             f"in a config: pruner: {{class_path: {pruner}, init_args: {{...}}}}") from None
    raise UsageError(f"unknown pruner {pruner!r}; allowed: {', '.join(SCORERS)}, or a module.Class Scorer path")


@torch.no_grad()
def apply_masks(pl_module: pl.LightningModule) -> None:
    """Zero the stored values of pruned parameters, so checkpoints show pruned weights as zeros.

    Training keeps them zero: each step re-zeroes pruned entries after the optimizer moves them
    (``StackedMLP.zero_pruned``), which is what lets the training forward skip the mask multiply.
    """
    for _, p, m in pl_module.net.masked_parameters(bias=True):
        p.mul_(m)


class Pruning(Callback):
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
        scope: ``global`` (one ranking over all tensors) or ``local`` (each tensor keeps the fraction).
        prune_bias: prune biases too (otherwise only weights are prunable).
        invert: keep the lowest scores instead of the highest.
        shuffle: after pruning, randomly permute each tensor's mask (same count, random positions).
        reinitialize: after the last pruning step, draw fresh (unplanted) weights under the mask.
        prune_train_mode: score with the network in train mode (no effect on this MLP; kept for parity).
        rewind: rewind weights and reset the optimizer after each level; default: only when levels > 1.
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
        prune_bias: bool = False,
        invert: bool = False,
        shuffle: bool = False,
        reinitialize: bool = False,
        prune_train_mode: bool = False,
        rewind: bool | None = None,
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
        self.prune_bias, self.invert, self.shuffle = prune_bias, invert, shuffle
        self.reinitialize, self.prune_train_mode = reinitialize, prune_train_mode
        self.rewind = levels > 1 if rewind is None else rewind
        # progress, saved in checkpoints
        self.levels_done = 0
        self.reset_pending = False
        self.events: list[dict[str, Any]] = []
        self.density: float | None = None
        self.pruned: dict[str, float] | None = None  # test results right after the last pruning step
        self._initial: dict[str, Tensor] | None = None
        self._initial_optim: list[dict] | None = None
        self._initial_sched: list[dict] | None = None
        self.last_scores: dict[str, Tensor] = {}
        self.score_log: list[dict[str, Any]] = []  # per pruning step: scores and resulting masks (pictures)

    # -- configuration ---------------------------------------------------------------------------------
    def of_run(self, r: int) -> "Pruning":
        """The settings of run ``r`` of the model (one Pruning serves a single run)."""
        return self

    @property
    def total_epochs(self) -> int:
        return self.levels * self.pre_epochs + self.post_epochs

    def prunable(self, module: pl.LightningModule) -> list[tuple[str, torch.nn.Parameter, Tensor]]:
        return list(module.net.masked_parameters(bias=self.prune_bias))

    def ticket_density(self, module: pl.LightningModule) -> float:
        """Kept fraction that keeps exactly as many prunable parameters as the ticket has."""
        n_ticket = sum(int(m.sum()) for m in module.ticket.weight_masks())
        n_total = sum(m.numel() for m in module.ticket.weight_masks())
        if self.prune_bias:
            n_ticket += sum(int(m.sum()) for m in module.ticket.bias_masks())
            n_total += sum(m.numel() for m in module.ticket.bias_masks())
        return n_ticket / n_total

    def target_density(self, module: pl.LightningModule) -> float:
        density = resolve_density(self.sparsity, self.compression, self.ticket_density(module))
        n = sum(p.numel() for _, p, _ in self.prunable(module))
        if round(density * n) < 1:
            raise UsageError(f"sparsity {density:g} keeps no parameter of the {n} prunable ones; "
                             f"the smallest kept fraction is {0.5 / n:.2g}")
        return density

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if not hasattr(pl_module, "ticket") or not hasattr(pl_module, "net"):
            raise UsageError("the Pruning callback needs a plantnseek.PlantedMLP model")
        self.density = self.target_density(pl_module)
        trainer.fit_loop.max_epochs = self.total_epochs

    # -- schedule --------------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._initial is None:
            self.remember_initial(pl_module)
            self._initial_optim = [copy.deepcopy(o.state_dict()) for o in trainer.optimizers]
            self._initial_sched = [copy.deepcopy(c.scheduler.state_dict()) for c in trainer.lr_scheduler_configs]
        self._run_due_levels(trainer, pl_module, epochs_done=trainer.current_epoch)
        self._reset_if_pending(trainer)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._reset_if_pending(trainer)

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
            self.prune_level(pl_module, level, trainer.datamodule, trainer)
            self.levels_done = level + 1
            if self.rewind:
                self.rewind_weights(pl_module)
                self.reset_pending = True
            if self.levels_done == self.levels:
                if self.reinitialize:
                    self._reinitialize(pl_module)
                self.record_pruned(trainer, pl_module)

    def record_pruned(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Evaluate the network as the last pruning step left it (``pruned``; TensorBoard ``test_pruned/*``)."""
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "test_dataloader"):
            return
        self.pruned = pl_module.evaluate(datamodule.test_dataloader())
        pl_module.log_run(0, {f"test_pruned/{k}": v for k, v in self.pruned.items()}, step=0)

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

    @torch.no_grad()
    def rewind_weights(self, pl_module: pl.LightningModule) -> None:
        """Every weight and bias of every run back to its initial planted value (pruned ones stay zero)."""
        assert self._initial is not None, "remember_initial() was not called"
        for name, p in pl_module.stack.named_parameters():
            p.copy_(self._initial[name])
        for run in pl_module.runs:
            apply_masks(run)

    @torch.no_grad()
    def _reinitialize(self, pl_module: pl.LightningModule) -> None:
        fresh = he_scaled_init(pl_module.net.widths, stream(pl_module.hparams.seed, STREAM_REINIT))
        for layer, (w, b) in zip(pl_module.net.layers, fresh):
            layer.weight.copy_(torch.as_tensor(w))
            layer.bias.copy_(torch.as_tensor(b))
        apply_masks(pl_module)

    # -- one pruning step ------------------------------------------------------------------------------
    def level_density(self, level: int) -> float:
        assert self.density is not None
        return self.density ** ((level + 1) / self.levels)

    def prune_level(self, pl_module: pl.LightningModule, level: int, datamodule: Any = None,
                    trainer: pl.Trainer | None = None) -> dict[str, Any]:
        """Score and mask towards this level's density in ``prune_epochs`` rounds; log and return the result.

        ``datamodule`` provides the pruning subset (scorers with ``uses_data``) and the test split.
        """
        if self.density is None:
            self.density = self.target_density(pl_module)
        target = self.level_density(level)
        params = self.prunable(pl_module)
        names = [n for n, _, _ in params]
        ticket = {f"layers.{i}.weight": m for i, m in enumerate(pl_module.ticket.weight_masks())}
        ticket.update({f"layers.{i}.bias": m for i, m in enumerate(pl_module.ticket.bias_masks())})
        seed = pl_module.hparams.seed
        batches, train, batch_size = None, None, 64
        if self.scorer.uses_train:
            if datamodule is None or not hasattr(datamodule, "split"):
                raise UsageError(f"pruner {self.scorer.name!r} trains on data: use a plantnseek.PlantedDataModule")
            train, batch_size = datamodule.split("train"), int(datamodule.hparams.train_batch_size)
        if self.scorer.uses_data:
            if datamodule is None or not hasattr(datamodule, "prune_dataloader"):
                raise UsageError(f"pruner {self.scorer.name!r} needs data: use a plantnseek.PlantedDataModule")
            batches = datamodule.prune_dataloader()
        alive = [m.detach().clone() for _, _, m in params]  # before this step: shuffle stays inside it
        was_training = pl_module.net.training
        pl_module.net.train(self.prune_train_mode)
        try:
            for r, density in enumerate(schedule_densities(target, self.prune_epochs, self.schedule)):
                ctx = ScoringContext(
                    net=pl_module.net, names=names, params=[p for _, p, _ in params],
                    masks=[m for _, _, m in params], batches=batches if batches is not None else [],
                    loss=pl_module.loss, generator=torch_generator(seed, STREAM_SCORE, level, r),
                    ticket_masks=[ticket[n] for n in names], train=train, batch_size=batch_size,
                    density=density, scope=self.scope,
                )
                with torch.enable_grad():
                    scores = self.scorer.score(ctx)
                self._check_scores(scores, params)
                if self.invert:
                    scores = [-s for s in scores]
                new = topk_masks(scores, ctx.masks, density, self.scope)
                with torch.no_grad():
                    for (_, _, mask), m in zip(params, new):
                        mask.copy_(m)
                self.last_scores = {n: s.detach() for n, s in zip(names, scores)}
        finally:
            pl_module.net.train(was_training)
        if self.shuffle:
            gen = torch_generator(seed, STREAM_SHUFFLE, level)
            with torch.no_grad():
                for (_, _, mask), m in zip(params, shuffle_masks([m for _, _, m in params], alive, gen)):
                    mask.copy_(m)
        apply_masks(pl_module)
        self.score_log.append({"level": level + 1, "scores": dict(self.last_scores),
                               "masks": {n: m.detach().clone() for n, _, m in params}})
        event = self.describe(pl_module, level, target)
        if datamodule is not None:
            event["test_after_prune"] = pl_module.evaluate(datamodule.test_dataloader())
        self.events.append(event)
        if trainer is not None:
            self._log_event(trainer.loggers, event)
        return event

    def _check_scores(self, scores: Any, params: list[tuple[str, Any, Tensor]]) -> None:
        """A scorer's result must be one finite tensor per prunable parameter, of its shape; otherwise the
        run fails (recorded in summary.json) rather than masking with garbage."""
        name = self.scorer.name
        if not isinstance(scores, (list, tuple)) or not all(isinstance(s, Tensor) for s in scores):
            got = type(scores).__name__ if not isinstance(scores, (list, tuple)) else \
                f"a list holding {', '.join(sorted({type(s).__name__ for s in scores if not isinstance(s, Tensor)}))}"
            raise RunFailure(f"pruner {name!r} returned {got}; score() must return a list of torch tensors, "
                             f"one per prunable parameter")
        if len(scores) != len(params):
            raise RunFailure(f"pruner {name!r} returned {len(scores)} score tensors for "
                             f"{len(params)} prunable parameters")
        for s, (pname, p, _) in zip(scores, params):
            if s.shape != p.shape:
                raise RunFailure(f"pruner {name!r} scored {pname} with shape {tuple(s.shape)}, "
                                 f"expected {tuple(p.shape)}")
            if not torch.isfinite(s).all():
                raise RunFailure(f"pruner {name!r} produced non-finite scores in {pname}")

    def describe(self, pl_module: pl.LightningModule, level: int, target: float) -> dict[str, Any]:
        """Kept fractions and ticket recovery after a pruning step."""
        net = pl_module.net
        prunable = self.prunable(pl_module)
        kept = sum(int(m.sum()) for _, _, m in prunable)
        total = sum(m.numel() for _, _, m in prunable)
        rec = recovery([l.weight_mask for l in net.layers], pl_module.ticket.weight_masks())
        return {
            "level": level + 1, "density_target": target, "kept": kept, "prunable": total,
            "density": kept / total,
            "kept_fraction": {n: float(m.mean()) for n, _, m in prunable},
            "recovery": rec,
        }

    def _log_event(self, loggers: Any, event: dict[str, Any]) -> None:
        metrics = {"prune/density": event["density"], "prune/recall": event["recovery"]["recall"],
                   "prune/precision": event["recovery"]["precision"],
                   "prune/collapsed": float(event["recovery"]["collapsed"])}
        # One naming scheme: prune/<quantity>/<tensor or layer name, as in the state dict>.
        metrics.update({f"prune/kept/{n}": v for n, v in event["kept_fraction"].items()})
        for row in event["recovery"]["layers"]:
            i = row["layer"]
            metrics[f"prune/recall/layers.{i}.weight"] = row["recall"]
            metrics[f"prune/precision/layers.{i}.weight"] = row["precision"]
            if "dead_units" in row:
                metrics[f"prune/dead_units/layers.{i}"] = row["dead_units"]
        for logger in loggers:
            logger.log_metrics(metrics, step=len(self.events))

    # -- checkpointing ---------------------------------------------------------------------------------
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
            "schedule": self.schedule, "scope": self.scope, "prune_bias": self.prune_bias, "invert": self.invert,
            "shuffle": self.shuffle, "reinitialize": self.reinitialize, "prune_train_mode": self.prune_train_mode,
            "rewind": self.rewind,
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": self.config(),
            "levels_done": self.levels_done, "reset_pending": self.reset_pending, "events": self.events,
            "initial": self._initial, "initial_optim": self._initial_optim, "initial_sched": self._initial_sched,
            # what the summary's score statistics and the score pictures are drawn from
            "last_scores": self.last_scores, "score_log": self.score_log, "pruned": self.pruned,
        }

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        self._resuming_fit = trainer.state.fn == "fit"  # (called just before load_state_dict)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume a fit only under the settings the checkpoint was made with; evaluating may use others."""
        from plantnseek.fingerprint import refuse_differences

        if "config" in state_dict and getattr(self, "_resuming_fit", True):
            refuse_differences({f"pruning.{k}": v for k, v in state_dict["config"].items()},
                               {f"pruning.{k}": v for k, v in self.config().items()})
        self.levels_done = state_dict["levels_done"]
        self.reset_pending = state_dict["reset_pending"]
        self.events = list(state_dict["events"])
        self._initial = state_dict["initial"]
        self._initial_optim = state_dict["initial_optim"]
        self._initial_sched = state_dict["initial_sched"]
        self.last_scores = dict(state_dict.get("last_scores", {}))
        self.score_log = list(state_dict.get("score_log", []))
        self.pruned = state_dict.get("pruned")
