"""ProsPr (Alizadeh et al., ICLR 2022, "Prospect Pruning: Finding trainable weights at initialization using
meta-gradients"): score a connection by how much the loss *after a few training steps* depends on its mask.

SNIP asks how the loss at initialisation moves with a mask entry; what matters is the network after
training. ProsPr differentiates through the first ``M`` steps of SGD (a meta-gradient, as in MAML):

    theta_0 = theta,  theta_{k+1} = theta_k - lr * grad_theta L(c * theta_k; batch_k),  k = 0..M-1
    score   = | d L(c * theta_M; batch_M) / d c |  at c = the current mask,

with every step's gradient kept in the graph (``create_graph``), so the score includes how the mask
changes the trajectory, not only the end point. ``M = 0`` is SNIP's (un-normalised) ``|dL/dc|`` on one
batch. All trainable parameters take the inner steps (a non-prunable bias trains too); only the masks are
differentiated.

Two choices differ from the authors' code (``mil-ad/prospr``, ``prospr/prospr.py``):

- the mask multiplies the weights in *every* inner step's forward (``c * theta_k``), as the masked network
  trains here (pruned entries contribute nothing at any step); the authors mask only the starting point
  (``theta_0 = c * theta``) and let the inner steps move pruned entries. At a dense ``c`` both start from the
  same network, but their derivatives in ``c`` differ.
- batches: step ``k`` uses pruning batch ``k mod B`` and the final loss batch ``M mod B`` (``B`` batches), the
  authors' ``new_data_in_inner`` mode; with one pruning batch it is their default (one batch throughout).
  The pruning subset rather than the training split (no ``uses_train``): the same data SNIP and GraSP score
  on, fixed and ordered, so the score is reproducible and comparable across pruners.
"""
from __future__ import annotations

import torch
from torch import Tensor

from plantnseek.core.errors import UsageError, check_number
from plantnseek.core.scorers import Scorer, ScoringContext


class ProsPr(Scorer):
    """``|d L(c * theta_M) / d c|`` through ``steps`` unrolled SGD steps of learning rate ``lr``.

    Args:
        steps: inner SGD steps ``M`` (default 3: the authors' ``--inner-steps`` default and README example).
        lr: inner learning rate, plain SGD as with the authors' default ``--inner-momentum 0``. Default 0.01,
            not the authors' 0.1 (``--inner-lr``, set for image classification with cross-entropy): on the
            relu task (MSE, loss about 7 at the planted initialisation of depth 5, width 100) three steps
            of 0.1 diverge to non-finite scores; 0.01 is stable on all three tasks.
    """

    def __init__(self, steps: int = 3, lr: float = 0.01) -> None:
        check_number("prospr steps", steps, integer=True)
        check_number("prospr lr", lr)
        if steps < 0:
            raise UsageError(f"prospr steps {steps} is invalid; it must be an integer >= 0")
        if not lr > 0:
            raise UsageError(f"prospr lr {lr} is invalid; it must be > 0")
        self.steps, self.lr = steps, lr

    def score(self, ctx: ScoringContext) -> list[Tensor]:
        batches = list(ctx.batches)
        if not batches:
            raise UsageError("pruner 'prospr' needs the pruning subset; it got no batches")
        masks = [m.detach().clone().requires_grad_(True) for m in ctx.masks]
        mask_swap = {f"{n}_mask": m for n, m in zip(ctx.names, masks)}
        names = [n for n, _ in ctx.net.named_parameters()]
        theta = [p.detach().clone().requires_grad_(True) for _, p in ctx.net.named_parameters()]

        def loss(weights: list[Tensor], k: int) -> Tensor:
            x, y = batches[k % len(batches)]
            return ctx.loss(ctx.call({**dict(zip(names, weights)), **mask_swap}, x), y)

        for k in range(self.steps):
            grads = torch.autograd.grad(loss(theta, k), theta, create_graph=True)
            theta = [t - self.lr * g for t, g in zip(theta, grads)]
        meta = torch.autograd.grad(loss(theta, self.steps), masks)
        return [g.detach().abs().double() for g in meta]

