"""Property tests over random architectures, tasks and pruning settings (bounded example counts)."""
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from plantnseek.callbacks import SCORERS, Pruning
from plantnseek.data import PlantedDataModule
from plantnseek.core.errors import UsageError
from plantnseek.module import PlantedMLP
from plantnseek.core.registry import get_task
from plantnseek.core.tickets import min_width

settings.register_profile("plantnseek", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("plantnseek")


@st.composite
def setups(draw):
    dataset = draw(st.sampled_from(["circle", "relu", "helix"]))
    depth = draw(st.integers(3, 6))
    width = min_width(get_task(dataset).ticket(depth)) + draw(st.integers(0, 6))
    return {
        "dataset": dataset, "depth": depth, "width": width, "seed": draw(st.integers(0, 1000)),
        "pruner": draw(st.sampled_from(list(SCORERS))),
        "scope": draw(st.sampled_from(["global", "local"])),
        "prune_bias": draw(st.booleans()),
        "sparsity": draw(st.one_of(st.just(-1.0), st.floats(0.01, 1.0))),
        "levels": draw(st.integers(1, 3)),
        "prune_epochs": draw(st.integers(1, 2)),
    }


@given(setups())
def test_pruning_invariants(s):
    model = PlantedMLP(dataset=s["dataset"], depth=s["depth"], width=s["width"], seed=s["seed"])
    dm = PlantedDataModule(dataset=s["dataset"], n_samples=200, prune_dataset_ratio=2, seed=s["seed"])
    pruning = Pruning(pruner=s["pruner"], sparsity=s["sparsity"], scope=s["scope"], prune_bias=s["prune_bias"],
                      levels=s["levels"], prune_epochs=s["prune_epochs"])
    try:
        pruning.density = pruning.target_density(model.run)
    except UsageError:
        assume(False)  # a target that keeps nothing is refused, tested elsewhere
    x, y = dm.split("test")
    ticket_metric = model.run.ticket_metric(x, y)
    ticket_state = {k: v.clone() for k, v in model.run.ticket.state_dict().items()}
    pruning.remember_initial(model)
    initial = [p.detach().clone() for p in model.run.net.parameters()]
    prunable = lambda: [m for _, _, m in model.run.net.masked_parameters(bias=s["prune_bias"])]  # noqa: E731
    before = [m.clone() for m in prunable()]
    for level in range(s["levels"]):
        pruning.prune_level(model.run, level, dm)
        masks = prunable()
        for m in masks:
            assert set(m.unique().tolist()) <= {0.0, 1.0}  # binary
        density = pruning.level_density(level)
        if s["scope"] == "global":
            assert sum(int(m.sum()) for m in masks) == round(density * sum(m.numel() for m in masks))
        else:
            assert [int(m.sum()) for m in masks] == [round(density * m.numel()) for m in masks]
        assert all(bool((new <= old).all()) for new, old in zip(masks, before))  # pruned stays pruned
        before = [m.clone() for m in masks]
        if not s["prune_bias"]:
            assert all(bool(l.bias_mask.all()) for l in model.run.net.layers)
        # rewinding restores the initial weights (the pruned ones read zero)
        with torch.no_grad():
            for p in model.run.net.parameters():
                p.add_(1.0)
        pruning.rewind_weights(model)
        all_masks = [m for _, _, m in model.run.net.masked_parameters(bias=True)]
        assert all(torch.equal(p, p0 * m) for p, p0, m in zip(model.run.net.parameters(), initial, all_masks))
    # the ticket, and so its metric, does not depend on pruning
    assert model.run.ticket_metric(x, y) == ticket_metric
    assert all(torch.equal(v, ticket_state[k]) for k, v in model.run.ticket.state_dict().items())
