"""Lightning's contract: a step is an optimizer step, hooks see gradients, frozen parameters stay frozen,
and the engine that trained a run is chosen once, with its reason, and recorded.

Step counts are checked against the optimizer's own step counter (torch.optim's ``state["step"]``) and
against the number of batches the data holds, computed by hand: 540 training samples / 64 = 9 batches.
"""
from __future__ import annotations

import json

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from helpers import read_summary, tiny
from plantnseek.callbacks import RunSummary
from plantnseek.core.errors import UsageError

BATCHES_PER_EPOCH = 9  # ceil(0.9 * 600 / 64)


def trainer(tmp_path, callbacks=(), **kw):
    kw.setdefault("max_epochs", 1)
    return pl.Trainer(accelerator="cpu", devices=1, default_root_dir=str(tmp_path), callbacks=list(callbacks),
                      logger=False, enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, **kw)


def optimizer_steps(model) -> int:
    """Steps the optimizer itself counted (Adam's per-parameter step)."""
    opt = model.trainer.optimizers[0]
    return int(opt.state[model.stack.weights[0]]["step"])


@pytest.mark.parametrize("engine", ["auto", "torch"])
@pytest.mark.parametrize("settings, steps", [
    ({"max_epochs": 2}, 2 * BATCHES_PER_EPOCH),
    ({"max_steps": 3, "max_epochs": 5}, 3),
    ({"limit_train_batches": 2, "max_epochs": 2}, 4),
    ({"max_steps": 11, "max_epochs": 5}, 11),  # stops inside the second epoch
])
def test_global_step_counts_optimizer_steps(settings, steps, engine, tmp_path, monkeypatch):
    monkeypatch.setenv("PLANTNSEEK_KERNEL", engine)
    model, dm = tiny(batches_per_step=4)
    t = trainer(tmp_path, **settings)
    t.fit(model, datamodule=dm)
    assert t.global_step == steps
    assert optimizer_steps(model) == steps


def test_checkpoint_every_n_train_steps_sees_every_step(tmp_path):
    model, dm = tiny(batches_per_step=4)
    ckpt = ModelCheckpoint(dirpath=str(tmp_path / "ck"), every_n_train_steps=5, save_top_k=-1,
                           filename="{step}")
    t = trainer(tmp_path, [ckpt], max_epochs=2)
    t.fit(model, datamodule=dm)
    names = sorted(p.name for p in (tmp_path / "ck").iterdir())
    assert names == sorted(f"step={s}.ckpt" for s in range(5, 2 * BATCHES_PER_EPOCH + 1, 5))


class GradientWatcher(pl.Callback):
    """A user's gradient callback: records the gradient norm Lightning shows it before each step."""

    def __init__(self):
        self.norms = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        grad = pl_module.stack.weights[0].grad
        self.norms.append(None if grad is None else float(grad.norm()))


def test_a_gradient_callback_sees_the_gradients_of_every_step(tmp_path, capsys):
    model, dm = tiny(batches_per_step=4)
    watcher = GradientWatcher()
    trainer(tmp_path, [watcher]).fit(model, datamodule=dm)
    assert len(watcher.norms) == BATCHES_PER_EPOCH
    assert all(n is not None and n > 0 for n in watcher.norms)
    assert model.engine == "pytorch" and "GradientWatcher.on_before_optimizer_step" in model.engine_reason
    assert "training on the PyTorch path" in capsys.readouterr().err


@pytest.mark.parametrize("engine", ["auto", "torch"])
def test_frozen_parameters_stay_frozen(engine, tmp_path, monkeypatch):
    monkeypatch.setenv("PLANTNSEEK_KERNEL", engine)
    model, dm = tiny(batches_per_step=4)
    model.stack.weights[1].requires_grad_(False)
    frozen = model.stack.weights[1].detach().clone()
    trained = model.stack.weights[0].detach().clone()
    trainer(tmp_path).fit(model, datamodule=dm)
    assert torch.equal(model.stack.weights[1].detach(), frozen)
    assert not torch.equal(model.stack.weights[0].detach(), trained)
    assert model.engine == "pytorch"
    if engine == "auto":
        assert model.engine_reason == "a parameter is frozen (requires_grad False)"


