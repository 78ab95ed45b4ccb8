import numpy as np
import pytest
import torch

from plantnseek.data import PlantedDataModule
from plantnseek.core.sampling import TensorBatches
from plantnseek.core.errors import UsageError
from plantnseek.core.tasks import circle_logits


@pytest.mark.parametrize("dataset,d_in,d_out", [("circle", 2, None), ("relu", 1, 1), ("helix", 1, 3)])
def test_shapes_and_split(dataset, d_in, d_out):
    dm = PlantedDataModule(dataset=dataset)
    x, y = dm.split("train")
    xt, yt = dm.split("test")
    xp, yp = dm.split("prune")
    assert x.shape == (9000, d_in) and xt.shape == (1000, d_in) and xp.shape == (40, d_in)
    assert (y.shape == (9000,)) if d_out is None else (y.shape == (9000, d_out))
    assert x.abs().max() <= 1
    # the pruning subset is drawn from the training samples
    assert all((x == row).all(dim=1).any() for row in xp)


def test_circle_labels_follow_the_radius_bounds_and_balance():
    dm = PlantedDataModule(dataset="circle", noise=0.0, n_samples=40_000)
    x, y = dm.split("train")
    r2 = (x.double() ** 2).sum(dim=1)
    expected = torch.bucketize(r2, torch.tensor([0.2, 0.5, 0.7], dtype=torch.float64))
    assert torch.equal(y, expected)
    # class areas in [-1, 1]^2: pi r^2 / 4 for each ring
    frac = torch.bincount(y, minlength=4).double() / len(y)
    areas = torch.tensor([0.2, 0.3, 0.2, 0.0]) * np.pi / 4
    areas[3] = 1 - areas[:3].sum()
    torch.testing.assert_close(frac, areas.double(), atol=0.01, rtol=0)


def test_circle_noise_moves_labels_to_the_runner_up():
    dm = PlantedDataModule(dataset="circle", noise=0.2, n_samples=20_000)
    x, y = dm.split("train")
    order = np.argsort(circle_logits((x.double().numpy() ** 2).sum(1)), axis=1)
    moved = y.numpy() != order[:, -1]
    assert moved.mean() == pytest.approx(0.2, abs=0.015)
    assert np.all(y.numpy()[moved] == order[moved, -2])


@pytest.mark.parametrize("dataset", ["relu", "helix"])
def test_regression_noise_level(dataset):
    from plantnseek.core.tasks import HELIX_FUNCS

    dm = PlantedDataModule(dataset=dataset, noise=0.05, n_samples=20_000)
    x, y = dm.split("train")
    xs = x.double().numpy()
    clean = np.maximum(xs, 0) if dataset == "relu" else np.concatenate([f(xs) for f in HELIX_FUNCS], axis=1)
    assert (y.double().numpy() - clean).std() == pytest.approx(0.05, rel=0.05)


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = (PlantedDataModule(dataset="helix", seed=s) for s in (4, 4, 5))
    for split in ("train", "test", "prune"):
        assert torch.equal(a.split(split)[0], b.split(split)[0])
        assert torch.equal(a.split(split)[1], b.split(split)[1])
        assert not torch.equal(a.split(split)[0], c.split(split)[0])


def test_batches_cover_every_sample_in_an_epoch_dependent_order():
    x = torch.arange(10).float()[:, None]
    loader = TensorBatches(x, x[:, 0], batch_size=3, shuffle=True, seed=1)
    assert len(loader) == 4
    first = torch.cat([b[0][:, 0] for b in loader])
    second = torch.cat([b[0][:, 0] for b in loader])
    assert sorted(first.tolist()) == list(range(10)) and sorted(second.tolist()) == list(range(10))
    assert not torch.equal(first, second)
    again = TensorBatches(x, x[:, 0], batch_size=3, shuffle=True, seed=1, epoch_fn=lambda: 0)
    assert torch.equal(torch.cat([b[0][:, 0] for b in again]), first)
    plain = TensorBatches(x, x[:, 0], batch_size=4)
    assert torch.equal(torch.cat([b[0][:, 0] for b in plain]), x[:, 0])


@pytest.mark.parametrize("kwargs,match", [
    ({"dataset": "spiral"}, "unknown dataset 'spiral'"),
    ({"noise": -0.1}, "noise -0.1"),
    ({"dataset": "circle", "noise": 1.5}, "between 0 and 1"),
    ({"train_batch_size": 0}, "train_batch_size 0"),
    ({"test_batch_size": 0}, "test_batch_size 0"),
    ({"prune_batch_size": 0}, "prune_batch_size 0"),
    ({"n_samples": 1}, "n_samples 1"),
    ({"n_samples": 30}, "pruning subset"),
])
def test_bad_data_arguments(kwargs, match):
    with pytest.raises(UsageError, match=match):
        PlantedDataModule(**kwargs)
