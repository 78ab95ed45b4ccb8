"""The LightningModule: planted masked MLPs, trained as one stack; and the planted ticket as buffers."""
from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.data import AttributeDict
from torch import Tensor, nn

from plantnseek.engine import kernel
from plantnseek.engine_choice import choose_engine
from plantnseek.core.errors import RunFailure, UsageError, check_number, check_seed
from plantnseek.core.fingerprint import check_same_network, model_settings, refuse_differences
from plantnseek.core.layers import StackedMLP
from plantnseek.core.metrics import SumMean
from plantnseek.core.planted import Ticket, check_same_ticket, network_widths, plant_network
from plantnseek.core.registry import get_task
from plantnseek.core.run import Evaluation, Run, as_runs, run_losses

OPTIMIZERS = ("adam", "sgd", "momentum", "rms")


def validate_model_args(depth: int, width: int, seed: int, optimizer: str, lr: float, weight_decay: float,
                        lr_drops: list[int] | None, lr_drop_rate: float) -> None:
    """Every check of the model's arguments, so the CLI, ``main`` and sweeps refuse bad values up front.

    ``lr_drop_rate`` must lie in (0, 1]: a drop multiplies the learning rate by it, so 0 or a negative
    rate would stop training or climb the loss, and a rate above 1 is a raise, not a drop.
    """
    for name, value in (("depth", depth), ("width", width)):
        check_number(name, value, integer=True)
    check_seed(seed)
    for name, value in (("lr", lr), ("weight_decay", weight_decay), ("lr_drop_rate", lr_drop_rate)):
        check_number(name, value)
    if optimizer not in OPTIMIZERS:
        raise UsageError(f"unknown optimizer {optimizer!r}; allowed: {', '.join(OPTIMIZERS)}")
    if not lr > 0:
        raise UsageError(f"lr {lr} is invalid; it must be a finite number > 0")
    if weight_decay < 0:
        raise UsageError(f"weight_decay {weight_decay} is invalid; it must be a finite number >= 0")
    if not 0 < lr_drop_rate <= 1:
        raise UsageError(f"lr_drop_rate {lr_drop_rate} is invalid; allowed: greater than 0 and at most 1")
    if lr_drops is not None:
        if not isinstance(lr_drops, (list, tuple)) or any(
                isinstance(e, bool) or not isinstance(e, int) or e < 0 for e in lr_drops):
            raise UsageError(f"lr_drops {lr_drops!r} is invalid; give a list of epochs, non-negative integers")


def make_optimizer(hp: Any, params: Any) -> dict[str, Any]:
    """The reference's optimizers (all elementwise, so stacked runs train exactly like separate ones).

    Fused (Adam, SGD) or multi-tensor (RMSprop) implementations: the same update in one pass over
    all parameters instead of a chain of per-tensor ops (Adam's step was a quarter of a training step).
    """
    lr, wd = hp["lr"], hp["weight_decay"]
    if hp["optimizer"] == "adam":
        opt = torch.optim.Adam(params, lr=lr, weight_decay=wd, fused=True)
    elif hp["optimizer"] == "sgd":
        opt = torch.optim.SGD(params, lr=lr, weight_decay=wd, fused=True)
    elif hp["optimizer"] == "momentum":
        opt = torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=0.9, nesterov=True, fused=True)
    else:
        opt = torch.optim.RMSprop(params, lr=lr, weight_decay=wd, foreach=True)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(hp["lr_drops"] or []), gamma=hp["lr_drop_rate"])
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