def test_native_refuses_a_run_the_kernel_would_not_train(tmp_path, monkeypatch):
    monkeypatch.setenv("PLANTNSEEK_KERNEL", "native")
    model, dm = tiny(batches_per_step=4)
    model.stack.weights[1].requires_grad_(False)
    with pytest.raises(UsageError, match=r"^PLANTNSEEK_KERNEL=native, but .*frozen"):
        trainer(tmp_path).fit(model, datamodule=dm)


def test_mixed_precision_trains_and_records_pytorch(tmp_path):
    model, dm = tiny(batches_per_step=4)
    summary = RunSummary(verbose=False)
    t = pl.Trainer(accelerator="cpu", devices=1, default_root_dir=str(tmp_path), callbacks=[summary],
                   precision="bf16-mixed", max_epochs=1, enable_progress_bar=False, enable_model_summary=False,
                   num_sanity_val_steps=0)
    t.fit(model, datamodule=dm)
    s = read_summary(t)
    assert s["engine"] == "pytorch" and "autocast" in s["engine_reason"]


def test_the_kernel_is_recorded_when_it_trained(tmp_path, monkeypatch):
    monkeypatch.setenv("PLANTNSEEK_KERNEL", "native")
    model, dm = tiny(batches_per_step=4)
    t = pl.Trainer(accelerator="cpu", devices=1, default_root_dir=str(tmp_path), callbacks=[RunSummary(verbose=False)],
                   max_epochs=1, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    t.fit(model, datamodule=dm)
    s = read_summary(t)
    assert (s["engine"], s["engine_reason"]) == ("kernel", None)


@pytest.mark.parametrize("settings", [
    {"max_steps": 3, "max_epochs": 5},
    {"check_val_every_n_epoch": 2, "max_epochs": 3},
    {"limit_val_batches": 0, "max_epochs": 2},
])
def test_final_metrics_are_measured_on_the_weights_the_run_ends_with(settings, tmp_path):
    model, dm = tiny(batches_per_step=4)
    t = pl.Trainer(accelerator="cpu", devices=1, default_root_dir=str(tmp_path), callbacks=[RunSummary(verbose=False)],
                   enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, **settings)
    t.fit(model, datamodule=dm)
    s = read_summary(t)
    # an independent measurement: the run's network as it is now, over the test split, by hand
    x, y = dm.split("test")
    with torch.no_grad():
        accuracy = float((model(x).argmax(dim=1) == y).double().mean())
    assert s["final"]["accuracy"] == pytest.approx(accuracy, abs=1e-6)  # float32 metric; steps of 1/60
    assert s["steps"] == t.global_step


def test_metrics_reach_callback_metrics_and_early_stopping(tmp_path):
    from pytorch_lightning.callbacks import EarlyStopping

    model, dm = tiny(batches_per_step=4)
    stop = EarlyStopping(monitor="test/loss", patience=0, min_delta=10.0)  # no epoch improves by 10: stops after 2
    t = pl.Trainer(accelerator="cpu", devices=1, default_root_dir=str(tmp_path), callbacks=[stop], logger=False,
                   max_epochs=6, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    t.fit(model, datamodule=dm)
    assert {"train/loss", "test/loss", "test/accuracy"} <= set(t.callback_metrics)
    assert float(t.callback_metrics["test/accuracy"]) == pytest.approx(model.run.history[-1]["test_accuracy"])
    assert t.current_epoch == 2 and stop.stopped_epoch == 1


@pytest.mark.parametrize("loggers", ["csv", "both", "none"])
def test_any_logger_gets_metrics_and_hparams(loggers, tmp_path):
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    chosen = {"csv": [CSVLogger(str(tmp_path), name="csv")],
              "both": [CSVLogger(str(tmp_path), name="csv"), TensorBoardLogger(str(tmp_path), name="tb")],
              "none": False}[loggers]
    model, dm = tiny(batches_per_step=4)
    t = pl.Trainer(accelerator="cpu", devices=1, default_root_dir=str(tmp_path), callbacks=[RunSummary(verbose=False)],
                   logger=chosen, max_epochs=1, enable_progress_bar=False, enable_model_summary=False,
                   num_sanity_val_steps=0)
    t.fit(model, datamodule=dm)
    if loggers == "none":
        return
    csv_dir = tmp_path / "csv" / "version_0"
    metrics = (csv_dir / "metrics.csv").read_text()
    assert "test/accuracy" in metrics and "outcome/final_accuracy" in metrics
    hparams = (csv_dir / "hparams.yaml").read_text()
    assert "pruner: dense" in hparams and f"engine: {model.engine}" in hparams


def test_the_engine_rule_by_width_is_one_rule():
    from plantnseek.engine import kernel
    assert kernel.slower(1, [2, kernel.WIDEST, 4]) is None
    assert "width 701" in kernel.slower(1, [2, kernel.WIDEST + 1, 4])
    assert kernel.slower(kernel.STACK - 1, [2, 50, kernel.WIDEST + 1, 4]) is not None
    assert kernel.slower(kernel.STACK, [2, kernel.WIDEST + 1, 4]) is None  # a large stack keeps the kernel
    assert kernel.slower(1, [5000, 100, 5000]) is None  # input and output sizes are not hidden widths


def test_a_wide_lone_run_trains_on_pytorch_unless_native_is_asked(tmp_path, monkeypatch):
    from plantnseek.engine import kernel
    monkeypatch.setattr(kernel, "WIDEST", 10)  # the tiny run counts as wide
    for mode, engine in (("auto", "pytorch"), ("native", "kernel")):
        monkeypatch.setenv("PLANTNSEEK_KERNEL", mode)
        model, dm = tiny(batches_per_step=4)
        trainer(tmp_path, max_steps=2).fit(model, datamodule=dm)
        assert model.engine == engine


def test_monitored_checkpoint_and_a_compiled_user_scorer(in_tmp, capsys):
    """ModelCheckpoint(monitor=...) keeps the best epoch by a metric plantnseek logs, and a user's scorer
    that uses torch.compile prunes (round(0.3 x 520) = 156 weights kept)."""
    import yaml

    from plantnseek.cli.entry import main

    config = {"seed_everything": 1,
              "data": {"dataset": "circle", "n_samples": 600, "train_batch_size": 64},
              "model": {"depth": 4, "width": 20},
              "trainer": {"callbacks": [
                  {"class_path": "plantnseek.callbacks.Pruning",
                   "init_args": {"pruner": {"class_path": "my_scorers.CompiledMagnitude"}, "sparsity": 0.3,
                                 "post_epochs": 3}},
                  {"class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
                   "init_args": {"monitor": "test/accuracy", "mode": "max", "filename": "best-{epoch}"}}]}}
    (in_tmp / "fit.yaml").write_text(yaml.safe_dump(config))
    assert main(["fit", "--config", "fit.yaml"]) == 0
    summary, = in_tmp.rglob("summary.json")
    s = json.loads(summary.read_text())
    assert s["status"] == "completed" and s["pruner"] == "compiledmagnitude" and s["param_kept"] == 156
    best_epoch = max(range(3), key=lambda e: (s["history"][e]["test_accuracy"], -e))
    assert [p.name for p in summary.parent.rglob("best-*.ckpt")] == [f"best-epoch={best_epoch}.ckpt"]


def test_double_precision_prunes_the_tensors_that_train_and_draws_its_pictures(tmp_path):
    """precision 64-true gives the stack new float64 tensors: pruning (through each run's view) must still
    reach them, and the pictures must draw the float64 network."""
    from plantnseek.callbacks import Pictures, Pruning

    model, dm = tiny(batches_per_step=4)
    summary = RunSummary(verbose=False)
    t = pl.Trainer(accelerator="cpu", devices=1, default_root_dir=str(tmp_path), precision="64-true",
                   callbacks=[Pruning(pruner="mag", sparsity=0.2, post_epochs=1), summary, Pictures(helper=False)],
                   enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    t.fit(model, datamodule=dm)
    s = read_summary(t)
    assert s["status"] == "completed" and s["engine"] == "kernel"
    weights = [w.detach() for w in model.stack.weights]
    assert all(w.dtype == torch.float64 for w in weights)
    kept = sum(int((w != 0).sum()) for w in weights)
    masks = sum(int(model.stack.masks(l)[0].sum()) for l in range(len(weights)))
    assert masks == round(0.2 * sum(w.numel() for w in weights)) == s["param_kept"]
    assert kept <= masks  # pruned weights of the stack itself are exactly zero after training
    assert all(((model.stack.masks(l)[0] == 0) & (weights[l] != 0)).sum() == 0 for l in range(len(weights)))
    for picture in ("task.png", "masks.png"):
        assert (tmp_path / "lightning_logs" / "version_0" / picture).exists()
