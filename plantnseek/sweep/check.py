"""Checks every point of a sweep grid before anything is written (one line naming the run and value),
including that each run fits in the available memory (:mod:`plantnseek.memory`).

Checking constructs the data module, the Pruning callback and the trainer once per distinct setting,
and checks the model's arguments once per distinct (model, seed): every seed is checked, but no network
is planted, so the 1,875-point paper grid is checked in well under a second.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Mapping

from plantnseek.core.errors import UsageError, check_number
from plantnseek.core.runconfig import DENSE_EPOCHS
from plantnseek.sweep.spec import RunSpec, defaults, grid_points


def expand(config: dict[str, Any], overrides: dict[str, list[Any]] | None = None) -> list[RunSpec]:
    """Every combination of the grid axes as a RunSpec, every one validated before anything runs."""
    specs = grid_points(config, overrides)
    validate(specs)
    return specs


def check_bounded(trainer: dict[str, Any], dense: bool) -> None:
    """Refuse a run that would never stop: Lightning reads ``max_epochs: -1`` as "forever"."""
    max_steps = trainer.get("max_steps", -1)
    if max_steps is not None and max_steps != -1:
        check_number("trainer.max_steps", max_steps, integer=True)
        if max_steps < 1:
            raise UsageError(f"trainer.max_steps {max_steps} is invalid; allowed: a positive integer, or -1 (no limit)")
    steps_bound = isinstance(max_steps, int) and max_steps >= 1
    max_epochs = trainer.get("max_epochs", DENSE_EPOCHS if dense else None)
    if max_epochs is None and dense and not steps_bound:
        raise UsageError("trainer.max_epochs null gives a run without pruning no end; "
                         "allowed: a positive number of epochs (or a positive trainer.max_steps)")
    if max_epochs is not None:
        check_number("trainer.max_epochs", max_epochs, integer=True)
        if max_epochs < 1 and not (max_epochs == -1 and steps_bound):
            raise UsageError(f"trainer.max_epochs {max_epochs} is invalid (-1 means forever); "
                             "allowed: a positive number of epochs")


def check_supported(trainer: Mapping[str, Any]) -> None:
    """Trainer settings the model cannot honour, refused before anything is written (Lightning would
    refuse some only once fit has started, and run others wrongly): the model takes its own optimizer
    steps (several per Lightning batch, or in the native kernel), so Lightning's automatic gradient
    clipping and accumulation cannot apply; and a run is one process (runs are stacked, sweeps spread
    over processes), so several devices or nodes would each train the same run."""
    clip, accumulate = trainer.get("gradient_clip_val"), trainer.get("accumulate_grad_batches", 1)
    if clip not in (None, 0, 0.0):
        raise UsageError(f"trainer.gradient_clip_val {clip} is not supported: plantnseek takes its own optimizer "
                         "steps; allowed: null (no clipping)")
    if accumulate not in (None, 1):
        raise UsageError(f"trainer.accumulate_grad_batches {accumulate} is not supported: plantnseek takes its own "
                         "optimizer steps; allowed: 1 (a larger data.train_batch_size averages over more samples)")
    devices, nodes, strategy = trainer.get("devices", 1), trainer.get("num_nodes", 1), trainer.get("strategy", "auto")
    if devices not in (None, 1, "1", "auto") or nodes not in (None, 1):
        what = f"trainer.devices {devices}" if devices not in (None, 1, "1", "auto") else f"trainer.num_nodes {nodes}"
        raise UsageError(f"{what} is not supported: a run trains in one process (several would each train the same "
                         "run); allowed: 1 (plantnseek sweep --workers N uses more cores)")
    if not (strategy is None or isinstance(strategy, str) and strategy in ("auto", "single_device")):
        raise UsageError(f"trainer.strategy {strategy!r} is not supported: a run trains in one process; "
                         "allowed: auto")


def check_trainer(trainer: dict[str, Any], dense: bool) -> None:
    """The bound, then the remaining settings as Lightning itself reads them (nothing is written)."""
    from plantnseek.trainer import build_trainer

    check_bounded(trainer, dense)
    check_supported(trainer)
    loggers = [logging.getLogger(n) for n in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        build_trainer(**trainer)
    except UsageError:
        raise
    except Exception as e:  # noqa: BLE001 - Lightning's message names the setting
        raise UsageError(f"trainer settings {json.dumps(trainer, default=repr)} are invalid: "
                         f"{' '.join(str(e).split())}") from None
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def check_shape_and_parts(spec: RunSpec) -> None:
    """Data, ticket fit, optimizer schedule and pruning of one (data, model, pruning) combination."""
    from plantnseek.callbacks.pruning import Pruning
    from plantnseek.data import PlantedDataModule
    from plantnseek.core.planted import network_widths
    from plantnseek.core.registry import get_task
    from plantnseek.core.tickets import min_width

    dm = PlantedDataModule(**spec.data)
    model = {**dict(defaults("model")), **spec.model}
    need = min_width(get_task(dm.dataset).ticket(model["depth"]))
    if model["width"] < need:
        raise UsageError(f"width {model['width']} cannot hold the {dm.dataset} ticket; the minimum width is {need}")
    network_widths(get_task(dm.dataset), model["depth"], model["width"])
    if spec.pruning is not None:
        total = Pruning(**spec.pruning).total_epochs
        asked = spec.trainer.get("max_epochs")
        if asked is not None and asked != total:  # one value per setting: the schedule sets the epochs
            raise UsageError(f"trainer.max_epochs {asked} contradicts the Pruning schedule, levels x pre_epochs + "
                             f"post_epochs = {total} epochs; leave trainer.max_epochs unset, or change the schedule")


def validate(specs: list[RunSpec]) -> None:
    """Fail before any run starts on values no run could use (one line naming the run and the value)."""
    from plantnseek.memory import check_fits
    from plantnseek.module import validate_model_args

    seen: set[str] = set()
    for spec in specs:
        model = {**dict(defaults("model")), **spec.model}
        checks = [
            (json.dumps(["model", model, spec.seed], sort_keys=True, default=repr),
             lambda: validate_model_args(seed=spec.seed, **model)),
            (json.dumps(["trainer", spec.trainer, spec.pruning is None], sort_keys=True, default=repr),
             lambda: check_trainer(spec.trainer, spec.pruning is None)),
            (json.dumps(["parts", spec.data, spec.model, spec.pruning], sort_keys=True, default=repr),
             lambda: check_shape_and_parts(spec)),
            (json.dumps(["memory", spec.data, spec.model, spec.pruning, spec.pictures], sort_keys=True, default=repr),
             lambda: check_fits(spec.data, spec.model, spec.pruning, checkpoints=False, pictures=spec.pictures)),
        ]
        for key, check in checks:
            if key in seen:
                continue
            seen.add(key)
            try:
                check()
            except (TypeError, UsageError) as e:
                raise UsageError(f"run {spec.point}: {e}") from None
