"""The strong-ticket metric ``pruned``: the network right after the last pruning step, before further training."""
import csv
import glob
import json
import os

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from helpers import MIN_W, fit, read_summary, tiny
from plantnseek.callbacks import Pruning, RunSummary
from plantnseek.callbacks.summary import result_line
from plantnseek.cli.entry import main
from plantnseek.core.planted import plant_network
from plantnseek.module import PlantedMLP
from plantnseek.trainer import fit_stacked


def by_hand(model, dm):
    """Test metric of the planted initial weights under the model's final masks, in numpy float64."""
    hp = model.hparams
    planted = plant_network(hp.dataset, hp.depth, hp.width, hp.seed)
    x, y = (t.numpy().astype(np.float64) for t in dm.split("test"))
    h = x
    for i, ((w, b), layer) in enumerate(zip(planted.layers, model.run.net.layers)):
        h = h @ (w * layer.weight_mask.numpy()).T + b * layer.bias_mask.numpy()
        if i < len(planted.layers) - 1:
            h = np.maximum(h, 0)
    if hp.dataset == "circle":
        return float((h.argmax(axis=1) == y).mean())
    ff = (h * h).sum(axis=0)
    scale = np.where(ff > 0, (h * y).sum(axis=0) / np.where(ff > 0, ff, 1), 1.0)
    return float(((y - scale * h) ** 2).mean())


@pytest.mark.parametrize("dataset,pruner,schedule", [
    ("circle", "snip", {"levels": 1, "post_epochs": 2}),
    ("helix", "mag", {"levels": 2, "pre_epochs": 1, "post_epochs": 1}),  # multishot: after the last rewind
    ("relu", "rand", {"levels": 3, "pre_epochs": 1, "post_epochs": 1}),
])
def test_pruned_is_the_masked_initial_network(dataset, pruner, schedule, tmp_path):
    model, dm = tiny(dataset, depth=4, seed=3)
    trainer = fit(model, dm, Pruning(pruner=pruner, sparsity=0.3, prune_bias=True, **schedule), root=str(tmp_path))
    s = read_summary(trainer)
    metric = s["primary_metric"]
    assert s["pruned"][metric] == pytest.approx(by_hand(model, dm), rel=1e-4, abs=1e-6)
    assert s["pruned"] != s["final"]  # trained afterwards
    assert f"after pruning {s['pruned'][metric]:.4g}" in result_line(s)


def test_pruned_after_reinitialize_is_the_fresh_network(tmp_path):
    model, dm = tiny("circle", depth=4, seed=3)
    pruning = Pruning(pruner="mag", sparsity=0.5, reinitialize=True, post_epochs=0)
    fit(model, dm, pruning, root=str(tmp_path))
    with torch.no_grad():
        acc = float((model(dm.split("test")[0]).argmax(1) == dm.split("test")[1]).double().mean())
    assert pruning.pruned["accuracy"] == pytest.approx(acc)
    assert pruning.pruned["accuracy"] != pytest.approx(by_hand(model, dm))  # not the planted weights


@pytest.mark.parametrize("schedule", [{"levels": 1}, {"levels": 2, "pre_epochs": 1}])
def test_post_epochs_zero_ends_with_the_pruned_network(schedule, tmp_path):
    model, dm = tiny("helix", depth=4, seed=2)
    trainer = fit(model, dm, Pruning(pruner="synflow", sparsity=0.2, prune_bias=True, post_epochs=0, **schedule),
                  root=str(tmp_path))
    s = read_summary(trainer)
    assert s["status"] == "completed" and s["epochs"] == schedule.get("pre_epochs", 0) * schedule["levels"]
    assert s["final"] == s["pruned"]  # not the metric of the network before its last pruning step
    assert s["pruned"]["rescaled_mse"] == pytest.approx(by_hand(model, dm), rel=1e-4)
    # stacked (with a second run): the same run gives the same numbers
    _, dms = zip(tiny("helix", depth=4, seed=2), tiny("helix", depth=4, seed=3))
    stack = PlantedMLP(dataset="helix", depth=4, width=MIN_W["helix"], seed=[2, 3])
    st, _ = fit_stacked(stack, dms, [Pruning(pruner="synflow", sparsity=0.2, prune_bias=True, post_epochs=0,
                                             **schedule) for _ in dms])
    assert st["final"] == st["pruned"]
    for k, v in s["pruned"].items():
        assert st["pruned"][k] == pytest.approx(v, rel=1e-5), k


@pytest.mark.parametrize("resume_epoch", [0, 2])  # before the last pruning step, after it
def test_pruned_survives_resume(resume_epoch, tmp_path):
    def run(root, ckpt_path=None):
        model, dm = tiny("circle", depth=4, seed=7)
        pruning = Pruning(pruner="snip", sparsity=0.3, levels=2, pre_epochs=1, post_epochs=2)
        callbacks = [pruning, RunSummary(verbose=False),
                     ModelCheckpoint(dirpath=os.path.join(root, "ckpt"), save_top_k=-1)]
        trainer = pl.Trainer(accelerator="cpu", default_root_dir=root, logger=False, enable_progress_bar=False,
                             enable_model_summary=False, num_sanity_val_steps=0, callbacks=callbacks)
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
        return pruning

    full = run(str(tmp_path / "full"))
    [ckpt] = glob.glob(str(tmp_path / f"full/ckpt/epoch={resume_epoch}-*.ckpt"))
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)["callbacks"]
    saved_pruned = next(v for k, v in saved.items() if k.startswith("Pruning"))["pruned"]
    assert (saved_pruned == full.pruned) if resume_epoch == 2 else saved_pruned is None
    assert run(str(tmp_path / "resumed"), ckpt_path=ckpt).pruned == full.pruned


def test_results_csv_and_tensorboard_carry_the_pruned_metric(in_tmp):
    (in_tmp / "sw.yaml").write_text("""
base:
  data: {n_samples: 600, prune_dataset_ratio: 5}
  model: {depth: 4, width: 20}
  pruning: {post_epochs: 1, prune_bias: true}
pictures: false
grid:
  dataset: [circle]
  pruner: [mag, edgepopup]
  sparsity: [0.3]
""")
    assert main(["sweep", "--config", "sw.yaml", "--workers", "1", "--out", "sw"]) == 0  # stacked
    assert main(["sweep", "--config", "sw.yaml", "--workers", "1", "--out", "one", "--max-stack", "1"]) == 0
    rows = []
    for out in ("sw", "one"):
        with open(in_tmp / out / "results.csv") as f:
            rows += list(csv.DictReader(f))
    assert len(rows) == 4
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for row in rows:
        s = json.loads(open(os.path.join(row["run_dir"], "summary.json")).read())
        assert float(row["pruned_metric"]) == pytest.approx(s["pruned"]["accuracy"])
        acc = EventAccumulator(row["run_dir"])
        acc.Reload()
        assert acc.Scalars("test_pruned/accuracy")[0].value == pytest.approx(s["pruned"]["accuracy"])
