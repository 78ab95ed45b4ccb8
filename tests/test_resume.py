"""Resuming a fit: refused under other settings, and otherwise the same summary as an uninterrupted run."""
import json
import os
import shlex

import pytest

from helpers import versions

from plantnseek.cli.entry import main

TINY = """
seed_everything: 3
data: {{dataset: circle, n_samples: 600, prune_dataset_ratio: 5, batches_per_step: 4}}
model: {{depth: 4, width: 20}}
trainer:
  enable_progress_bar: false
  callbacks:
    - class_path: plantnseek.callbacks.Pruning
      init_args: {{pruner: snip, sparsity: 0.2, levels: {levels}, pre_epochs: {pre}, post_epochs: {post},
                  prune_bias: {bias}}}
{extra}"""
INTERRUPT = """    - class_path: attackers.Interrupt
      init_args: {epoch: %d}
"""


def write(path, levels=1, pre=0, post=2, bias=False, interrupt=None):
    extra = INTERRUPT % interrupt if interrupt is not None else ""
    path.write_text(TINY.format(levels=levels, pre=pre, post=post, bias=str(bias).lower(), extra=extra))
    return str(path)


def summary(run):
    with open(os.path.join(run, "summary.json")) as f:
        return json.load(f)


def runs(root):
    return [str(v.relative_to(root / "lightning_logs")) for v in versions(root / "lightning_logs")]


@pytest.mark.parametrize("levels,pre,post,bias,cut", [
    (1, 0, 2, False, 1), (1, 0, 2, True, 1), (2, 1, 1, False, 1), (2, 1, 1, True, 2),
])
def test_resumed_summary_equals_uninterrupted(levels, pre, post, bias, cut, in_tmp, capsys):
    """Ctrl-C after epoch ``cut - 1``: one line with the resume command; running it gives the same summary."""
    plain = write(in_tmp / "plain.yaml", levels, pre, post, bias)
    cutting = write(in_tmp / "cut.yaml", levels, pre, post, bias, interrupt=cut)
    assert main(["fit", "--config", plain]) == 0
    full = summary(versions(in_tmp / "lightning_logs")[0])
    capsys.readouterr()
    assert main(["fit", "--config", cutting]) == 130
    err = capsys.readouterr().err.strip()
    err = err.splitlines()[-1]  # (Lightning's start-up lines come before it)
    run = str(versions(in_tmp / "lightning_logs")[1])
    ckpt = os.path.join(run, "checkpoints", "last.ckpt")
    assert f"interrupted in epoch {cut}; saved {ckpt} and {run}/summary.json (status interrupted)" in err
    assert summary(run)["status"] == "interrupted"
    command = err.split("resume with: ")[1]
    assert command == f"plantnseek fit --config {run}/config.yaml --ckpt_path {ckpt}"
    assert main(shlex.split(command)[1:]) == 0
    resumed = summary(versions(in_tmp / "lightning_logs")[2])
    assert resumed["status"] == "completed"
    assert set(resumed) == set(full)
    for key in full:  # every field: counts, scores, events, history, ticket, initial results
        assert resumed[key] == full[key], key
    kept = full["prune_events"][-1]
    assert (full["param_kept"], full["param_prunable"]) == (kept["kept"], kept["prunable"])
    # independent count: depth 4, width 20 circle has 2*20 + 20*20 + 20*4 weights and 20 + 20 + 4 biases
    assert full["param_prunable"] == 520 + (44 if bias else 0)
    assert full["param_kept"] == round(0.2 * full["param_prunable"])
    pictures = sorted(p for p in os.listdir(versions(in_tmp / "lightning_logs")[2]) if p.endswith(".png"))
    assert pictures == ["masks.png"] + [f"scores_level{i}.png" for i in range(1, levels + 1)] + ["task.png"]


