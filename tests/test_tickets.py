import numpy as np
import pytest
import torch

from plantnseek.core.errors import UsageError
from plantnseek.module import PlantedMLP
from plantnseek.core.planted import plant_network
from plantnseek.core.planting import ticket_forward
from plantnseek.core.registry import get_task
from plantnseek.core.tickets import BUILTIN_TASKS, min_width


def build_ticket(dataset, depth):
    return get_task(dataset).ticket(depth)


# Non-zero ticket weights / all weights, as the reference program reports them (shared/reference).
@pytest.mark.parametrize("dataset,depth,width,nonzero,total", [
    ("circle", 5, 50, 108, 5300), ("circle", 5, 100, 108, 20600),
    ("relu", 5, 50, 4, 5100), ("relu", 5, 100, 4, 20200),
    ("helix", 5, 50, 120, 5200), ("helix", 5, 100, 120, 20400),
])
def test_ticket_sparsity_matches_reference(dataset, depth, width, nonzero, total):
    model = PlantedMLP(dataset=dataset, depth=depth, width=width)
    assert model.run.ticket.counts() == (nonzero, total)
    assert model.run.ticket.sparsity == pytest.approx(nonzero / total, abs=0)


# Counts at other depths, checked once against the reference's constructions (depth 3, 4, >5 differ).
@pytest.mark.parametrize("dataset,counts", [
    ("circle", {3: 100, 4: 124, 5: 108, 6: 119, 7: 126, 10: 153}),
    ("helix", {3: 115, 4: 117, 5: 120, 6: 123, 10: 135}),
    ("relu", {3: 2, 4: 3, 5: 4, 10: 9}),
])
def test_ticket_size_per_depth(dataset, counts):
    for depth, n in counts.items():
        assert sum(int((w != 0).sum()) for w, _ in build_ticket(dataset, depth)) == n


def test_ticket_bias_counts_and_independence_of_width_and_seed():
    for dataset, biases in (("circle", 22), ("relu", 0), ("helix", 36)):
        counts = set()
        for width, seed in ((40, 1), (64, 2), (100, 3)):
            net = plant_network(dataset, 5, width, seed)
            assert sum(int(m.sum()) for m in net.bias_masks) == biases
            counts.add(sum(int(m.sum()) for m in net.weight_masks))
        assert len(counts) == 1


@pytest.mark.parametrize("dataset,minimum", [("circle", 20), ("helix", 30), ("relu", 1)])
def test_min_width(dataset, minimum):
    assert min_width(build_ticket(dataset, 5)) == minimum
    if minimum > 1:
        with pytest.raises(UsageError, match=f"minimum width is {minimum}"):
            plant_network(dataset, 5, minimum - 1, 1)
    plant_network(dataset, 5, minimum, 1)  # exactly the minimum fits


def test_depth_below_three_is_refused():
    with pytest.raises(UsageError, match="minimum depth is 3"):
        build_ticket("circle", 2)


@pytest.mark.parametrize("dataset", list(BUILTIN_TASKS))
@pytest.mark.parametrize("depth", [3, 4, 5, 7])
def test_masked_network_is_ticket_times_scale(dataset, depth):
    """The ticket alone inside the planted network computes the constructed ticket exactly (float64)."""
    ticket = build_ticket(dataset, depth)
    net = plant_network(dataset, depth, max(min_width(ticket), 8) + 5, seed=3)
    x = np.random.default_rng(0).uniform(-1, 1, size=(200, get_task(dataset).d_in))
    expected = ticket_forward(ticket, np.ones(get_task(dataset).d_out), x)
    np.testing.assert_allclose(ticket_forward(net.ticket, net.scale, x), expected, rtol=1e-9, atol=1e-9)
    assert np.all(net.scale > 0)
    # planted values are the network's initial values on the ticket
    for (w, b), (tw, tb) in zip(net.layers, net.ticket):
        np.testing.assert_array_equal(w[tw != 0], tw[tw != 0])


def test_ticket_metric_reaches_reference_figures():
    from plantnseek.data import PlantedDataModule

    expect = {"circle": (0.97, 1.0), "relu": (0.0, 1.3e-4), "helix": (0.0, 4.5e-4)}
    for dataset, (lo, hi) in expect.items():
        model = PlantedMLP(dataset=dataset, depth=5, width=50)
        x, y = PlantedDataModule(dataset=dataset).split("test")
        assert lo <= model.run.ticket_metric(x, y) <= hi, dataset


def test_module_weights_carry_the_planted_network():
    model = PlantedMLP(dataset="helix", depth=5, width=40, seed=7)
    net = plant_network("helix", 5, 40, 7)
    for layer, (w, b) in zip(model.run.net.layers, net.layers):
        torch.testing.assert_close(layer.weight, torch.as_tensor(w, dtype=torch.float32))
        torch.testing.assert_close(layer.bias, torch.as_tensor(b, dtype=torch.float32))
