"""The planted network of one run: its widths, its initial weights with the ticket planted, and the ticket
as buffers (so checkpoints carry it), with what ``plantnseek ticket`` reports about it."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from plantnseek.core.sampling import STREAM_PLANT, stream
from plantnseek.core.errors import UsageError
from plantnseek.core.planting import PlantedNetwork, plant
from plantnseek.core.registry import CheckedTask, get_task


def network_widths(task: CheckedTask, depth: int, width: int) -> list[int]:
    return [task.d_in] + [width] * (depth - 2) + [task.d_out]


def plant_network(dataset: str, depth: int, width: int, seed: int) -> PlantedNetwork:
    """The planted network of (dataset, depth, width, seed); validates all three shape arguments."""
    task = get_task(dataset)
    ticket = task.ticket(depth)
    if width < 1:
        raise UsageError(f"width {width} is invalid; it must be at least 1")
    return plant(ticket, network_widths(task, depth, width), stream(seed, STREAM_PLANT))


def check_same_ticket(state: dict[str, Tensor], tickets: nn.ModuleList, dataset: str) -> None:
    """Refuse a checkpoint planted with another ticket: the data would no longer be the ticket's.

    A user task's code or a ``run:`` source can change after a run was saved; resuming or testing it
    would then silently mix the old network with the new task's data.
    """
    for name, value in tickets.named_buffers():
        saved = state.get(f"tickets.{name}")
        if saved is not None and (saved.shape != value.shape or not torch.equal(saved, value)):
            raise UsageError(f"the checkpoint's planted ticket differs from the one dataset {dataset} plants now "
                             f"(another seed, or the task or its source run changed since the checkpoint was saved)")


class Ticket(nn.Module):
    """The planted ticket as float64 buffers (so checkpoints carry it): values, and the output scale."""

    def __init__(self, net: PlantedNetwork) -> None:
        super().__init__()
        self.n_layers = len(net.ticket)
        for i, (w, b) in enumerate(net.ticket):
            self.register_buffer(f"weight_{i}", torch.as_tensor(w, dtype=torch.float64))
            self.register_buffer(f"bias_{i}", torch.as_tensor(b, dtype=torch.float64))
        self.register_buffer("scale", torch.as_tensor(net.scale, dtype=torch.float64))

    def weights(self) -> list[Tensor]:
        return [getattr(self, f"weight_{i}") for i in range(self.n_layers)]

    def biases(self) -> list[Tensor]:
        return [getattr(self, f"bias_{i}") for i in range(self.n_layers)]

    def weight_masks(self) -> list[Tensor]:
        return [w != 0 for w in self.weights()]

    def bias_masks(self) -> list[Tensor]:
        return [b != 0 for b in self.biases()]

    def forward(self, x: Tensor) -> Tensor:
        """The ticket alone, divided by its scale: what the ticket computes in the task's units."""
        x = x.double()
        for i, (w, b) in enumerate(zip(self.weights(), self.biases())):
            x = F.linear(x, w, b)
            if i < self.n_layers - 1:
                x = torch.relu(x)
        return x / self.scale

    @torch.no_grad()
    def metric(self, task: Any, x: Tensor, y: Tensor) -> float:
        """The ticket's own metric on (x, y): accuracy (classification) or MSE (regression)."""
        out = self(x)
        if task.classification:
            return float((out.argmax(dim=1) == y).double().mean())
        return float(((out - y.double()) ** 2).mean())

    def counts(self) -> tuple[int, int]:
        """(non-zero ticket weights, all weights); biases are not counted, as in the reference."""
        return sum(int(m.sum()) for m in self.weight_masks()), sum(w.numel() for w in self.weights())

    @property
    def sparsity(self) -> float:
        nonzero, total = self.counts()
        return nonzero / total


def ticket_report(task: CheckedTask, ticket: Ticket, dataset: str, depth: int, width: int, seed: int,
                  x_test: Tensor, y_test: Tensor) -> dict[str, Any]:
    """What ``plantnseek ticket`` prints: the planted ticket's sizes per layer, its minimum width and its
    own metric on the test split (no model, no Lightning: planting and data are enough)."""
    from plantnseek.core.tickets import min_width

    nonzero, total = ticket.counts()
    layers = []
    for i, (wm, bm) in enumerate(zip(ticket.weight_masks(), ticket.bias_masks())):
        layers.append({"layer": i, "shape": list(wm.shape), "nonzero": int(wm.sum()), "total": wm.numel(),
                       "bias_nonzero": int(bm.sum()), "units": int((wm.any(dim=1) | bm).sum())})
    return {
        "dataset": dataset, "depth": depth, "width": width, "seed": seed,
        "sparsity": nonzero / total, "nonzero": nonzero, "total": total,
        "bias_nonzero": sum(int(m.sum()) for m in ticket.bias_masks()),
        "min_width": min_width(task.ticket(depth)),
        "metric_name": task.metric_name, "metric": ticket.metric(task, x_test, y_test),
        "scale": [float(v) for v in ticket.scale], "layers": layers,
    }