def test_resume_under_other_settings_is_refused_naming_each_difference(in_tmp, capsys):
    base = write(in_tmp / "base.yaml", levels=2, pre=1, post=0, bias=False)
    assert main(["fit", "--config", base]) == 0
    ckpt = str(versions(in_tmp / "lightning_logs")[0] / "checkpoints/last.ckpt")
    before = runs(in_tmp)
    P = "--trainer.callbacks.init_args."
    cases = [
        ([P + "pruner", "mag", P + "sparsity", "0.5"], "pruning.pruner snip -> mag, pruning.sparsity 0.2 -> 0.5"),
        ([P + "schedule", "linear"], "pruning.schedule exponential -> linear"),
        ([P + "prune_bias", "true"], "pruning.prune_bias False -> True"),
        ([P + "levels", "3"], "pruning.levels 2 -> 3"),
        ([P + "post_epochs", "1"], "pruning.post_epochs 0 -> 1"),
        (["--seed_everything", "4"], "seed_everything 3 -> 4"),
        (["--data.n_samples", "700"], "data.n_samples 600 -> 700"),
        (["--data.noise", "0.02"], "data.noise 0.01 -> 0.02"),
        (["--model.optimizer", "sgd", "--model.lr", "0.01"], "model.optimizer adam -> sgd, model.lr 0.001 -> 0.01"),
        (["--model.lr_drops", "[1]"], "model.lr_drops [] -> [1]"),
    ]
    for flags, message in cases:
        assert main(["fit", "--config", base, *flags, "--ckpt_path", ckpt]) == 2, flags
        err = capsys.readouterr().err.strip().splitlines()[-1]  # (in-process, earlier runs' log lines may precede)
        assert message in err, err
        assert runs(in_tmp) == before  # nothing written
    # a dense config resuming a pruned checkpoint
    (in_tmp / "dense.yaml").write_text("seed_everything: 3\ndata: {dataset: circle, n_samples: 600, "
                                       "prune_dataset_ratio: 5, batches_per_step: 4}\nmodel: {depth: 4, width: 20}\n")
    assert main(["fit", "--config", str(in_tmp / "dense.yaml"), "--ckpt_path", ckpt]) == 2
    assert "pruning snip -> none" in capsys.readouterr().err
    assert runs(in_tmp) == before
    # evaluating a checkpoint under another pruning config is allowed (only the network must match)
    assert main(["test", "--config", base, P + "pruner", "mag", "--ckpt_path", ckpt]) == 0


def test_main_interrupt_says_how_to_resume_and_the_command_works(in_tmp, capsys):
    flags = ["--pruner", "attackers.InterruptSecondCall", "--width", "20", "--depth", "4", "--level", "2",
             "--pre-epochs", "1", "--post-epochs", "0", "--sparsity", "0.3", "--result-dir", "r", "--exp-suffix", "m"]
    assert main(["main", *flags]) == 130
    err = capsys.readouterr().err.strip().splitlines()[-1]
    run = "r/m/version_0"
    assert err.startswith("plantnseek: interrupted in epoch 1; saved ") and "(status interrupted)" in err, err
    assert summary(run)["status"] == "interrupted"
    command = err.split("resume with: ")[1]
    assert command.startswith(f"plantnseek fit --config {run}/config.yaml --ckpt_path {run}/checkpoints/")
    assert main(shlex.split(command)[1:]) == 0
    (resumed,) = [summary(v) for v in versions("lightning_logs")]
    assert resumed["status"] == "completed" and [e["level"] for e in resumed["prune_events"]] == [1, 2]


def test_refused_resume_is_one_line_in_a_fresh_process(in_tmp):
    import subprocess
    import sys

    exe = os.path.join(os.path.dirname(sys.executable), "plantnseek")
    base = write(in_tmp / "base.yaml", levels=1, pre=0, post=1)
    assert subprocess.run([exe, "fit", "--config", base], capture_output=True).returncode == 0
    ckpt = str(versions(in_tmp / "lightning_logs")[0] / "checkpoints/last.ckpt")
    out = subprocess.run([exe, "fit", "--config", base, "--trainer.callbacks.init_args.prune_bias", "true",
                          "--ckpt_path", ckpt], capture_output=True, text=True)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip() == ("plantnseek: error: the checkpoint was made with other settings: pruning.prune_bias "
                                  "False -> True; resume with the settings it was made with (its run's config.yaml), "
                                  "or start a new run without --ckpt_path")
    assert [os.path.basename(r) for r in runs(in_tmp)] == ["version_0"]


def test_programmatic_resume_under_other_pruning_settings_is_refused(tmp_path):
    """Without the CLI, the Pruning callback itself refuses a checkpoint of other settings when fitting."""
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint

    from helpers import tiny
    from plantnseek.callbacks import Pruning
    from plantnseek.core.errors import UsageError

    def trainer(pruning):
        return pl.Trainer(accelerator="cpu", default_root_dir=str(tmp_path), logger=False, enable_progress_bar=False,
                          enable_model_summary=False, num_sanity_val_steps=0,
                          callbacks=[pruning, ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), save_last=True)])

    model, dm = tiny("relu", depth=4, seed=2)
    trainer(Pruning(pruner="snip", sparsity=0.3, post_epochs=1)).fit(model, datamodule=dm)
    model, dm = tiny("relu", depth=4, seed=2)
    with pytest.raises(UsageError, match="pruning.sparsity 0.3 -> 0.5"):
        trainer(Pruning(pruner="snip", sparsity=0.5, post_epochs=2)).fit(
            model, datamodule=dm, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
