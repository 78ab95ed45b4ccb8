"""A refusal writes nothing (no run folder, no summary, no events), also when it is found only once fit has
started; and a run whose completed summary is written stays completed when Ctrl-C comes while its pictures
are drawn."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import yaml
from bad_tasks import Good

from plantnseek.cli.entry import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--data.n_samples", "600", "--data.prune_dataset_ratio", "5", "--model.depth", "4", "--model.width", "20",
        "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false"]


class NaNWhenLarge(Good):
    """Right on the small draw that checks a task when it is first named; a NaN label in the full data."""

    def sample(self, rng, n, noise):
        x, y = super().sample(rng, n, noise)
        if n > 100:
            y[-1, 0] = np.nan
        return x, y


def listing(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, dirs, files in os.walk(root) for f in dirs + files
                  if "__pycache__" not in d and f != "__pycache__")


@pytest.mark.parametrize("argv,message", [
    (["fit", *TINY, "--data.dataset", "test_refusals.NaNWhenLarge"], "sample() labels contain non-finite values"),
    (["main", "--dataset", "test_refusals.NaNWhenLarge", "--depth", "4", "--width", "20", "--post-epochs", "1",
      "--result-dir", "res"], "sample() labels contain non-finite values"),
    (["fit", *TINY, "--trainer.gradient_clip_val", "1"],
     "is not supported: plantnseek takes its own optimizer steps; allowed: null"),  # 1 or 1.0, as jsonargparse parses it
    (["fit", *TINY, "--trainer.accumulate_grad_batches", "2"],
     "trainer.accumulate_grad_batches 2 is not supported: plantnseek takes its own optimizer steps; allowed: 1"),
    (["fit", *TINY, "--trainer.val_check_interval", "50"],
     "trainer: `val_check_interval` (50) must be less than or equal to the number of the training batches (9)"),
    (["fit", *TINY, "--trainer.devices", "2"], "trainer.devices 2 is not supported: a run trains in one process"),
    (["test", *TINY, "--trainer.num_nodes", "2"], "trainer.num_nodes 2 is not supported"),
    (["fit", *TINY, "--trainer.strategy", "ddp"], "trainer.strategy 'ddp' is not supported"),
])
def test_refusal_leaves_no_run_folder(argv, message, in_tmp, capfd):
    (in_tmp / "lightning_logs" / "earlier").mkdir(parents=True)  # an existing folder stays as it is
    (in_tmp / "lightning_logs" / "earlier" / "keep.txt").write_text("keep")
    before = listing(in_tmp)
    assert main(argv) == 2
    err = capfd.readouterr().err.strip()
    assert err.startswith("plantnseek: error: ") and message in err and "\n" not in err, err
    assert listing(in_tmp) == before  # no run folder, summary or events file


def test_sweep_refuses_trainer_settings_before_writing(in_tmp, capfd):
    config = {"name": "t", "base": {"data": {"n_samples": 600, "prune_dataset_ratio": 5},
                                    "model": {"depth": 4, "width": 20}, "pruning": {"post_epochs": 1},
                                    "trainer": {"gradient_clip_val": 1}},
              "grid": {"pruner": ["mag"]}}
    (in_tmp / "sweep.yaml").write_text(yaml.safe_dump(config))
    assert main(["sweep", "--config", "sweep.yaml", "--out", "out"]) == 2
    err = capfd.readouterr().err.strip()
    assert "run pruner=mag: trainer.gradient_clip_val 1 is not supported" in err and "\n" not in err, err
    assert not (in_tmp / "out").exists()


# Ctrl-C (SIGINT) exactly when the summary is complete: a callback right after RunSummary sends it. The pictures
# helper is kept drawing (blocked) so that it is still running when the run is interrupted.
INTERRUPT_AFTER_SUMMARY = textwrap.dedent("""
    import os, signal, sys
    import pytorch_lightning as pl
    from plantnseek.core import figures
    from plantnseek.cli import lightning_cli
    from plantnseek.callbacks.summary import RunSummary
    from plantnseek.cli.entry import main

    class CtrlC(pl.Callback):
        def on_fit_end(self, trainer, pl_module):
            os.kill(os.getpid(), signal.SIGINT)

    parent, draw = os.getpid(), figures.mask_figure

    def helper_still_drawing(*args, **kwargs):
        if os.getpid() != parent:
            signal.pause()
        return draw(*args, **kwargs)

    figures.mask_figure = helper_still_drawing
    defaults = lightning_cli.cli_defaults

    def with_ctrl_c():
        found = defaults()
        at = next(i for i, c in enumerate(found["callbacks"]) if isinstance(c, RunSummary))
        found["callbacks"].insert(at + 1, CtrlC())
        return found

    lightning_cli.cli_defaults = with_ctrl_c
    sys.exit(main(sys.argv[1:]))
""")


def test_ctrl_c_after_the_summary_keeps_the_run_completed(tmp_path):
    (tmp_path / "interrupt.py").write_text(INTERRUPT_AFTER_SUMMARY)
    env = {**os.environ, "PYTHONPATH": ROOT}
    done = subprocess.run([sys.executable, "interrupt.py", "fit", *TINY], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    err = done.stderr
    assert done.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("plantnseek: interrupted after the run completed: ") and "(status completed)" in last, err
    assert "pictures not drawn: task.png, masks.png" in last and "resume" not in last
    assert "Received SIGTERM" not in err and "Traceback" not in err, err
    (summary,) = tmp_path.glob("lightning_logs/**/version_0/summary.json")
    s = json.loads(summary.read_text())
    assert s["status"] == "completed" and s["pictures_missing"] == ["task.png", "masks.png"]
    assert not (summary.parent / "task.png").exists() and not (summary.parent / "masks.png").exists()


def test_sweep_refuses_max_epochs_that_contradict_the_pruning_schedule(in_tmp, capfd):
    config = {"name": "t", "base": {"data": {"n_samples": 600, "prune_dataset_ratio": 5},
                                    "model": {"depth": 4, "width": 20}, "pruning": {"post_epochs": 2},
                                    "trainer": {"max_epochs": 5}},
              "grid": {"pruner": ["mag"]}}
    (in_tmp / "sweep.yaml").write_text(yaml.safe_dump(config))
    assert main(["sweep", "--config", "sweep.yaml", "--out", "out"]) == 2
    err = capfd.readouterr().err.strip()
    assert "trainer.max_epochs 5 contradicts the Pruning schedule" in err and "= 2 epochs" in err and "\n" not in err
    assert not (in_tmp / "out").exists()
