"""The parts of one pruning step that do not depend on when it runs: the scorer, its data, the scoring
rounds, checks, masks, reinitialisation, report.

:class:`~plantnseek.callbacks.Pruning` owns the schedule (levels, rewinding, checkpoints) and calls
these for each step: build the scorer the user named, score and mask in rounds, refuse scores that
cannot rank, zero what the masks prune, and describe the result (kept fractions, ticket recovery) under
TensorBoard's names.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

import torch
from torch import Tensor, nn

from plantnseek.core.pruners import SCORERS
from plantnseek.core.scorers import Scorer, ScoringContext
from plantnseek.core.errors import RunFailure, UsageError
from plantnseek.core.masking import recovery, schedule_densities

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
def apply_masks(run: Any) -> None:
    """Zero the stored values of pruned parameters, so checkpoints show pruned weights as zeros.

    Training keeps them zero: each step re-zeroes pruned entries after the optimizer moves them
    (``StackedMLP.zero_pruned``), which is what lets the training forward skip the mask multiply.
    """
    for _, p, m in run.net.masked_parameters(bias=True):
        p.mul_(m)


def check_scores(name: str, scores: Any, params: list[tuple[str, nn.Parameter, Tensor]]) -> None:
    """A scorer's result must be one finite tensor per prunable parameter, of its shape; otherwise the
    run fails (recorded in summary.json) rather than masking with garbage."""
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


def describe(run: Any, prunable: list[tuple[str, nn.Parameter, Tensor]], level: int, target: float) -> dict[str, Any]:
    """Kept fractions and ticket recovery after a pruning step."""
    kept = sum(int(m.sum()) for _, _, m in prunable)
    total = sum(m.numel() for _, _, m in prunable)
    rec = recovery([layer.weight_mask for layer in run.net.layers], run.ticket.weight_masks())
    return {
        "level": level + 1, "density_target": target, "kept": kept, "prunable": total,
        "density": kept / total,
        "kept_fraction": {n: float(m.mean()) for n, _, m in prunable},
        "recovery": rec,
    }


def event_metrics(event: dict[str, Any]) -> dict[str, float]:
    """A step's scalars under one naming scheme: prune/<quantity>/<tensor or layer name, as in the state dict>."""
    metrics = {"prune/density": event["density"], "prune/recall": event["recovery"]["recall"],
               "prune/precision": event["recovery"]["precision"],
               "prune/collapsed": float(event["recovery"]["collapsed"])}
    metrics.update({f"prune/kept/{n}": v for n, v in event["kept_fraction"].items()})
    for row in event["recovery"]["layers"]:
        i = row["layer"]
        metrics[f"prune/recall/layers.{i}.weight"] = row["recall"]
        metrics[f"prune/precision/layers.{i}.weight"] = row["precision"]
        if "dead_units" in row:
            metrics[f"prune/dead_units/layers.{i}"] = row["dead_units"]
    return metrics


def scoring_data(scorer: Scorer, datamodule: Any) -> tuple[Any, Any, int]:
    """The pruning batches (scorers with ``uses_data``), the training split and its batch size (``uses_train``)."""
    batches, train, batch_size = None, None, 64
    if scorer.uses_train:
        if datamodule is None or not hasattr(datamodule, "split"):
            raise UsageError(f"pruner {scorer.name!r} trains on data: use a plantnseek.PlantedDataModule")
        train, batch_size = datamodule.split("train"), int(datamodule.hparams.train_batch_size)
    if scorer.uses_data:
        if datamodule is None or not hasattr(datamodule, "prune_dataloader"):
            raise UsageError(f"pruner {scorer.name!r} needs data: use a plantnseek.PlantedDataModule")
        batches = datamodule.prune_dataloader()
    return batches, train, batch_size


def score_rounds(run: Any, scorer: Scorer, params: list[tuple[str, nn.Parameter, Tensor]], ticket_masks: list[Tensor],
                 *, target: float, rounds: int, schedule: str, budget: str, invert: bool, train_mode: bool,
                 generators: Callable[[int], torch.Generator], batches: Any, train: Any, batch_size: int
                 ) -> dict[str, Tensor]:
    """One pruning step: ``rounds`` scoring rounds towards ``target`` (the kept fraction falling by
    ``schedule``), each scoring with the masks so far and masking to its density; the last round's scores.

    The masks of ``params`` are changed in place; the network's mode is ``train_mode`` while scoring.
    """
    names = [n for n, _, _ in params]
    last: dict[str, Tensor] = {}
    was_training = run.net.training
    run.net.train(train_mode)
    try:
        for r, density in enumerate(schedule_densities(target, rounds, schedule)):
            ctx = ScoringContext(
                net=run.net, names=names, params=[p for _, p, _ in params], masks=[m for _, _, m in params],
                batches=batches if batches is not None else [], loss=run.loss, generator=generators(r),
                ticket_masks=ticket_masks, train=train, batch_size=batch_size, density=density, budget=budget)
            with torch.enable_grad():
                scores = scorer.score(ctx)
            check_scores(scorer.name, scores, params)
            if invert:
                scores = [-s for s in scores]
            new = ctx.select(scores, ctx.masks, density)
            with torch.no_grad():
                for (_, _, mask), m in zip(params, new):
                    mask.copy_(m)
            last = {n: s.detach() for n, s in zip(names, scores)}
    finally:
        run.net.train(was_training)
    return last


@torch.no_grad()
def reinitialize(run: Any, rng: Any) -> None:
    """Fresh He-scaled weights and biases under the run's masks (``reinitialize``), from their own stream."""
    from plantnseek.core.planting import he_scaled_init

    for layer, (w, b) in zip(run.net.layers, he_scaled_init(run.net.widths, rng)):
        layer.weight.copy_(torch.as_tensor(w))
        layer.bias.copy_(torch.as_tensor(b))
    apply_masks(run)
