"""``run:<run directory or checkpoint>``: the network a finished run found, as the next benchmark's ticket.

The ticket is the run's final masked network (weights and biases times their masks) read from its
checkpoint, so pruning methods can be asked to find again what one of them found. Inputs are drawn as
in the source run's task; labels are the ticket's outputs (the highest-scoring class for
classification) with the built-in tasks' noise models: a classification label moves to the runner-up
class with probability ``noise``, a regression target gets Gaussian noise of std ``noise``.

This module reads the checkpoint's state dict and hyperparameters with ``torch.load``; it never
imports the LightningModule (it sits below it).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from plantnseek.core.errors import UsageError
from plantnseek.core.tasks import Task
from plantnseek.core.tickets import Layer

PREFIX = "run:"
HOW_TO_GET_ONE = ("sweep runs write none; re-run it alone with `plantnseek fit --config <run dir>/config.yaml` "
                  "(or use a `plantnseek fit`/`main` run)")


def checkpoint_path(spec: str) -> str:
    """The checkpoint named by ``run:<spec>``: the file itself, or ``<dir>/checkpoints/last.ckpt``."""
    if os.path.isdir(spec):
        path = os.path.join(spec, "checkpoints", "last.ckpt")
        if not os.path.exists(path):
            raise UsageError(f"run directory {spec!r} has no checkpoints/last.ckpt; {HOW_TO_GET_ONE}")
        return path
    if not os.path.isfile(spec):
        raise UsageError(f"dataset run:{spec} names no run directory or checkpoint file")
    return spec


@dataclass(frozen=True)
class RunSource:
    """What a checkpoint says about its run: task, depth and the final masked layers (float64)."""

    path: str
    dataset: str
    depth: int
    layers: list[Layer]


def read_checkpoint(path: str) -> RunSource:
    """The final masked network of a plantnseek checkpoint (``weight * weight_mask``, ``bias * bias_mask``)."""
    import torch

    try:
        ckpt: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated file, not a torch file, or a pickle we will not execute
        raise UsageError(f"cannot read checkpoint {path!r}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or "stack.weights.0" not in state or not isinstance(hp, dict) \
            or not isinstance(hp.get("dataset"), str) or state["stack.weights.0"].shape[0] != 1:
        raise UsageError(f"{path!r} is not a plantnseek checkpoint of one run (no planted network and dataset in it)")
    layers: list[Layer] = []
    while f"stack.weights.{len(layers)}" in state:  # the run is a stack of one: slice 0 of each tensor
        l = len(layers)
        w = state[f"stack.weights.{l}"][0].double() * state[f"stack.weight_mask_{l}"][0].double()
        b = state[f"stack.biases.{l}"][0].double() * state[f"stack.bias_mask_{l}"][0].double()
        layers.append((w.numpy(), b.numpy()))
    empty = [l for l, (w, _) in enumerate(layers) if not (w != 0).any()]
    if empty:
        raise UsageError(f"the network in {path!r} keeps no weight in layer {empty[0]} (it collapsed); "
                         f"it cannot be a ticket")
    return RunSource(path, hp["dataset"], len(layers) + 1, compact(layers))


def compact(layers: list[Layer]) -> list[Layer]:
    """Drop hidden units that carry nothing (no kept incoming or outgoing weight, zero bias).

    Every kept weight and bias stays, so the ticket's counts are the run's; only the widest layer (the
    minimum width to plant it) shrinks to the units the run actually uses.
    """
    out = [(w.copy(), b.copy()) for w, b in layers]
    for l in range(len(out) - 1):
        (w, b), (w_next, b_next) = out[l], out[l + 1]
        used = (w != 0).any(axis=1) | (b != 0) | (w_next != 0).any(axis=0)
        out[l] = (w[used], b[used])
        out[l + 1] = (w_next[:, used], b_next)
    return out


def forward(layers: list[Layer], x: np.ndarray) -> np.ndarray:
    """The ReLU network ``layers`` on ``x`` [n, d_in], in float64."""
    x = np.asarray(x, dtype=np.float64)
    for l, (w, b) in enumerate(layers):
        x = x @ w.T + b
        if l < len(layers) - 1:
            x = np.maximum(x, 0.0)
    return x


def fingerprint(layers: list[Layer]) -> str:
    """A short hash of the ticket's values: tells two versions of a source run apart."""
    h = hashlib.sha256()
    for w, b in layers:
        h.update(np.ascontiguousarray(w).tobytes())
        h.update(np.ascontiguousarray(b).tobytes())
    return h.hexdigest()[:16]


class RunTask(Task):
    """The task whose ticket is a finished run's final masked network (see the module docstring).

    Args:
        source: the run's checkpoint contents (:func:`read_checkpoint`).
        source_task: the run's own task (a checked task, for the inputs, sizes and noise range).
        name: the dataset string, ``run:<...>``.
    """

    def __init__(self, source: RunSource, source_task: Any, name: str) -> None:
        self.source, self.source_task, self.name = source, source_task, name
        self.d_in, self.d_out = source_task.d_in, source_task.d_out
        self.classification, self.max_noise = source_task.classification, source_task.max_noise

    def sample(self, rng: np.random.Generator, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
        x, _ = self.source_task.sample(rng, n, 0.0)
        out = forward(self.source.layers, x)
        if self.classification:
            best = out.argmax(axis=1)
            runner_up = out.copy()
            runner_up[np.arange(n), best] = -np.inf
            flip = rng.uniform(0.0, 1.0, size=n) < noise
            return x, np.where(flip, runner_up.argmax(axis=1), best)
        return x, out + rng.normal(0.0, noise, size=out.shape)

    def ticket(self, depth: int) -> list[Layer]:
        if depth != self.source.depth:
            raise UsageError(f"dataset {self.name} is a network of depth {self.source.depth}; "
                             f"depth {depth} must equal it")
        return [(w.copy(), b.copy()) for w, b in self.source.layers]
