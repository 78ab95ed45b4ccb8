"""Test-only plug-ins given to the CLI by class path: callbacks that press Ctrl-C, and misbehaving scorers."""
import torch
from pytorch_lightning.callbacks import Callback

from plantnseek.callbacks import Scorer


class Interrupt(Callback):
    """Raises KeyboardInterrupt (as Ctrl-C would) at the start of ``epoch``, in a fresh run only."""

    def __init__(self, epoch: int = 1):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.ckpt_path is None and trainer.current_epoch == self.epoch:
            raise KeyboardInterrupt


class InterruptSecondCall(Scorer):
    """Magnitude scores, but Ctrl-C on its second call (between multishot levels, after a checkpoint)."""

    uses_data = False

    def __init__(self):
        self.calls = 0

    def score(self, ctx):
        self.calls += 1
        if self.calls == 2:
            raise KeyboardInterrupt
        return [p.detach().abs() for p in ctx.params]


class NeedsArgs(Scorer):
    def __init__(self, temperature: float):
        self.temperature = temperature

    def score(self, ctx):
        return [p.detach().abs() for p in ctx.params]


class TooFew(Scorer):
    def score(self, ctx):
        return [p.detach().abs() for p in ctx.params][:-1]


class WrongShape(Scorer):
    def score(self, ctx):
        return [p.detach().abs().flatten() for p in ctx.params]


class ReturnsNone(Scorer):
    def score(self, ctx):
        return None


class PlainLists(Scorer):
    def score(self, ctx):
        return [p.detach().abs().tolist() for p in ctx.params]


class Tensor2D(Scorer):
    """One stacked tensor instead of a list of tensors."""

    def score(self, ctx):
        return torch.zeros(3, 3)
