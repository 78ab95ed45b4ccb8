"""``run:<dir or checkpoint>``: a finished run's final masked network as the planted ticket."""
import json
import os

import pytest
import torch

from helpers import versions, fit, make_pruning, read_summary
from plantnseek.cli.entry import main
from plantnseek.data import PlantedDataModule
from plantnseek.core.errors import UsageError
from plantnseek.module import PlantedMLP

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--data.n_samples", "600", "--data.prune_dataset_ratio", "5", "--trainer.enable_progress_bar", "false",
        "--data.batches_per_step", "2"]
TINY_DATA = {"n_samples": 600, "prune_dataset_ratio": 5, "train_batch_size": 64, "batches_per_step": 2}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Two finished fit runs: circle pruned by SynFlow to 10 % (depth 4, width 20), relu dense (width 8)."""
    root = tmp_path_factory.mktemp("sources")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert main(["fit", "--config", f"{ROOT}/configs/synflow_singleshot.yaml", "--model.depth", "4",
                     "--model.width", "20", "--trainer.callbacks.init_args.post_epochs", "1", *TINY]) == 0
        assert main(["fit", "--config", f"{ROOT}/configs/relu.yaml", "--model.depth", "4", "--model.width", "8",
                     "--trainer.max_epochs", "1", *TINY]) == 0
    finally:
        os.chdir(cwd)
    return {"circle": str(versions(root / "lightning_logs")[0]), "relu": str(versions(root / "lightning_logs")[1])}


def final_masked(run_dir):
    """The source's kept weights and biases, read independently of plantnseek."""
    state = torch.load(os.path.join(run_dir, "checkpoints/last.ckpt"), weights_only=True)["state_dict"]
    n = sum(1 for k in state if k.startswith("stack.weight_mask_"))
    return [(state[f"stack.weights.{i}"][0] * state[f"stack.weight_mask_{i}"][0],
             state[f"stack.biases.{i}"][0] * state[f"stack.bias_mask_{i}"][0]) for i in range(n)]


