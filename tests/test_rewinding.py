"""Iterative magnitude pruning with rewinding to epoch k (Frankle et al. 2020) and learning-rate rewinding
(Renda et al. 2020), checked against independent dense runs of the same seed: the first level trains
exactly as a dense run does, so the weights a rewind must restore are those of a separate dense fit of k
epochs, and the weights lr rewinding must keep are those of a dense fit of ``pre_epochs`` epochs.
"""
import pytest
import pytorch_lightning as pl
import torch

from helpers import tiny
from plantnseek.callbacks import Pruning
from plantnseek.core.errors import UsageError


def dense(epochs, **model_kw):
    """Weights, Adam's step count and the lr of a dense run of ``epochs`` epochs (no pruning callback)."""
    model, dm = tiny("circle", **model_kw)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=epochs, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm)
    opt = trainer.optimizers[0]
    return layers_of(model), {int(s["step"]) for s in opt.state.values()} or {0}, opt.param_groups[0]["lr"]


def layers_of(model):
    """Each layer's weights and biases of the (single-run) stack, as one list [w0, b0, w1, b1, ...]."""
    return [t.detach().clone() for l in range(len(model.stack.weights))
            for t in (model.stack.weights[l], model.stack.biases[l])]


class AfterFirstLevel(pl.Callback):
    """Weights right after the first pruning step (and its rewind), optimizer state and lr at the next epoch."""

    def __init__(self, pre_epochs):
        self.pre_epochs, self.weights, self.masks, self.lr, self.steps = pre_epochs, None, None, None, None

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch + 1 == self.pre_epochs:
            self.weights = layers_of(pl_module)
            self.masks = [m.clone() for l in range(len(pl_module.stack.weights)) for m in pl_module.stack.masks(l)]

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.pre_epochs:
            opt = trainer.optimizers[0]
            self.lr = opt.param_groups[0]["lr"]
            self.steps = {int(s["step"]) for s in opt.state.values()} if opt.state else {0}


def imp(pruning, pre_epochs, **model_kw):
    model, dm = tiny("circle", **model_kw)
    spy = AfterFirstLevel(pre_epochs)
    pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, num_sanity_val_steps=0, callbacks=[pruning, spy]).fit(model, datamodule=dm)
    return spy


def masked(weights, masks):
    return [w * m for w, m in zip(weights, masks)]


@pytest.mark.parametrize("k", [1, 2])
def test_rewinding_to_epoch_k_restores_the_weights_optimizer_and_lr_of_epoch_k(k):
    pre = 3
    spy = imp(Pruning(pruner="mag", sparsity=0.3, levels=2, pre_epochs=pre, post_epochs=0, prune_bias=True,
                      rewind_epoch=k), pre, lr_drops=[1], lr_drop_rate=0.5)
    want, steps, lr = dense(k, lr_drops=[1], lr_drop_rate=0.5)
    for have, w in zip(spy.weights, masked(want, spy.masks)):
        assert torch.equal(have, w)
    assert spy.steps == steps and steps != {0}
    assert spy.lr == lr == pytest.approx(1e-3 * 0.5)  # the drop at epoch 1 had happened by epoch k >= 1


def test_rewind_epoch_zero_is_todays_multishot():
    pre = 2
    spy = imp(Pruning(pruner="mag", sparsity=0.3, levels=2, pre_epochs=pre, post_epochs=0), pre)
    want, _, _ = dense(0)  # the planted initialisation
    for have, w in zip(spy.weights, masked(want, spy.masks)):
        assert torch.equal(have, w)
    assert spy.steps == {0} and spy.lr == pytest.approx(1e-3)


def test_lr_rewinding_keeps_the_trained_weights_and_replays_the_lr_schedule():
    pre = 2
    pruning = Pruning(pruner="mag", sparsity=0.3, levels=2, pre_epochs=pre, post_epochs=0, lr_rewind=True)
    assert pruning.rewind is False
    spy = imp(pruning, pre, lr_drops=[1], lr_drop_rate=0.5)
    want, _, lr = dense(pre, lr_drops=[1], lr_drop_rate=0.5)
    assert lr == pytest.approx(0.5e-3)
    for have, w in zip(spy.weights, masked(want, spy.masks)):
        assert torch.equal(have, w)
    assert spy.steps == {0}  # optimizer state back to the start
    assert spy.lr == pytest.approx(1e-3)  # the schedule replays from its start


@pytest.mark.parametrize("kw, message", [
    ({"levels": 3, "pre_epochs": 2, "rewind_epoch": 2}, "rewind_epoch 2 is invalid; allowed: 0 to pre_epochs - 1 (1)"),
    ({"levels": 3, "pre_epochs": 2, "rewind_epoch": -1}, "rewind_epoch -1 is invalid"),
    ({"levels": 1, "pre_epochs": 2, "rewind_epoch": 1}, "rewind_epoch 1 has no effect"),
    ({"levels": 3, "pre_epochs": 2, "rewind": True, "lr_rewind": True}, "give one of the two"),
])
def test_contradicting_rewind_settings_are_refused(kw, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Pruning(pruner="mag", **kw)


def test_the_rewind_point_survives_a_checkpoint():
    pruning = Pruning(pruner="mag", levels=2, pre_epochs=3, rewind_epoch=1)
    pruning.rewind_taken_at = 1
    restored = Pruning(pruner="mag", levels=2, pre_epochs=3, rewind_epoch=1)
    restored.load_state_dict(pruning.state_dict())
    assert restored.rewind_taken_at == 1 and restored.config()["rewind_epoch"] == 1
