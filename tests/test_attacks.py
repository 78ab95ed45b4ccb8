"""Attacks on fit/main/ticket: each bad input is one line and exit code 2 with nothing written; a user
scorer that returns garbage is a recorded run failure (exit 1), not a traceback."""
import json
import os

import pytest

from helpers import versions

from plantnseek.cli.entry import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs")
TINY = ["--data.n_samples", "600", "--data.prune_dataset_ratio", "5", "--model.width", "20",
        "--trainer.enable_progress_bar", "false"]
PRUNE = ["--config", f"{CONFIGS}/synflow_singleshot.yaml"]
P = "--trainer.callbacks.init_args."
MAIN = ["--width", "20", "--post-epochs", "0", "--result-dir", "res"]
TWICE = """
trainer:
  callbacks:
    - class_path: plantnseek.callbacks.Pruning
      init_args: {pruner: snip}
    - class_path: plantnseek.callbacks.Pruning
      init_args: {pruner: mag}
"""


@pytest.mark.parametrize("argv,message", [
    (["fit", *TINY, "--model.lr_drops", "[1]", "--model.lr_drop_rate", "-1"], "lr_drop_rate -1.0 is invalid; allowed: greater than 0 and at most 1"),
    (["fit", *TINY, "--model.lr_drop_rate", "2"], "lr_drop_rate 2.0 is invalid"),
    (["fit", *TINY, "--model.lr_drops", "[-3]"], "lr_drops [-3] is invalid"),
    (["fit", *TINY, "--model.lr", "inf"], "model.lr: 'inf' is invalid; allowed: a finite number"),
    (["fit", *TINY, "--model.lr", "0"], "lr 0.0 is invalid"),
    (["fit", *TINY, "--model.weight_decay", "nan"], "model.weight_decay: 'nan' is invalid; allowed: a finite number"),
    (["fit", *TINY, "--model.weight_decay", "-1"], "weight_decay -1.0 is invalid"),
    (["fit", *TINY, "--seed_everything", "-1"], "seed_everything -1 is invalid; give an integer seed from 0 to 4294967295"),
    (["fit", *TINY, "--seed_everything", str(2**32)], f"seed_everything {2**32} is invalid"),
    (["fit", *TINY, "--trainer.max_epochs", "-1"], "trainer.max_epochs -1 never stops"),
    (["fit", *TINY, "--trainer.max_epochs", "-1", "--trainer.max_steps", "-1"], "never stops"),
    (["fit", *TINY, "--data.n_samples", "100000000000000"], "n_samples 100000000000000 needs about"),
    (["fit", *TINY, "--trainer.accelerator", "gpu"], "trainer.accelerator 'gpu' is not available on this machine; allowed here: auto, cpu"),
    (["fit", *TINY, "--trainer.accelerator", "cuda"], "trainer.accelerator 'cuda' is not available"),
    (["fit", *TINY, "--trainer.accelerator", "mps"], "trainer.accelerator 'mps' is not available"),
    (["fit", *TINY, "--trainer.default_root_dir", "afile"], "trainer.default_root_dir"),
    (["fit", *TINY, "--trainer.default_root_dir", "afile/sub"], "which is a file; give a folder"),
    (["fit", *TINY, "--trainer.default_root_dir", "/proc/plantnseek"], "is not writable"),
    (["fit", *PRUNE, *TINY, P + "sparsity", "abc"], "trainer.callbacks.init_args.sparsity: 'abc' is invalid; allowed: float or null"),
    (["fit", *PRUNE, *TINY, P + "levels", "two"], "trainer.callbacks.init_args.levels: 'two' is invalid; allowed: int"),
    (["fit", *PRUNE, *TINY, P + "pruner.class_path=torch.nn.Linear"],
     "trainer.callbacks.init_args.pruner: torch.nn.Linear is not a Scorer; allowed: rand, mag, snip, grasp, synflow, ticket"),
    (["fit", *PRUNE, *TINY, P + "pruner", "attackers.NeedsArgs"], "cannot be built without arguments"),
    (["fit", "--config", "twice.yaml", *TINY], "the Pruning callback is given 2 times in trainer.callbacks (pruners snip, mag)"),
    (["main", *MAIN, "--seed", "-1"], "seed -1 is invalid; give an integer seed from 0 to 4294967295"),
    (["main", *MAIN, "--seed", str(2**70)], f"seed {2**70} is invalid"),
    (["main", *MAIN, "--lr", "inf"], "lr inf is invalid"),
    (["main", *MAIN, "--lr-drops", "1", "--lr-drop-rate", "-1"], "lr_drop_rate -1.0 is invalid"),
    (["main", *MAIN, "--weight-decay", "nan"], "weight_decay nan is invalid"),
    (["main", *MAIN, "--result-dir", "afile"], "--result-dir"),
    (["main", *MAIN, "--pruner", "attackers.NeedsArgs"], "cannot be built without arguments"),
    (["ticket", "--seed", "-1"], "seed -1 is invalid"),
    (["ticket", "--seed", str(2**32)], f"seed {2**32} is invalid"),
])
def test_attack_is_one_line_exit_2_nothing_written(argv, message, in_tmp, capfd):
    (in_tmp / "afile").write_text("not a folder")
    (in_tmp / "twice.yaml").write_text(TWICE)
    before = sorted(os.listdir(in_tmp))
    assert main(argv) == 2
    err = capfd.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err, err
    assert err.startswith("plantnseek: error: ")
    assert sorted(os.listdir(in_tmp)) == before  # nothing written (no lightning_logs, no res)


@pytest.mark.parametrize("scorer,message", [
    ("TooFew", "returned 5 score tensors for 6 prunable parameters"),
    ("WrongShape", "scored layers.0.weight with shape (40,), expected (20, 2)"),
    ("ReturnsNone", "returned NoneType; score() must return a list of torch tensors"),
    ("PlainLists", "returned a list holding list; score() must return a list of torch tensors"),
    ("Tensor2D", "returned Tensor; score() must return a list of torch tensors"),
])
def test_user_scorer_returning_garbage_fails_the_run_with_a_reason(scorer, message, in_tmp, capsys):
    code = main(["main", "--pruner", f"attackers.{scorer}", "--width", "20", "--depth", "4", "--prune-bias", "true",
                 "--post-epochs", "1", "--result-dir", "r", "--exp-suffix", "x"])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("plantnseek: run failed: ") and message in err, err
    s = json.loads((in_tmp / "r/x/version_0/summary.json").read_text())
    assert s["status"] == "failed" and message in s["reason"]


def test_failure_handler_survives_data_that_cannot_be_drawn(in_tmp, monkeypatch, capsys):
    """A run whose data fails to draw (past the memory estimate) still leaves a summary saying why."""
    import plantnseek.data as data

    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 1.5 TiB")

    monkeypatch.setattr(data, "make_splits", no_memory)
    assert main(["fit", *TINY, "--trainer.max_epochs", "1"]) == 1
    assert "out of memory" in capsys.readouterr().err.strip().splitlines()[-1]
    (run,) = versions(in_tmp / "lightning_logs")
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "failed" and "MemoryError" in s["reason"]
