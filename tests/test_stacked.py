"""Stacked runs must equal the same runs trained one by one: same masks, metrics within float tolerance."""
import pytest
import pytorch_lightning as pl
import torch

from plantnseek.callbacks import Pruning, RunSummary
from plantnseek.data import PlantedDataModule
from plantnseek.core.metrics import RescaledMSE
from plantnseek.module import PlantedMLP
from plantnseek.trainer import fit_stacked


def parts(dataset, pruner, sparsity, seed, **pruning):
    model = PlantedMLP(dataset=dataset, depth=4, width={"circle": 20, "relu": 5, "helix": 30}[dataset], seed=seed,
                       optimizer=pruning.pop("optimizer", "adam"))
    dm = PlantedDataModule(dataset=dataset, n_samples=700, prune_dataset_ratio=5, seed=seed)
    return model, dm, Pruning(pruner=pruner, sparsity=sparsity, prune_bias=True, **pruning)


def single(dataset, pruner, sparsity, seed, root, **pruning):
    model, dm, p = parts(dataset, pruner, sparsity, seed, **pruning)
    summary = RunSummary(verbose=False)
    trainer = pl.Trainer(accelerator="cpu", logger=False, default_root_dir=str(root), enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, callbacks=[p, summary])
    trainer.fit(model, datamodule=dm)
    return summary.summary(trainer, model, "completed"), model


@pytest.mark.parametrize("dataset,schedule", [
    ("circle", {"levels": 1, "pre_epochs": 1, "post_epochs": 2}),
    ("helix", {"levels": 2, "pre_epochs": 1, "post_epochs": 1}),
    ("relu", {"levels": 1, "pre_epochs": 0, "post_epochs": 2, "optimizer": "momentum"}),
])
def test_stacked_runs_equal_individual_runs(dataset, schedule, tmp_path):
    runs = [("synflow", 0.2, 1), ("snip", -1, 2), ("mag", 0.5, 3), ("grasp", 0.3, 4), ("rand", 0.3, 5)]
    expected = [single(dataset, *r, tmp_path / str(i), **dict(schedule)) for i, r in enumerate(runs)]
    _, dms, prunings = zip(*(parts(dataset, *r, **dict(schedule)) for r in runs))
    optimizer = schedule.get("optimizer", "adam")
    stack = PlantedMLP(dataset=dataset, depth=4, width={"circle": 20, "relu": 5, "helix": 30}[dataset],
                       seed=[r[2] for r in runs], optimizer=optimizer)
    got = fit_stacked(stack, dms, prunings)
    for (want, want_model), have, have_model in zip(expected, got, stack.runs):
        for a, b in zip(want_model.run.net.masked_parameters(), have_model.net.masked_parameters()):
            assert torch.equal(a[2], b[2]), a[0]  # identical masks
            torch.testing.assert_close(a[1], b[1], rtol=1e-3, atol=1e-4)  # weights
        assert want["param_kept"] == have["param_kept"] and want["recovery"] == have["recovery"]
        assert want["epochs"] == have["epochs"] and len(want["history"]) == len(have["history"])
        for key, value in want["final"].items():
            assert have["final"][key] == pytest.approx(value, rel=1e-3, abs=1e-4), key
        assert have["ticket"] == want["ticket"]
        assert [e["kept"] for e in want["prune_events"]] == [e["kept"] for e in have["prune_events"]]


def test_stacked_forward_is_each_run_forward():
    """The stack's batched forward equals each run's own network, computed independently here."""
    stack = PlantedMLP(dataset="helix", depth=5, width=30, seed=[1, 2, 3])
    singles = [PlantedMLP(dataset="helix", depth=5, width=30, seed=s) for s in (1, 2, 3)]
    for r, run in enumerate(stack.runs):
        with torch.no_grad():
            run.net.layers[1].weight_mask[r::2] = 0  # through the view: the stack sees it
    x = torch.rand(3, 7, 1)
    out = stack(x)
    for r, single in enumerate(singles):
        h = x[r]
        for l, layer in enumerate(single.run.net.layers):
            mask = torch.ones_like(layer.weight)
            if l == 1:
                mask[r::2] = 0
            h = h @ (layer.weight * mask).T + layer.bias
            h = torch.relu(h) if l < 3 else h
        torch.testing.assert_close(out[r], h, rtol=1e-5, atol=1e-6)


def test_run_views_alias_the_stack():
    """Writing through a run's view changes the stack, and training the stack changes the view."""
    stack = PlantedMLP(dataset="circle", depth=4, width=20, seed=[1, 2])
    view = stack.runs[1].net.layers[0]
    with torch.no_grad():
        view.weight_mask.zero_()
        stack.stack.weights[0].add_(1.0)
    assert stack.stack.weight_mask_0[1].sum() == 0 and stack.stack.weight_mask_0[0].sum() > 0
    assert torch.equal(view.weight, stack.stack.weights[0][1])


def test_rescaled_mse_with_a_runs_dimension_equals_per_run():
    y, f = torch.randn(2, 50, 3), torch.randn(2, 50, 3)
    stacked = RescaledMSE(3, runs=2)
    stacked.update(f, y)
    for r in range(2):
        one = RescaledMSE(3)
        one.update(f[r], y[r])
        assert float(stacked.compute()[r]) == pytest.approx(float(one.compute()), rel=1e-6)