class PlantedMLP(pl.LightningModule):
    """Planted MLPs of one task and architecture, trained as one stack (a single run is a stack of one).

    Thin by design: it plants each run's ticket at construction (from its seed), and owns the one
    training and evaluation path of every run, alone or in a sweep: batched matmuls over a leading runs
    dimension, one loss per run (summed, so each run's gradients are its own), and per-run metrics and
    history. Every optimizer here is elementwise, so a stack trains each run exactly as it would alone.
    Per-run code (pruning, summaries, pictures) works on a :class:`~plantnseek.core.run.Run`: ``runs[r]``,
    or ``run`` for a single-run model. Pruning, summaries and pictures are callbacks.

    Args:
        dataset: task (``circle``, ``relu``, ``helix``, ``module.Class`` or ``run:<run dir or checkpoint>``);
            fixes input/output sizes, loss, metrics and the planted ticket.
        depth: number of layers counting input and output (depth 5 has 4 weight matrices); at least 3.
        width: width of every hidden layer; at least the ticket's minimum width.
        seed: fixes the initialisation and the planted ticket; a list of seeds makes a stack of runs.
        optimizer: ``adam``, ``sgd``, ``momentum`` (SGD, momentum 0.9, Nesterov) or ``rms``.
        lr: learning rate.
        weight_decay: L2 weight decay.
        lr_drops: epochs at which the learning rate is multiplied by ``lr_drop_rate``.
        lr_drop_rate: multiplicative factor of each drop.
    """

    def __init__(
        self,
        dataset: str = "circle",
        depth: int = 5,
        width: int = 50,
        seed: int | list[int] = 1,
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        lr_drops: list[int] | None = None,
        lr_drop_rate: float = 0.1,
    ) -> None:
        super().__init__()
        seeds = list(seed) if isinstance(seed, (list, tuple)) else [seed]
        if not seeds:
            raise UsageError("seed [] is invalid; give an integer seed or a non-empty list of them")
        for s in seeds:
            validate_model_args(depth, width, s, optimizer, lr, weight_decay, lr_drops, lr_drop_rate)
        self.save_hyperparameters(logger=False)  # logged once, with the outcome, at the end of the run
        # One Lightning step makes several optimizer steps (see PlantedDataModule.batches_per_step).
        self.automatic_optimization = False
        self.task = get_task(dataset)
        planted = [plant_network(dataset, depth, width, s) for s in seeds]
        self.stack = StackedMLP(len(seeds), network_widths(self.task, depth, width))
        with torch.no_grad():
            for r, p in enumerate(planted):
                for l, (w, b) in enumerate(p.layers):
                    self.stack.weights[l][r].copy_(torch.as_tensor(w))
                    self.stack.biases[l][r].copy_(torch.as_tensor(b))
        self.tickets = nn.ModuleList(Ticket(p) for p in planted)
        self.runs = [Run(AttributeDict({**self.hparams, "seed": s}), self.task, self.tickets[r], self.stack.run(r))
                     for r, s in enumerate(seeds)]
        self.train_loss = SumMean(len(seeds))
        self.evaluation = Evaluation(self.task, len(seeds))
        # Where each run's scalars go: the trainer's loggers for a single run, or one set per run (sweeps).
        self.run_loggers: list[list[Any]] | None = None
        # What trains the run, decided once per fit before the first step (:func:`choose_engine`).
        self.engine: str | None = None
        self.evaluated_at: int | None = None  # global_step of the last per-epoch evaluation (history's last row)
        self.engine_reason: str | None = None

    def _apply(self, fn: Any, recurse: bool = True) -> "PlantedMLP":
        """A dtype or device change (``precision="64-true"``, ``.double()``) gives the stack new tensors: each
        run's view is made again, so that it still aliases the stack (pruning through a view must reach the
        tensors that train)."""
        super()._apply(fn, recurse)
        for r, run in enumerate(getattr(self, "runs", [])):
            run.net = self.stack.run(r).train(self.training)
        return self

    def train(self, mode: bool = True) -> "PlantedMLP":
        """Train/eval mode for the stack and every run's view (the views are not submodules)."""
        super().train(mode)
        for run in getattr(self, "runs", []):
            run.net.train(mode)
        return self

    @property
    def run(self) -> Run:
        """The run of a single-run model (``model.run.net``, ``.ticket``, ``.history``, ``.evaluate``...);
        a stack has ``runs[r]`` instead."""
        if len(self.runs) != 1:
            raise AttributeError(f"this model is a stack of {len(self.runs)} runs; use model.runs[r]")
        return self.runs[0]

    def forward(self, x: Tensor) -> Tensor:
        """``[R, B, d_in]`` for the stack, or ``[B, d_in]`` for a stack of one."""
        return self.stack(x) if x.dim() == 3 else self.stack(x.unsqueeze(0)).squeeze(0)

    # -- one train/eval path for all tasks and all runs ----------------------------------------------------
    def on_train_start(self) -> None:
        self.engine, self.engine_reason = choose_engine(self)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        """One optimizer step per ``(x, y)`` batch; ``batch`` is a batch or a list of batches (see
        :func:`plantnseek.engine_choice.steps_observed` for when a Lightning batch holds more than one).

        Every optimizer step goes through Lightning's optimizer wrapper, so ``trainer.global_step`` counts
        optimizer steps on both engines.
        """
        batches = [as_runs(*b) for b in (batch if isinstance(batch, list) else [batch])]
        wrapped = self.optimizers()
        tensors = self.stack.tensors()
        self.stack.zero_pruned(tensors)  # masks may have changed since the last step (pruning runs between steps)
        if self.engine == "kernel":
            total, count = kernel.train(*tensors, wrapped.optimizer, batches, self.task.classification)
            wrapped.optimizer.zero_grad(set_to_none=True)
            for _ in batches:
                wrapped.step()  # no gradients: torch's update is a no-op; Lightning counts the kernel's step
        else:
            total, count = self._torch_steps(batches, wrapped, tensors)
        self.train_loss.update(total, count)
        return (total.sum() / count).float()

    def _torch_steps(self, batches: list[tuple[Tensor, Tensor]], wrapped: Any, tensors: Any) -> tuple[Tensor, int]:
        """The PyTorch path: autograd through the unmasked forward (exact while pruned entries are stored as
        zeros), Lightning's backward and optimizer step (so its hooks see the gradients), ``torch.optim``."""
        total, count = torch.zeros(len(self.runs), dtype=torch.float64), 0
        for x, y in batches:
            wrapped.zero_grad(set_to_none=True)
            losses = run_losses(self.task, self.stack(x, masked=False, tensors=tensors), y)
            self.manual_backward(losses.sum())  # runs are independent: each run's gradients are its own loss's
            wrapped.step()
            self.stack.zero_pruned(tensors)
            total += losses.detach().double() * x.shape[1]
            count += x.shape[1]
        return total, count

    def on_train_epoch_end(self) -> None:
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        return batch if device.type == "cpu" else super().transfer_batch_to_device(batch, device, dataloader_idx)

    def on_train_epoch_start(self) -> None:
        self.train_loss.reset()

    def _eval_step(self, batch: tuple[Tensor, Tensor]) -> None:
        x, y = as_runs(*batch)
        self.evaluation.update(self.stack(x), y)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch)

    def loggers_of(self, r: int) -> list[Any]:
        """The loggers of run ``r``: its own in a sweep, the trainer's for a single run."""
        if self.run_loggers is not None:
            return self.run_loggers[r]
        return list(self.trainer.loggers) if self._trainer is not None else []

    def log_run(self, r: int, metrics: dict[str, float], step: int) -> None:
        for logger in self.loggers_of(r):
            logger.log_metrics(metrics, step=step)

    def on_validation_epoch_end(self) -> None:
        results = self.evaluation.compute()
        if self.trainer.sanity_checking:
            return
        epoch = self.current_epoch
        train = self.train_loss.compute().reshape(-1) if self.train_loss.update_count > 0 else None
        if train is not None and not torch.isfinite(train).all():
            r = int((~torch.isfinite(train)).nonzero()[0])
            which = f" (run {r}, seed {self.runs[r].hparams.seed})" if len(self.runs) > 1 else ""
            raise RunFailure(f"training loss diverged to {float(train[r])} in epoch {epoch}{which}; "
                             f"try a smaller lr (now {self.hparams.lr})")
        values = {f"test_{k}": v.reshape(-1).tolist() for k, v in results.items()}  # one conversion, not R
        train_values = train.tolist() if train is not None else None
        for r, run in enumerate(self.runs):
            row: dict[str, float] = {"epoch": float(epoch)}
            if train_values is not None:
                row["train_loss"] = train_values[r]
            row.update({k: v[r] for k, v in values.items()})
            run.history.append(row)
            scalars = {("train/loss" if k == "train_loss" else f"test/{k[5:]}"): v for k, v in row.items() if k != "epoch"}
            if self.run_loggers is None and len(self.runs) == 1:
                self.log_dict(scalars)  # a fit: through Lightning, so callback_metrics, EarlyStopping, any logger see it
            else:
                # a sweep's stack: each run has its own writer, given what Lightning logs for a fit
                self.log_run(r, {**scalars, "epoch": float(epoch)}, step=self.trainer.global_step)
        self.evaluated_at = self.trainer.global_step

    def on_test_epoch_end(self) -> None:
        results = self.evaluation.compute()
        if len(self.runs) == 1:
            self.log_dict({f"test/{k}": float(v[0]) for k, v in results.items()})

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A resumed run keeps its whole history, and a mid-epoch resume the epoch's running train loss.
        checkpoint["plantnseek_history"] = [list(run.history) for run in self.runs]
        checkpoint["plantnseek_train_loss"] = (self.current_epoch, self.train_loss.total.clone(),
                                               self.train_loss.count.clone())

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        theirs = checkpoint.get("hyper_parameters", {})
        check_same_network(theirs, self.hparams)
        check_same_ticket(checkpoint.get("state_dict", {}), self.tickets, self.hparams.dataset)
        trainer = self._trainer
        if trainer is not None and trainer.state.fn == "fit":  # evaluating may use other settings; training not
            refuse_differences(model_settings(theirs), model_settings(self.hparams))
        for run, history in zip(self.runs, checkpoint.get("plantnseek_history", [])):
            run.history = list(history)
        resumed = checkpoint.get("plantnseek_train_loss")
        self.train_loss.reset()  # a mid-epoch resume goes on without on_train_epoch_start
        if resumed is not None and float(resumed[2]) > 0:
            self.train_loss.update(resumed[1], float(resumed[2]))

    # -- optimisation ----------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        return make_optimizer(self.hparams, self.stack.parameters())
