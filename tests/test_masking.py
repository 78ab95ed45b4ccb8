import pytest
import torch

from plantnseek.core.errors import UsageError
from plantnseek.core.masking import recovery, resolve_density, schedule_densities, topk_masks
from plantnseek.core.metrics import RescaledMSE


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


# -- boundaries of the selection rule and of the recovery measures, each against a count by hand ----------
def test_resolve_density_boundaries():
    assert resolve_density(1, None, 0.02) == 1.0  # keeping everything is allowed (and is not the ticket's)
    assert resolve_density(None, 0, 0.02) == 1.0  # compression 0: 10^0
    assert resolve_density(None, 0.5, 0.02) == pytest.approx(10 ** -0.5)
    assert resolve_density(0.25, 3, 0.02) == 0.25  # sparsity wins over compression
    with pytest.raises(UsageError, match="^give a sparsity \\(kept fraction in \\(0, 1\\], or -1 for the ticket.s\\) or a compression$"):
        resolve_density(None, None, 0.02)  # the message starts with what to do
    with pytest.raises(UsageError, match="sparsity 1.0001"):
        resolve_density(1.0001, None, 0.02)


def test_keep_count_rounds_to_nearest():
    from plantnseek.core.masking import keep_count

    assert [keep_count(d, 10) for d in (0.04, 0.06, 0.14, 0.16, 1.0)] == [0, 1, 1, 2, 10]


def test_a_density_above_the_alive_fraction_keeps_only_the_alive():
    # 3 of 10 alive, asked to keep 8: the pruned ones (even with the highest scores) stay pruned
    mask = torch.tensor([1.0, 0, 0, 1, 0, 0, 0, 1, 0, 0])
    scores = torch.arange(10.0, 0, -1)
    for scope in ("global", "local"):
        new = topk_masks([scores], [mask], density=0.8, scope=scope)[0]
        assert new.tolist() == mask.tolist()


def test_global_ranking_over_three_tensors_places_each_kept_entry():
    scores = [torch.tensor([[0.1, 0.9]]), torch.tensor([0.5, 0.2, 0.8]), torch.tensor([[0.3], [0.7]])]
    masks = [torch.ones(1, 2), torch.ones(3), torch.ones(2, 1)]
    new = topk_masks(scores, masks, density=3 / 7, scope="global")  # the three largest: 0.9, 0.8, 0.7
    assert [m.tolist() for m in new] == [[[0.0, 1.0]], [0.0, 0.0, 1.0], [[0.0], [1.0]]]
    assert all(n.dtype == m.dtype and n.shape == m.shape for n, m in zip(new, masks))
    local = topk_masks(scores, masks, density=0.5, scope="local")  # round(1), round(1.5)=2, round(1)
    assert [m.tolist() for m in local] == [[[0.0, 1.0]], [1.0, 0.0, 1.0], [[0.0], [1.0]]]
    assert all(n.dtype == m.dtype for n, m in zip(local, masks))
    halves = topk_masks([torch.ones(4)], [torch.ones(4, dtype=torch.float64)], density=0.5, scope="local")
    assert halves[0].dtype == torch.float64


def test_unknown_scope_is_refused():
    with pytest.raises(UsageError, match="unknown scope 'layer'"):
        topk_masks([torch.ones(2)], [torch.ones(2)], density=0.5, scope="layer")


def test_recovery_dead_units_need_only_one_missing_side():
    # 2 inputs -> 3 hidden -> 2 hidden -> 1 output
    w0 = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])  # hidden unit 1: no incoming weight
    w1 = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])  # hidden unit 2 (layer 0): no outgoing weight
    w2 = torch.tensor([[1.0, 1.0]])  # second-layer unit 1 has an outgoing but no incoming weight
    ticket = [torch.tensor([[1, 0], [0, 0], [0, 1]]), torch.tensor([[1, 0, 1], [0, 0, 0]]), torch.tensor([[1, 0]])]
    rec = recovery([w0, w1, w2], ticket)
    assert [row.get("dead_units") for row in rec["layers"]] == [2, 1, None]
    assert [row["kept"] for row in rec["layers"]] == [2, 2, 2]
    assert [row["ticket"] for row in rec["layers"]] == [2, 2, 1]
    assert [row["recall"] for row in rec["layers"]] == [1.0, 0.5, 1.0]
    assert [row["precision"] for row in rec["layers"]] == [1.0, 0.5, 0.5]
    assert rec["recall"] == pytest.approx(4 / 5) and rec["precision"] == pytest.approx(4 / 6)
    assert not rec["collapsed"]  # input 0 -> hidden 0 -> unit 0 -> output


def test_recovery_of_empty_masks_and_an_empty_ticket():
    empty = [torch.zeros(2, 2), torch.zeros(1, 2)]
    rec = recovery(empty, [torch.ones(2, 2), torch.ones(1, 2)])
    assert rec["recall"] == 0.0 and rec["precision"] == 0.0 and rec["collapsed"]
    assert [row["precision"] for row in rec["layers"]] == [0.0, 0.0]
    rec = recovery([torch.ones(2, 2), torch.ones(1, 2)], [torch.zeros(2, 2), torch.zeros(1, 2)])
    assert rec["recall"] == 1.0 and rec["precision"] == 0.0 and not rec["collapsed"]
    assert [row["recall"] for row in rec["layers"]] == [1.0, 1.0]


def test_reachable_follows_kept_paths_only():
    from plantnseek.core.masking import reachable

    w0 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # unit 0 from input 0; unit 1 cut off
    w1 = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])  # out 0 from unit 1 (dead), out 1 from unit 0
    got = reachable([w0, w1])
    assert got[0].tolist() == [True, False] and got[1].tolist() == [False, True, False]
    assert reachable([torch.tensor([[0.0, 0.5]])])[0].tolist() == [True]  # any positive mask entry counts


def test_collapse_looks_at_the_output_layer_of_a_deep_network():
    w0, w1 = torch.ones(3, 2), torch.ones(3, 3)
    cut = torch.zeros(1, 3)  # every hidden unit reachable, but no weight into the output
    assert recovery([w0, w1, cut], [w0, w1, torch.ones(1, 3)])["collapsed"]
    assert not recovery([w0, w1, torch.tensor([[0.0, 0.0, 1.0]])], [w0, w1, torch.ones(1, 3)])["collapsed"]


def test_threshold_selection_ranks_nan_last_like_the_sort():
    from plantnseek.core.masking import select_by_threshold

    scores = torch.tensor([float("nan"), -1.0, -2.0, float("nan"), -3.0])
    alive = torch.ones(5, dtype=torch.bool)
    assert select_by_threshold(scores, alive, 3).tolist() == [False, True, True, False, True]
    new = topk_masks([scores], [torch.ones(5)], density=0.6, scope="global")[0]
    assert new.tolist() == [0, 1, 1, 0, 1]