@pytest.mark.parametrize("task", ["circle", "relu"])
def test_ticket_json_reports_the_runs_kept_weights(task, sources, capsys):
    layers = final_masked(sources[task])
    assert main(["ticket", "--dataset", f"run:{sources[task]}", "--depth", "4", "--width", "30", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["nonzero"] == sum(int((w != 0).sum()) for w, _ in layers)
    assert report["bias_nonzero"] == sum(int((b != 0).sum()) for _, b in layers)
    assert report["total"] == 2 * 30 + 30 * 30 + 30 * 4 if task == "circle" else 30 + 900 + 30
    if task == "relu":  # dense: every unit is used, so the ticket is as wide as the run
        assert report["nonzero"] == 8 + 64 + 8 and report["min_width"] == 8
    need = report["min_width"]
    assert 1 <= need <= 20
    PlantedMLP(dataset=f"run:{sources[task]}", depth=4, width=need)
    with pytest.raises(UsageError, match=f"the minimum width is {need}"):
        PlantedMLP(dataset=f"run:{sources[task]}", depth=4, width=need - 1)


@pytest.mark.parametrize("task,noise", [("circle", 0.0), ("circle", 0.2), ("relu", 0.0), ("relu", 0.05)])
def test_ticket_metric_equals_the_source_network_on_the_same_inputs(task, noise, sources):
    dataset = f"run:{sources[task]}"
    derived = PlantedMLP(dataset=dataset, depth=4, width=30, seed=5)
    x, y = PlantedDataModule(dataset=dataset, noise=noise, seed=5, **TINY_DATA).split("test")
    source = PlantedMLP.load_from_checkpoint(os.path.join(sources[task], "checkpoints/last.ckpt")).double()
    with torch.no_grad():
        out = source(x.double())
    if task == "circle":
        expected = float((out.argmax(dim=1) == y).double().mean())
        assert derived.run.ticket_metric(x, y) == expected
        assert (expected == 1.0) == (noise == 0.0)  # noise moves labels to the runner-up class
    else:
        expected = float(((out - y.double()) ** 2).mean())
        assert derived.run.ticket_metric(x, y) == pytest.approx(expected, rel=1e-6, abs=1e-12)
        assert expected < 1e-12 if noise == 0 else expected == pytest.approx(noise**2, rel=0.3)


@pytest.mark.parametrize("task", ["circle", "relu"])
def test_ticket_oracle_keeps_exactly_a_run_ticket(task, sources, in_tmp):
    dataset = f"run:{sources[task]}"
    model = PlantedMLP(dataset=dataset, depth=4, width=24, seed=2)
    trainer = fit(model, PlantedDataModule(dataset=dataset, seed=2, **TINY_DATA),
                  make_pruning(pruner="ticket", sparsity=-1, prune_bias=True, post_epochs=1))
    s = read_summary(trainer)
    assert s["recovery"]["recall"] == 1.0 and s["recovery"]["precision"] == 1.0 and s["dataset"] == dataset
    assert s["param_kept"] == sum(int((w != 0).sum()) + int((b != 0).sum()) for w, b in final_masked(sources[task]))
    for layer, wt, bt in zip(model.run.net.layers, model.run.ticket.weight_masks(), model.run.ticket.bias_masks()):
        assert torch.equal(layer.weight_mask.bool(), wt) and torch.equal(layer.bias_mask.bool(), bt)
    # a checkpoint of this run refuses a network planted with another ticket (here: another seed)
    (ckpt,) = [os.path.join(d, f) for d, _, fs in os.walk(in_tmp) for f in fs if f.endswith(".ckpt")]
    saved = torch.load(ckpt, weights_only=True)
    PlantedMLP(dataset=dataset, depth=4, width=24, seed=2).on_load_checkpoint(saved)
    with pytest.raises(UsageError, match="planted ticket differs"):
        PlantedMLP(dataset=dataset, depth=4, width=24, seed=3).on_load_checkpoint(saved)


def test_bad_run_datasets_are_one_line(sources, tmp_path, capsys):
    no_ckpt = tmp_path / "sweep_run"
    no_ckpt.mkdir()
    (no_ckpt / "summary.json").write_text("{}")
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    cases = [
        (f"run:{sources['circle']}", "5", "is a network of depth 4; depth 5 must equal it"),
        (f"run:{no_ckpt}", "4", "has no checkpoints/last.ckpt; sweep runs write none; re-run it alone with"),
        (f"run:{tmp_path / 'missing'}", "4", "names no run directory or checkpoint file"),
        (f"run:{text}", "4", "cannot read checkpoint"),
        (f"run:{foreign}", "4", "is not a plantnseek checkpoint"),
    ]
    for dataset, depth, message in cases:
        assert main(["ticket", "--dataset", dataset, "--depth", depth, "--width", "30"]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and message in err, err


def test_run_task_in_a_sweep_and_from_a_checkpoint_file(sources, in_tmp):
    ckpt = os.path.join(sources["relu"], "checkpoints/last.ckpt")
    (in_tmp / "s.yaml").write_text(f"""
base:
  data: {{n_samples: 600, prune_dataset_ratio: 5}}
  model: {{depth: 4, width: 24}}
  pruning: {{prune_bias: true, post_epochs: 1}}
pictures: false
grid:
  dataset: ["run:{sources['circle']}", "run:{ckpt}"]
  pruner: [ticket, synflow]
  sparsity: [ticket]
""")
    assert main(["sweep", "--config", "s.yaml", "--out", "sw", "--workers", "1"]) == 0
    import csv

    with open(in_tmp / "sw/results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and all(r["status"] == "completed" for r in rows)
    assert all(float(r["recall"]) == 1.0 for r in rows if r["pruner"] == "ticket")


def test_summary_records_which_ticket_a_run_task_was(sources, in_tmp):
    """The fingerprint is the hash of the source's compacted kept weights, so a changed source is visible."""
    from plantnseek.core.runtask import compact, fingerprint

    dataset = f"run:{sources['relu']}"
    trainer = fit(PlantedMLP(dataset=dataset, depth=4, width=10), PlantedDataModule(dataset=dataset, **TINY_DATA))
    layers = [(w.double().numpy(), b.double().numpy()) for w, b in final_masked(sources["relu"])]
    assert read_summary(trainer)["ticket"]["fingerprint"] == fingerprint(compact(layers))
