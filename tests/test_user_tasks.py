"""User tasks by dotted path and ``run:`` tasks: checks, planting, the oracle, metrics, CLI and sweeps."""
import csv
import json
import os

import pytest
import torch

from helpers import versions, fit, make_pruning, read_summary
from plantnseek.cli.entry import main
from plantnseek.data import PlantedDataModule
from plantnseek.core.errors import UsageError
from plantnseek.module import PlantedMLP
from plantnseek.core.registry import get_task

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_DATA = {"n_samples": 600, "prune_dataset_ratio": 5, "train_batch_size": 64, "batches_per_step": 2}

BAD = [
    ("no_such_module.Task", "cannot import dataset 'no_such_module.Task'"),
    ("bad_tasks.Missing", "module 'bad_tasks' has no 'Missing'"),
    ("nodots", "unknown dataset 'nodots'; allowed: circle, relu, helix, a module.Class task"),
    ("bad_tasks.not_a_class", "is not a class"),
    ("bad_tasks.NeedsArgs", "cannot be constructed without arguments"),
    ("bad_tasks.NoTicket", "lacks ticket"),
    ("bad_tasks.DInText", "d_in '1' is invalid; it must be a positive integer"),
    ("bad_tasks.ClassificationNumber", "classification 1 is invalid; it must be True or False"),
    ("bad_tasks.OneClass", "a classification task needs d_out >= 2 classes, got 1"),
    ("bad_tasks.NegativeMaxNoise", "max_noise -1.0 is invalid"),
    ("bad_tasks.SampleRaises", "sample(rng, 8, 0.0) failed: RuntimeError: no data today"),
    ("bad_tasks.SampleOneArray", "sample() must return (inputs, labels)"),
    ("bad_tasks.SampleWideInputs", "inputs are float64 [8, 3]; expected float [8, 1] = [n, d_in]"),
    ("bad_tasks.SampleFlatTargets", "labels are float64 [8]; expected float [8, 1] = [n, d_out]"),
    ("bad_tasks.SampleNaN", "sample() labels contain non-finite values"),
    ("bad_tasks.FloatLabels", "labels are float64 [8]; expected int classes [8]"),
    ("bad_tasks.LabelOutOfRange", "label 2 is out of range; classes are 0..1"),
    ("bad_tasks.TicketTooShallow", "ticket(4) gave 2 layers; depth 4 needs 3 (weight, bias) pairs"),
    ("bad_tasks.TicketWrongInput", "ticket(4) layer 0 weight is float64 [2, 3]; expected [out, 1]"),
    ("bad_tasks.TicketWrongOutput", "ticket(4) outputs 3 values; expected d_out 1"),
    ("bad_tasks.TicketWrongBias", "ticket(4) layer 0 bias is float64 [5]; expected [2] = [out]"),
    ("bad_tasks.TicketInf", "ticket(4) layer 2 contains non-finite values"),
    ("bad_tasks.TicketEmptyLayer", "ticket(4) layer 0 has no non-zero weight"),
    ("bad_tasks.TicketRaises", "ticket(4) failed: ValueError: only depth 9 is supported"),
]


def one_error_line(capsys) -> str:
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("plantnseek: error: "), err
    return err


@pytest.mark.parametrize("dataset,message", BAD)
def test_bad_user_task_is_one_line_and_writes_nothing(dataset, message, in_tmp, capsys):
    assert main(["ticket", "--dataset", dataset, "--depth", "4", "--width", "8"]) == 2
    assert message in one_error_line(capsys)
    assert main(["main", "--dataset", dataset, "--depth", "4", "--width", "8", "--result-dir", "results"]) == 2
    assert message in one_error_line(capsys)
    assert os.listdir(in_tmp) == []


def test_bad_user_task_in_fit_and_sweep(in_tmp, capsys):
    argv = ["fit", "--data.dataset", "bad_tasks.TicketWrongOutput", "--model.depth", "4", "--model.width", "8"]
    assert main(argv) == 2
    assert "ticket(4) outputs 3 values; expected d_out 1" in one_error_line(capsys)
    (in_tmp / "s.yaml").write_text("base: {model: {depth: 4, width: 8}}\ngrid: {dataset: [relu, bad_tasks.SampleNaN]}\n")
    assert main(["sweep", "--config", "s.yaml", "--out", "sw"]) == 2
    assert "run dataset=bad_tasks.SampleNaN: task bad_tasks.SampleNaN: sample() labels" in one_error_line(capsys)
    assert sorted(os.listdir(in_tmp)) == ["s.yaml"]


