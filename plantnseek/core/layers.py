"""The network: R masked MLPs of the same widths as one set of stacked tensors, and per-run views of it.

Every run, alone or in a sweep, is a slice of a :class:`StackedMLP` (a single run is a stack of one), so
training has one implementation for all: the native kernel trains the stack's tensors in place
(:mod:`plantnseek.engine.kernel`); without a C compiler, autograd and ``torch.optim`` do the same through the
batched forward here. Per-run logic (scoring,
masking, evaluation, pictures) works on :meth:`StackedMLP.run`, a :class:`MaskedMLP` whose parameters and
masks *alias* that run's slice of the stack: writing a mask or rewinding a weight through the view changes
the stack, and a training step on the stack is seen by the view, with nothing to copy or keep in sync.

A mask is a buffer of the parameter's shape; the network computes with ``weight * mask``, so a pruned
entry contributes nothing forward and gets no gradient backward.
"""
from __future__ import annotations

from typing import Iterator, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MaskedLinear(nn.Module):
    """``y = x (W * M_w)^T + b * M_b`` with weight ``[out, in]`` (fresh tensors, or views given)."""

    def __init__(self, in_features: int, out_features: int,
                 tensors: tuple[Tensor, Tensor, Tensor, Tensor] | None = None) -> None:
        super().__init__()
        if tensors is None:
            tensors = (torch.empty(out_features, in_features), torch.empty(out_features),
                       torch.ones(out_features, in_features), torch.ones(out_features))
        weight, bias, weight_mask, bias_mask = tensors
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias)
        self.register_buffer("weight_mask", weight_mask)
        self.register_buffer("bias_mask", bias_mask)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.weight_mask, self.bias * self.bias_mask)

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[1]}, out_features={self.weight.shape[0]}"


class MaskedMLP(nn.Module):
    """One run's ReLU MLP of masked linear layers; ``widths`` includes input and output sizes."""

    def __init__(self, widths: list[int], layers: list[MaskedLinear] | None = None) -> None:
        super().__init__()
        self.widths = list(widths)
        self.layers = nn.ModuleList(layers if layers is not None else
                                    (MaskedLinear(a, b) for a, b in zip(widths[:-1], widths[1:])))

    def forward(self, x: Tensor) -> Tensor:
        last = len(self.layers) - 1
        x = x.to(self.layers[0].weight.dtype)  # float32 data into a float64 network (precision 64-true)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = torch.relu(x)
        return x

    def masked_parameters(self, bias: bool = True) -> Iterator[tuple[str, nn.Parameter, Tensor]]:
        """(name, parameter, mask) for every weight and, if ``bias``, every bias, in layer order."""
        for i, layer in enumerate(self.layers):
            yield f"layers.{i}.weight", layer.weight, layer.weight_mask
            if bias:
                yield f"layers.{i}.bias", layer.bias, layer.bias_mask


class StackTensors(NamedTuple):
    weights: list[Tensor]
    biases: list[Tensor]
    weight_masks: list[Tensor]
    bias_masks: list[Tensor]


class StackedMLP(nn.Module):
    """R masked MLPs of the same widths: weights ``[R, out, in]``, biases ``[R, out]``, and their masks."""

    def __init__(self, runs: int, widths: list[int]) -> None:
        super().__init__()
        self.runs, self.widths = runs, list(widths)
        pairs = list(zip(widths[:-1], widths[1:]))
        self.weights = nn.ParameterList(nn.Parameter(torch.empty(runs, o, i)) for i, o in pairs)
        self.biases = nn.ParameterList(nn.Parameter(torch.empty(runs, o)) for _, o in pairs)
        for l, (i, o) in enumerate(pairs):
            self.register_buffer(f"weight_mask_{l}", torch.ones(runs, o, i))
            self.register_buffer(f"bias_mask_{l}", torch.ones(runs, o))

    def masks(self, l: int) -> tuple[Tensor, Tensor]:
        return getattr(self, f"weight_mask_{l}"), getattr(self, f"bias_mask_{l}")

    def tensors(self) -> StackTensors:
        """Plain lists of the stack's tensors: a training step fetches them once, not per layer and step
        (indexing a ParameterList costs more than the small ops it feeds)."""
        masks = [self.masks(l) for l in range(len(self.weights))]
        return StackTensors(list(self.weights), list(self.biases), [m for m, _ in masks], [m for _, m in masks])

    def forward(self, x: Tensor, masked: bool = True, tensors: StackTensors | None = None) -> Tensor:
        """``x`` is ``[R, B, d_in]``; returns ``[R, B, d_out]``.

        Activations run feature-major (``[R, d, B]``), so ``W h`` puts each weight's gradient out of the
        matmul in the weight's own ``[R, out, in]`` layout: no strided copy into ``.grad`` (that copy
        took about a third of a training step). ``masked=False`` skips the mask multiply; it is exact
        only while pruned entries are stored as zeros (:meth:`zero_pruned`), which training keeps.
        """
        t = tensors or self.tensors()
        h = x.transpose(1, 2).to(t.weights[0].dtype)  # float32 data into a float64 stack (precision 64-true)
        last = len(t.weights) - 1
        for l, (w, b) in enumerate(zip(t.weights, t.biases)):
            if masked:
                w, b = w * t.weight_masks[l], b * t.bias_masks[l]
            h = torch.baddbmm(b.unsqueeze(2), w, h)
            if l < last:
                h = torch.relu_(h)  # in place: baddbmm's backward needs its inputs, not its output
        return h.transpose(1, 2)

    @torch.no_grad()
    def zero_pruned(self, tensors: StackTensors | None = None) -> None:
        """Store every pruned weight and bias as exactly zero (one fused multiply by the masks).

        Training calls this before its steps (masks change between them) and, on the PyTorch path, after
        each optimizer step: the step may move a pruned entry (Adam's moment of an earlier gradient, or
        the dense gradient of the unmasked forward), and zeroing it again
        makes the unmasked forward equal the masked one, bit for bit, for the next step.
        """
        t = tensors or self.tensors()
        torch._foreach_mul_(t.weights + t.biases, t.weight_masks + t.bias_masks)

    def run(self, r: int) -> MaskedMLP:
        """Run ``r`` as a :class:`MaskedMLP` whose parameters and masks alias this stack's slice ``r``."""
        layers = []
        for l, (w, b) in enumerate(zip(self.weights, self.biases)):
            wm, bm = self.masks(l)
            layers.append(MaskedLinear(w.shape[2], w.shape[1], (w.detach()[r], b.detach()[r], wm[r], bm[r])))
        return MaskedMLP(self.widths, layers)
