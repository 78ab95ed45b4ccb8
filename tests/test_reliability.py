"""Determinism, checkpoints and resume, failures that keep the run, and bad input."""
import json
import os

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

from helpers import run_dirs, tiny
from plantnseek.callbacks import SCORERS, Pruning, RunSummary
from plantnseek.cli.entry import main
from plantnseek.cli.lightning_cli import run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs")


def masks_of(model):
    return [m.clone() for _, _, m in model.run.net.masked_parameters(bias=True)]


def run_fit(dataset, pruner, seed, root, levels=1, pre=0, post=1, callbacks=(), ckpt_path=None, every=None):
    model, dm = tiny(dataset, depth=4, seed=seed)
    pruning = Pruning(pruner=pruner, sparsity=0.2, levels=levels, pre_epochs=pre, post_epochs=post, prune_bias=True)
    ckpt = ModelCheckpoint(dirpath=os.path.join(root, "ckpt"), save_last=True, every_n_train_steps=every,
                           save_top_k=-1 if every else 1)
    trainer = pl.Trainer(accelerator="cpu", default_root_dir=root, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, logger=False,
                         callbacks=[pruning, RunSummary(verbose=False), ckpt, *callbacks])
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return model, pruning, trainer


@pytest.mark.parametrize("pruner", list(SCORERS))
def test_same_seed_same_numbers_other_seed_other_numbers(pruner, tmp_path):
    a, pa, _ = run_fit("circle", pruner, 5, str(tmp_path / "a"))
    b, pb, _ = run_fit("circle", pruner, 5, str(tmp_path / "b"))
    c, _, _ = run_fit("circle", pruner, 6, str(tmp_path / "c"))
    assert all(torch.equal(x, y) for x, y in zip(masks_of(a), masks_of(b)))
    assert a.run.history == b.run.history and pa.events == pb.events
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert a.run.history != c.run.history


def test_fit_and_main_give_identical_results(in_tmp):
    flags = ["--dataset", "relu", "--depth", "4", "--width", "6", "--pruner", "snip", "--sparsity", "0.3",
             "--post-epochs", "1", "--seed", "4", "--result-dir", "res", "--exp-suffix", "m"]
    assert main(["main", *flags]) == 0
    config = in_tmp / "fit.yaml"
    config.write_text("""
seed_everything: 4
data: {dataset: relu}
model: {depth: 4, width: 6}
trainer:
  enable_progress_bar: false
  callbacks:
    - class_path: plantnseek.callbacks.Pruning
      init_args: {pruner: snip, sparsity: 0.3, post_epochs: 1}
""")
    assert main(["fit", "--config", str(config)]) == 0
    a = json.loads((run_dirs(in_tmp / "res/m")[0] / "summary.json").read_text())
    b = json.loads((run_dirs(in_tmp / "lightning_logs")[0] / "summary.json").read_text())
    for key in ("final", "history", "recovery", "param_kept", "layers", "ticket"):
        assert a[key] == b[key], key


def test_test_from_checkpoint_reproduces_the_final_metric(in_tmp):
    assert main(["fit", "--config", f"{CONFIGS}/synflow_singleshot.yaml", "--model.width", "20",
                 "--data.n_samples", "800", "--data.prune_dataset_ratio", "5", "--trainer.enable_progress_bar", "false",
                 "--trainer.callbacks.init_args.post_epochs", "2"]) == 0
    run = run_dirs(in_tmp / "lightning_logs")[0]
    summary = json.loads((run / "summary.json").read_text())
    ckpt = run / "checkpoints/last.ckpt"
    cli = run_cli(["test", "--config", str(run / "config.yaml"), "--ckpt_path", str(ckpt),
                   "--trainer.enable_progress_bar", "false"])
    assert float(cli.trainer.callback_metrics["test/accuracy"]) == summary["final"]["accuracy"]
    assert float(cli.trainer.callback_metrics["test/loss"]) == summary["final"]["loss"]
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    for i in range(4):
        w, m = state[f"stack.weights.{i}"], state[f"stack.weight_mask_{i}"]
        assert bool((w[m == 0] == 0).all())  # pruned weights are stored as zeros
        assert f"tickets.0.weight_{i}" in state
    assert sum(int((state[f"tickets.0.weight_{i}"] != 0).sum()) for i in range(4)) == 108
    for name, buf in cli.model.run.ticket.state_dict().items():  # the ticket comes back with the model
        assert torch.equal(buf, state[f"tickets.0.{name}"])
    assert cli.model.run.ticket.counts() == (108, 2 * 20 + 20 * 20 + 20 * 20 + 20 * 4)


