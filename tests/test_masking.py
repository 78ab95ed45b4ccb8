import pytest
import torch

from plantnseek.errors import UsageError
from plantnseek.masking import recovery, resolve_density, schedule_densities, topk_masks
from plantnseek.metrics import RescaledMSE


def test_topk_keeps_exactly_k_even_with_ties():
    scores = [torch.zeros(4, 5), torch.ones(3)]  # massive ties: a threshold cut would keep all or none
    masks = [torch.ones(4, 5), torch.ones(3)]
    new = topk_masks(scores, masks, density=0.5, scope="global")
    assert sum(int(m.sum()) for m in new) == round(0.5 * 23)
    assert int(new[1].sum()) == 3  # the three highest scores are kept first
    again = topk_masks(scores, masks, density=0.5, scope="global")
    assert all(torch.equal(a, b) for a, b in zip(new, again))  # deterministic tie-break


def test_local_scope_keeps_the_fraction_per_tensor():
    scores = [torch.rand(10, 10), torch.rand(7)]
    new = topk_masks(scores, [torch.ones(10, 10), torch.ones(7)], density=0.3, scope="local")
    assert [int(m.sum()) for m in new] == [30, 2]


def test_pruned_entries_never_come_back():
    scores = [torch.arange(10.0)]
    mask = torch.ones(10)
    mask[9] = 0  # the best-scored entry was pruned before
    new = topk_masks(scores, [mask], density=0.5, scope="global")[0]
    assert new[9] == 0 and int(new.sum()) == 5
    assert torch.equal(new.nonzero().flatten(), torch.tensor([4, 5, 6, 7, 8]))


def test_nan_scores_rank_last():
    new = topk_masks([torch.tensor([float("nan"), 1.0, 2.0])], [torch.ones(3)], density=2 / 3, scope="global")[0]
    assert new.tolist() == [0, 1, 1]


def test_resolve_density():
    assert resolve_density(0.1, None, 0.02) == 0.1
    assert resolve_density(-1, None, 0.02) == 0.02
    assert resolve_density(None, 2, 0.02) == pytest.approx(0.01)
    for bad in (0, 1.5, -0.5):
        with pytest.raises(UsageError, match=f"sparsity {bad}"):
            resolve_density(bad, None, 0.02)
    with pytest.raises(UsageError, match="compression -1"):
        resolve_density(None, -1, 0.02)


def test_schedules_end_at_target():
    assert schedule_densities(0.01, 2, "exponential") == pytest.approx([0.1, 0.01])
    assert schedule_densities(0.2, 4, "linear") == pytest.approx([0.8, 0.6, 0.4, 0.2])
    with pytest.raises(UsageError, match="unknown schedule 'cubic'"):
        schedule_densities(0.1, 2, "cubic")


def test_recovery_counts_and_collapse():
    ticket = [torch.tensor([[1, 0], [0, 0]]), torch.tensor([[1, 0]])]
    kept = [torch.tensor([[1.0, 1.0], [0.0, 0.0]]), torch.tensor([[1.0, 0.0]])]
    rec = recovery(kept, ticket)
    assert rec["recall"] == 1.0 and rec["precision"] == pytest.approx(2 / 3) and not rec["collapsed"]
    assert rec["layers"][0]["dead_units"] == 1  # hidden unit 1 has no incoming weight
    cut = [torch.tensor([[1.0, 1.0], [0.0, 0.0]]), torch.tensor([[0.0, 1.0]])]
    rec = recovery(cut, ticket)
    assert rec["collapsed"] and rec["recall"] == 0.5


def test_rescaled_mse_streams_over_batches_and_removes_the_scale():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(300, 3, generator=g)
    f = y / torch.tensor([2.0, 5.0, 0.5]) + 0.01 * torch.randn(300, 3, generator=g)
    metric = RescaledMSE(3)
    for chunk in range(0, 300, 64):
        metric.update(f[chunk:chunk + 64], y[chunk:chunk + 64])
    s = (y * f).sum(0) / (f * f).sum(0)
    expected = ((y - s * f) ** 2).mean()
    assert float(metric.compute()) == pytest.approx(float(expected), rel=1e-5)
    assert float(metric.compute()) < 1e-3
    zero = RescaledMSE(1)
    zero.update(torch.zeros(5, 1), torch.ones(5, 1))
    assert float(zero.compute()) == pytest.approx(1.0)
