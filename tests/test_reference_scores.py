"""Our scorers against the reference program's own scores on the same planted network and pruning batches.

Fixtures: ``fixtures/reference_inputs.pt`` (our network and batches, from ``export_reference_inputs.py``)
and ``fixtures/reference_scores.npz`` (the reference's scores, RelationalML/PlantNSeek at da69ccf, from
``make_reference_scores.py`` run with the reference's python). Tolerances: the reference scores in
float32; SynFlow here is float64 (so relative 1e-5), GraSP's Hessian-vector product in float32 carries
rounding noise relative to the largest score (absolute tolerance scaled by it).
"""
import os

import numpy as np
import pytest
import torch

from plantnseek.callbacks import ScoringContext
from plantnseek.core.pruners import SCORERS
from plantnseek.data import PlantedDataModule
from plantnseek.module import PlantedMLP

HERE = os.path.join(os.path.dirname(__file__), "fixtures")
INPUTS = torch.load(os.path.join(HERE, "reference_inputs.pt"))
SCORES = np.load(os.path.join(HERE, "reference_scores.npz"))
TOLERANCE = {"mag": (0, 0), "snip": (1e-4, 1e-6), "synflow": (1e-5, 0), "grasp": (1e-3, 2e-4)}


def test_fixtures_are_from_the_pinned_reference_commit_and_our_current_network():
    assert str(SCORES["reference_commit"]) == "da69ccf"
    for cfg in INPUTS.values():
        model = PlantedMLP(dataset=cfg["dataset"], depth=cfg["depth"], width=cfg["width"], seed=cfg["seed"])
        for layer, w, b in zip(model.run.net.layers, cfg["weights"], cfg["biases"]):
            assert torch.equal(layer.weight, w) and torch.equal(layer.bias, b)
        dm = PlantedDataModule(dataset=cfg["dataset"], seed=cfg["seed"], prune_batch_size=16)
        batches = list(dm.prune_dataloader())
        assert len(batches) == len(cfg["batches"]) == 3
        assert all(torch.equal(x, x0) and torch.equal(y, y0) for (x, y), (x0, y0) in zip(batches, cfg["batches"]))


@pytest.mark.parametrize("config", sorted(INPUTS))
@pytest.mark.parametrize("pruner", ["mag", "snip", "grasp", "synflow"])
@pytest.mark.parametrize("bias", [False, True])
def test_scores_agree_with_the_reference_program(config, pruner, bias):
    cfg = INPUTS[config]
    model = PlantedMLP(dataset=cfg["dataset"], depth=cfg["depth"], width=cfg["width"], seed=cfg["seed"])
    model.eval()
    params = list(model.run.net.masked_parameters(bias=bias))
    ctx = ScoringContext(net=model.run.net, names=[n for n, _, _ in params], params=[p for _, p, _ in params],
                         masks=[m for _, _, m in params], batches=cfg["batches"], loss=model.run.loss,
                         generator=torch.Generator(), ticket_masks=[])
    ours = SCORERS[pruner]().score(ctx)
    theirs = [torch.as_tensor(SCORES[f"{config}/{pruner}/{'bias' if bias else 'nobias'}/{i}"]).double()
              for i in range(len(params))]
    rtol, atol_rel = TOLERANCE[pruner]
    peak = max(float(t.abs().max()) for t in theirs)
    for (name, _, _), a, b in zip(params, ours, theirs):
        torch.testing.assert_close(a.double(), b, rtol=rtol, atol=atol_rel * peak, msg=f"{pruner} {name}")