def test_checkpoint_of_another_network_is_refused(in_tmp, capsys):
    assert main(["fit", "--config", f"{CONFIGS}/relu.yaml", "--model.width", "5", "--data.n_samples", "600",
                 "--data.prune_dataset_ratio", "5", "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false"]) == 0
    ckpt = str(run_dirs(in_tmp / "lightning_logs")[0] / "checkpoints/last.ckpt")
    before = sorted(os.listdir(in_tmp / "lightning_logs"))
    capsys.readouterr()
    assert main(["test", "--config", f"{CONFIGS}/circle.yaml", "--ckpt_path", ckpt]) == 2
    err = capsys.readouterr().err.strip()
    assert "checkpoint is of another network (dataset relu, depth 5, width 5)" in err and "\n" not in err
    assert main(["test", "--config", f"{CONFIGS}/circle.yaml", "--ckpt_path", "missing.ckpt"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert sorted(os.listdir(in_tmp / "lightning_logs")) == before  # nothing written


class Interrupt(Callback):
    """Raises Ctrl-C at a given (epoch, batch)."""

    def __init__(self, epoch, batch=None):
        self.epoch, self.batch = epoch, batch

    def on_train_epoch_start(self, trainer, pl_module):
        if self.batch is None and trainer.current_epoch == self.epoch:
            raise KeyboardInterrupt

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.batch is not None and trainer.current_epoch == self.epoch and batch_idx == self.batch:
            raise KeyboardInterrupt


@pytest.mark.parametrize("where", ["between_levels", "mid_epoch"])
def test_resume_after_interrupt_matches_uninterrupted(where, tmp_path):
    kw = dict(levels=2, pre=1, post=2)
    every = 2 if where == "mid_epoch" else None
    full, full_pruning, _ = run_fit("circle", "snip", 3, str(tmp_path / "full"), every=every, **kw)
    stop = Interrupt(epoch=1) if where == "between_levels" else Interrupt(epoch=2, batch=4)
    root = str(tmp_path / "cut")
    with pytest.raises(SystemExit):
        run_fit("circle", "snip", 3, root, callbacks=[stop], every=every, **kw)
    summary = json.loads(open(os.path.join(root, "summary.json")).read())
    assert summary["status"] == "interrupted"
    last = os.path.join(root, "ckpt", "last.ckpt")
    assert os.path.exists(last)
    resumed, resumed_pruning, _ = run_fit("circle", "snip", 3, root, ckpt_path=last, every=every, **kw)
    assert all(torch.equal(x, y) for x, y in zip(masks_of(full), masks_of(resumed)))
    assert [e["kept"] for e in full_pruning.events] == [e["kept"] for e in resumed_pruning.events]
    assert full.run.history == resumed.run.history  # the whole history survives the interruption
    for (k, x), y in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(x, y), k


class NaNScorer(SCORERS["mag"]):
    def score(self, ctx):
        scores = super().score(ctx)
        scores[1][0] = float("nan")
        return scores


def test_non_finite_scores_fail_the_run_with_a_recorded_reason(in_tmp, capsys):
    import sys
    import types

    mod = types.ModuleType("nanscorer")
    mod.NaNScorer = NaNScorer
    sys.modules["nanscorer"] = mod
    try:
        assert main(["main", "--pruner", "nanscorer.NaNScorer", "--width", "20", "--post-epochs", "1",
                     "--sparsity", "0.5", "--prune-bias", "true", "--exp-suffix", "nan", "--result-dir", "r"]) == 1
    finally:
        del sys.modules["nanscorer"]
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "non-finite scores in layers.0.bias" in err and "nanscorer" in err.lower()
    s = json.loads((run_dirs(in_tmp / "r/nan")[0] / "summary.json").read_text())
    assert s["status"] == "failed" and "non-finite scores in layers.0.bias" in s["reason"]


def test_diverging_loss_fails_the_run_naming_the_epoch(in_tmp, capsys):
    code = main(["main", "--dataset", "relu", "--width", "8", "--optimizer", "sgd", "--lr", "1e12", "--post-epochs", "3",
                 "--sparsity", "1", "--exp-suffix", "div", "--result-dir", "r"])
    assert code == 1
    assert "diverged" in capsys.readouterr().err
    s = json.loads((run_dirs(in_tmp / "r/div")[0] / "summary.json").read_text())
    assert s["status"] == "failed" and "epoch 0" in s["reason"]


@pytest.mark.parametrize("argv,message", [
    (["fit", "--config", "nope.yaml"], "File does not exist"),
    (["fit", "--config", "bad.yaml"], "Problems parsing config"),
    (["fit", "--bogus", "1"], "unrecognized arguments: --bogus"),
    (["fit", "--model.depth", "2"], "minimum depth is 3"),
    (["fit", "--model.width", "3"], "minimum width is 20"),
    (["fit", "--data.dataset", "spiral"], "unknown dataset 'spiral'"),
    (["fit", "--model.optimizer", "lbfgs"], "unknown optimizer 'lbfgs'"),
    (["fit", "--data.noise", "-1"], "noise -1.0"),
    (["fit", "--data.noise", "2"], "between 0 and 1.0"),
    (["fit", "--data.train_batch_size", "0"], "train_batch_size 0"),
    (["fit", "--data.n_samples", "20"], "pruning subset"),
    (["fit", "--config", "prune.yaml", "--trainer.callbacks.init_args.sparsity", "0"], "sparsity 0.0"),
    (["fit", "--config", "prune.yaml", "--trainer.callbacks.init_args.sparsity", "1e-9"], "keeps no parameter"),
    (["fit", "--config", "prune.yaml", "--trainer.callbacks.init_args.levels", "0"], "levels 0"),
    (["fit", "--config", "prune.yaml", "--trainer.callbacks.init_args.prune_epochs", "0"], "prune_epochs 0"),
    (["fit", "--config", "prune.yaml", "--trainer.callbacks.init_args.scope", "flow"], "unknown scope 'flow'"),
    (["fit", "--config", "prune.yaml", "--trainer.callbacks.init_args.schedule", "cubic"], "unknown schedule"),
    (["fit", "--config", "prune.yaml", "--trainer.callbacks.init_args.pruner", "magic"], "unknown pruner 'magic'"),
    (["fit", "--seed_everything", "true"], "give an integer seed"),
])
def test_bad_fit_input_is_one_line_exit_2_nothing_written(argv, message, in_tmp, capsys):
    (in_tmp / "bad.yaml").write_text("model: [unclosed\n  depth: 3: 4")
    (in_tmp / "prune.yaml").write_text(open(f"{CONFIGS}/synflow_singleshot.yaml").read())
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err, err
    assert not (in_tmp / "lightning_logs").exists()
