"""Masked linear layers and the MLP built from them.

A mask is a buffer of the parameter's shape; the layer computes with ``weight * mask``. Masks are
buffers (not parameters) so they travel in checkpoints but never receive gradients, and a pruned entry
contributes nothing forward and gets no gradient backward.
"""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MaskedLinear(nn.Module):
    """``y = x (W * M_w)^T + b * M_b`` with weight ``[out, in]``."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features))
        self.register_buffer("weight_mask", torch.ones(out_features, in_features))
        self.register_buffer("bias_mask", torch.ones(out_features))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.weight_mask, self.bias * self.bias_mask)

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[1]}, out_features={self.weight.shape[0]}"


class MaskedMLP(nn.Module):
    """ReLU MLP of masked linear layers; ``widths`` includes input and output sizes."""

    def __init__(self, widths: list[int]) -> None:
        super().__init__()
        self.widths = list(widths)
        self.layers = nn.ModuleList(MaskedLinear(a, b) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, x: Tensor) -> Tensor:
        last = len(self.layers) - 1
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