def test_user_task_counts_metric_and_min_width(capsys):
    """bad_tasks.Good at depth 4, width 8: 2 + 2 + 2 ticket weights of 8 + 64 + 8, one bias, 2 units wide."""
    assert main(["ticket", "--dataset", "bad_tasks.Good", "--depth", "4", "--width", "8", "--noise", "0",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["nonzero"], report["total"], report["bias_nonzero"], report["min_width"]) == (6, 80, 1, 2)
    assert report["metric_name"] == "mse" and report["metric"] < 1e-12  # |x| + 0.5 up to float32 labels
    with pytest.raises(UsageError, match="width 1 cannot hold this ticket; the minimum width is 2"):
        PlantedMLP(dataset="bad_tasks.Good", depth=4, width=1)
    with pytest.raises(UsageError, match="minimum depth is 3"):
        PlantedMLP(dataset="bad_tasks.Good", depth=2, width=8)


def test_user_task_data_and_noise_range():
    dm = PlantedDataModule(dataset="bad_tasks.TwoClasses", noise=0.0, **TINY_DATA)
    x, y = dm.split("train")
    assert x.dtype == torch.float32 and x.shape == (540, 1) and y.dtype == torch.long
    assert torch.equal(y, (x[:, 0] > 0).long())
    with pytest.raises(UsageError, match="noise -0.1 is invalid for bad_tasks.TwoClasses; allowed: >= 0"):
        PlantedDataModule(dataset="bad_tasks.TwoClasses", noise=-0.1)


@pytest.mark.parametrize("dataset", ["bad_tasks.Good", "bad_tasks.TwoClasses"])
def test_ticket_oracle_keeps_exactly_a_user_ticket(dataset, in_tmp):
    model = PlantedMLP(dataset=dataset, depth=5, width=12, seed=4)
    dm = PlantedDataModule(dataset=dataset, seed=4, **TINY_DATA)
    trainer = fit(model, dm, make_pruning(pruner="ticket", sparsity=-1, prune_bias=True, post_epochs=1))
    s = read_summary(trainer)
    assert s["recovery"]["recall"] == 1.0 and s["recovery"]["precision"] == 1.0 and s["status"] == "completed"
    for layer, wt, bt in zip(model.run.net.layers, model.run.ticket.weight_masks(), model.run.ticket.bias_masks()):
        assert torch.equal(layer.weight_mask.bool(), wt) and torch.equal(layer.bias_mask.bool(), bt)


def test_generic_task_picture(tmp_path):
    from plantnseek.core import figures
    for dataset in ("bad_tasks.Good", "bad_tasks.TwoClasses"):
        model = PlantedMLP(dataset=dataset, depth=4, width=8)
        x, y = PlantedDataModule(dataset=dataset, **TINY_DATA).split("test")
        path = figures.save(figures.task_figure(model, x, y), str(tmp_path / f"{dataset}.png"))
        assert os.path.getsize(path) > 1000


def test_user_task_in_a_sweep(in_tmp):
    (in_tmp / "s.yaml").write_text("""
base:
  data: {n_samples: 600, prune_dataset_ratio: 5}
  model: {depth: 4, width: 8}
  pruning: {prune_bias: true, post_epochs: 1}
grid:
  dataset: [bad_tasks.Good, bad_tasks.TwoClasses]
  pruner: [ticket]
  sparsity: [ticket]
""")
    assert main(["sweep", "--config", "s.yaml", "--out", "sw", "--workers", "1"]) == 0
    with open(in_tmp / "sw/results.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["dataset"] for r in rows) == ["bad_tasks.Good", "bad_tasks.TwoClasses"]
    assert all(r["status"] == "completed" and float(r["recall"]) == 1.0 and float(r["precision"]) == 1.0
               for r in rows)
    assert (in_tmp / "sw/runs/bad_tasks.Good/ticket/ticket/task.png").exists()


def test_task_is_checked_once_per_process():
    first = get_task("bad_tasks.Good")
    assert get_task("bad_tasks.Good") is first
    assert first.ticket(5) is first.ticket(5)
    assert not first.ticket(5)[0][0].flags.writeable  # the cached ticket cannot be changed by a caller


def test_user_task_checkpoint_and_test(in_tmp, capsys):
    tiny = ["--data.n_samples", "600", "--data.prune_dataset_ratio", "5", "--trainer.enable_progress_bar", "false"]
    assert main(["fit", "--data.dataset", "bad_tasks.Good", "--model.depth", "4", "--model.width", "8",
                 "--trainer.max_epochs", "1", *tiny]) == 0
    run = versions(in_tmp / "lightning_logs")[0]
    assert (run / "task.png").exists() and (run / "summary.json").exists()
    ckpt = str(run / "checkpoints/last.ckpt")
    capsys.readouterr()
    assert main(["test", "--config", str(run / "config.yaml"), "--ckpt_path", ckpt]) == 0
    # the same checkpoint against a network that plants another ticket (another seed) is refused
    assert main(["test", "--config", str(run / "config.yaml"), "--ckpt_path", ckpt, "--seed_everything", "2"]) == 2
    assert "planted ticket differs" in capsys.readouterr().err
