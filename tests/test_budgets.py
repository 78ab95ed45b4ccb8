"""Layer-wise budgets: per-tensor counts checked by hand, against from-the-definition solvers, and in topk_masks."""
import re

import numpy as np
import pytest
import torch

from plantnseek.core import edgepopup as ep
from plantnseek.core.budgets import BUDGETS, keep_counts
from plantnseek.core.errors import UsageError
from plantnseek.core.masking import topk_masks

# MLP widths [3, 4, 2] with prunable biases: w0 [4, 3] (12), b0 (4), w1 [2, 4] (8), b1 (2); N = 26
SIZES, LAYERS, FANS = [12, 4, 8, 2], [0, 0, 1, 1], {0: (3, 4), 1: (4, 2)}
SHAPES = [(4, 3), (4,), (2, 4), (2,)]


def test_budget_names():
    assert BUDGETS == ("global", "uniform", "erk", "balanced", "pyramidal")
    assert keep_counts("global", SIZES, LAYERS, FANS, 0.5) is None


def test_uniform_by_hand():
    # round(0.3 * n): 3.6 -> 4, 1.2 -> 1, 2.4 -> 2, 0.6 -> 1 (total 8, not round(0.3 * 26) = 8 by luck)
    assert keep_counts("uniform", SIZES, LAYERS, FANS, 0.3) == [4, 1, 2, 1]
    # 0.1: 1.2 -> 1, 0.4 -> 0, 0.8 -> 1, 0.2 -> 0: a per-tensor rule, total 2 != round(2.6) = 3
    assert keep_counts("uniform", SIZES, LAYERS, FANS, 0.1) == [1, 0, 1, 0]


def test_erk_by_hand_with_biases():
    # layer 0: raw (3+4)/(3*4) = 7/12, m0 = 16; layer 1: raw (4+2)/(4*2) = 3/4, m1 = 10; target 13.
    # eps = 13 / (7/12*16 + 3/4*10) = 13 / (101/6) = 78/101: d0 = 91/202, d1 = 117/202 (both < 1).
    # real counts: 12*91/202 = 5.406, 4*91/202 = 1.802, 8*117/202 = 4.634, 2*117/202 = 1.158
    # floors 5, 1, 4, 1 (11); the 2 missing go to the largest remainders .802 (b0) and .634 (w1).
    assert keep_counts("erk", SIZES, LAYERS, FANS, 0.5) == [5, 2, 5, 1]


def test_erk_caps_a_layer_and_spreads_the_excess():
    # widths [2, 8, 1], weights only: m0 = 16, raw0 = 10/16; m1 = 8, raw1 = 9/8; N = 24, target 18.
    # eps = 18 / (10 + 9) = 18/19: d1 = 162/152 > 1 -> layer 1 dense (8); eps = (18 - 8) / 10 = 1: d0 = 5/8 -> 10
    assert keep_counts("erk", [16, 8], [0, 1], {0: (2, 8), 1: (8, 1)}, 0.75) == [10, 8]


def test_erk_caps_iteratively():
    # raws: l0 (10,10) -> 1/5 (m 100), l1 (2,2) -> 1 (m 4), l2 (1,4) -> 5/4 (m 4); N = 108, target 29.
    # eps = 29 / (20 + 4 + 5) = 1: d2 = 5/4 > 1 -> cap l2. eps = 25 / 24: d1 = 25/24 > 1 -> cap l1.
    # eps = (29 - 8) / 20 = 21/20: d0 = 21/100 -> 21 of 100.
    fans = {0: (10, 10), 1: (2, 2), 2: (1, 4)}
    assert keep_counts("erk", [100, 4, 4], [0, 1, 2], fans, 29 / 108) == [21, 4, 4]


def test_balanced_by_hand_with_biases():
    # target 13 over 2 layers: x = 6.5 each (< m0 = 16, m1 = 10). d0 = 6.5/16, d1 = 6.5/10.
    # real: 12*6.5/16 = 4.875, 4*6.5/16 = 1.625, 8*.65 = 5.2, 2*.65 = 1.3 -> floors 4, 1, 5, 1 (11);
    # the 2 missing go to .875 (w0) and .625 (b0).
    assert keep_counts("balanced", SIZES, LAYERS, FANS, 0.5) == [5, 2, 5, 1]
    # a layer keeps x entries whatever its size: density 0.2 -> target 5 -> x = 2.5 per layer
    # real: 12*2.5/16 = 1.875, 4*2.5/16 = .625, 8*.25 = 2, 2*.25 = .5 -> floors 1, 0, 2, 0 (3); +1 to .875, .625
    assert keep_counts("balanced", SIZES, LAYERS, FANS, 0.2) == [2, 1, 2, 0]


def test_balanced_caps_and_redistributes():
    # [100, 10], target 33: x = 16.5 > 10 -> layer 1 dense; x = 33 - 10 = 23 for layer 0
    assert keep_counts("balanced", [100, 10], [0, 1], {}, 0.3) == [23, 10]
    # [100, 12, 4], target 30: x = 10 > 4 -> cap l2; x = 26/2 = 13 > 12 -> cap l1; x = 30 - 16 = 14
    assert keep_counts("balanced", [100, 12, 4], [0, 1, 2], {}, 30 / 116) == [14, 12, 4]


def test_largest_remainder_ties_go_to_the_lower_tensor():
    # two layers of 3, target round(0.5 * 6) = 3, x = 1.5 each: remainders .5 and .5 -> the first gets it
    assert keep_counts("balanced", [3, 3], [0, 1], {}, 0.5) == [2, 1]


def test_pyramidal_by_hand():
    # two layers of 10, target 10: 10 r + 10 r^2 = 10 -> r = (sqrt 5 - 1) / 2 = .618; 6.18, 3.82 -> [6, 4]
    assert keep_counts("pyramidal", [10, 10], [0, 1], {}, 0.5) == [6, 4]
    # with biases, target 13: 16 r + 10 r^2 = 13 -> r = (-16 + sqrt 776) / 20 = .59284, r^2 = .35146
    # real: 12r = 7.114, 4r = 2.371, 8r^2 = 2.812, 2r^2 = .703 -> floors 7, 2, 2, 0 (11); +1 to .812, .703
    assert keep_counts("pyramidal", SIZES, LAYERS, FANS, 0.5) == [7, 2, 3, 1]
    # exact r = 0.6: layer 0 (7 + 3 = 10) density .6, layer 1 (21 + 4 = 25) density .36; 6 + 9 = 15 of 35
    # real: 4.2, 1.8, 7.56, 1.44 -> floors 4, 1, 7, 1 (13); +1 to .8 (b0) and .56 (w1)
    assert keep_counts("pyramidal", [7, 3, 21, 4], [0, 0, 1, 1], {}, 15 / 35) == [4, 2, 8, 1]


def _bisect(f, target, lo, hi):
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) < target else (lo, mid)
    return (lo + hi) / 2


def _reference_real_counts(budget, sizes, layers, fans, density):
    """Real-valued counts solved from each rule's definition, by a different route (float search, numpy roots)."""
    m = {}
    for n, l in zip(sizes, layers):
        m[l] = m.get(l, 0) + n
    target = round(density * sum(sizes))
    if budget == "erk":
        raw = {l: (fans[l][0] + fans[l][1]) / (fans[l][0] * fans[l][1]) for l in m}
        eps = _bisect(lambda e: sum(min(1.0, e * raw[l]) * m[l] for l in m), target, 0.0, 1e6)
        dens = {l: min(1.0, eps * raw[l]) for l in m}
    elif budget == "balanced":
        x = _bisect(lambda x: sum(min(x, m[l]) for l in m), target, 0.0, float(max(m.values())))
        dens = {l: min(x, m[l]) / m[l] for l in m}
    else:
        order = sorted(m)
        coeffs = [m[l] for l in reversed(order)] + [-target]  # m_L r^L + ... + m_1 r - target
        r = [z.real for z in np.roots(coeffs) if abs(z.imag) < 1e-9 and -1e-9 <= z.real <= 1 + 1e-9][0]
        dens = {l: r ** (i + 1) for i, l in enumerate(order)}
    return [dens[l] * n for n, l in zip(sizes, layers)], target


@pytest.mark.parametrize("budget", ["erk", "balanced", "pyramidal"])
@pytest.mark.parametrize("widths,bias", [([5, 7, 3], True), ([8, 20, 20, 2], False), ([3, 40, 1], True),
                                         ([30, 6, 6, 6, 1], True)])
@pytest.mark.parametrize("density", [0.0, 0.013, 0.1, 0.37, 0.5, 0.9, 1.0])
def test_totals_are_exact_and_counts_follow_the_definition(budget, widths, bias, density):
    sizes, layers, fans = [], [], {}
    for l, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        sizes += [a * b] + ([b] if bias else [])
        layers += [l] + ([l] if bias else [])
        fans[l] = (a, b)
    counts = keep_counts(budget, sizes, layers, fans, density)
    real, target = _reference_real_counts(budget, sizes, layers, fans, density)
    assert sum(counts) == target
    assert all(0 <= k <= n for k, n in zip(counts, sizes))
    assert all(abs(k - c) < 1 + 1e-6 for k, c in zip(counts, real))
    if density == 1.0:
        assert counts == sizes
    if budget == "pyramidal" and 0 < density < 1:  # densities fall with depth
        weight_density = [k / n for k, n, l in zip(counts, sizes, layers) if n == fans[l][0] * fans[l][1]]
        real_density = [c / n for c, n, l in zip(real, sizes, layers) if n == fans[l][0] * fans[l][1]]
        assert all(a > b for a, b in zip(real_density, real_density[1:]))
        assert len(weight_density) == len(widths) - 1


def _topk_by_hand(score, alive, k):
    """Positions of the k highest alive scores (ties to the lower index), by plain Python sorting."""
    flat, ok = score.reshape(-1).tolist(), alive.reshape(-1).tolist()
    ranked = sorted((i for i in range(len(flat)) if ok[i] > 0), key=lambda i: (-flat[i], i))
    return sorted(ranked[:k])


@pytest.mark.parametrize("budget,expected", [("erk", [5, 2, 5, 1]), ("balanced", [5, 2, 5, 1]),
                                             ("pyramidal", [7, 2, 3, 1]), ("uniform", [6, 2, 4, 1])])
def test_topk_masks_keeps_the_counts_and_the_best_of_each_tensor(budget, expected):
    g = torch.Generator().manual_seed(3)
    scores = [torch.rand(s, generator=g, dtype=torch.float64) for s in SHAPES]
    masks = [torch.ones(s, dtype=torch.float64) for s in SHAPES]
    new = topk_masks(scores, masks, 0.5, budget, layers=LAYERS)
    assert [int(m.sum()) for m in new] == expected  # uniform: round(6), round(2), round(4), round(1)
    for s, m, k in zip(scores, new, expected):
        assert m.shape == s.shape and m.dtype == torch.float64
        assert m.reshape(-1).nonzero().flatten().tolist() == _topk_by_hand(s, torch.ones_like(s), k)


def test_uniform_matches_the_old_local_rule_on_random_scores():
    g = torch.Generator().manual_seed(0)
    shapes = [(9, 5), (9,), (4, 9), (4,)]
    for density in (0.05, 0.3, 0.5, 0.77):
        scores = [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]
        masks = [(torch.rand(s, generator=g) > 0.2).double() for s in shapes]
        uniform = topk_masks(scores, masks, density, "uniform", layers=[0, 0, 1, 1])
        local = topk_masks(scores, masks, density, "local")
        for s, m, u, lo in zip(scores, masks, uniform, local):
            k = round(density * s.numel())  # the old local rule: round(density * n_t), capped by the alive
            assert u.reshape(-1).nonzero().flatten().tolist() == _topk_by_hand(s, m, k)
            assert torch.equal(u, lo)


@pytest.mark.parametrize("budget", ["erk", "balanced", "pyramidal", "uniform"])
def test_pruned_entries_are_never_revived(budget):
    g = torch.Generator().manual_seed(1)
    masks = [(torch.rand(s, generator=g) > 0.5).double() for s in SHAPES]
    # the pruned entries score highest: any revival would show
    scores = [torch.rand(s, generator=g, dtype=torch.float64) + 10 * (1 - m) for s, m in zip(SHAPES, masks)]
    counts = keep_counts(budget, SIZES, LAYERS, FANS, 0.4)
    new = topk_masks(scores, masks, 0.4, budget, layers=LAYERS)
    for s, m, n, k in zip(scores, masks, new, counts):
        assert bool(((n > 0) & (m == 0)).sum() == 0)
        assert int(n.sum()) == min(k, int(m.sum()))
        assert n.reshape(-1).nonzero().flatten().tolist() == _topk_by_hand(s, m, k)


def test_edgepopup_selector_uses_the_budget_counts():
    alive = [torch.ones(s, dtype=torch.bool) for s in SHAPES]
    magnitude = torch.rand(sum(SIZES), generator=torch.Generator().manual_seed(5))
    for budget, expected in (("erk", [5, 2, 5, 1]), ("balanced", [5, 2, 5, 1]), ("pyramidal", [7, 2, 3, 1]),
                             ("uniform", [6, 2, 4, 1]), ("local", [6, 2, 4, 1])):
        hard = ep.Selector(alive, budget, LAYERS).hard(magnitude, 0.5)
        parts = hard.split(SIZES)
        assert [int(p.sum()) for p in parts] == expected
        for p, s, k in zip(parts, magnitude.split(SIZES), expected):
            assert p.nonzero().flatten().tolist() == _topk_by_hand(s, torch.ones_like(s), k)
    assert int(ep.Selector(alive, "global").hard(magnitude, 0.5).sum()) == 13


def test_bad_budgets_are_refused():
    with pytest.raises(UsageError, match=r"^unknown budget 'x'; allowed: global, uniform, erk, balanced, pyramidal$"):
        keep_counts("x", SIZES, LAYERS, FANS, 0.5)
    with pytest.raises(UsageError, match="unknown budget 'local'"):
        keep_counts("local", SIZES, LAYERS, FANS, 0.5)  # the alias belongs to topk_masks' scope
    with pytest.raises(UsageError, match="unknown scope 'x'"):
        topk_masks([torch.ones(2)], [torch.ones(2)], 0.5, "x", layers=[0])
    with pytest.raises(UsageError, match="unknown budget 'x'"):
        ep.Selector([torch.ones(2, dtype=torch.bool)], "x", [0])
    for budget in ("erk", "balanced", "pyramidal"):
        with pytest.raises(UsageError, match=f"budget '{budget}'.*layers"):
            topk_masks([torch.ones(2, 2)], [torch.ones(2, 2)], 0.5, budget)
        with pytest.raises(UsageError, match=f"budget '{budget}'.*layers"):
            ep.Selector([torch.ones(2, 2, dtype=torch.bool)], budget)
        with pytest.raises(UsageError, match="density 1.5"):
            keep_counts(budget, SIZES, LAYERS, FANS, 1.5)  # 39 of 26: cannot be met
        with pytest.raises(UsageError, match="density -0.5"):
            keep_counts(budget, SIZES, LAYERS, FANS, -0.5)
    with pytest.raises(UsageError, match="fans"):
        keep_counts("erk", SIZES, LAYERS, {0: (3, 4)}, 0.5)
    with pytest.raises(UsageError, match="layer"):
        keep_counts("balanced", SIZES, [0, 1], FANS, 0.5)


def test_uniform_at_density_one_keeps_every_entry_and_refuses_a_density_above():
    assert keep_counts("uniform", SIZES, LAYERS, FANS, 1.0) == SIZES
    assert keep_counts("uniform", SIZES, LAYERS, FANS, 0.0) == [0, 0, 0, 0]
    with pytest.raises(UsageError, match=r"^density 1\.5 is invalid for budget 'uniform'; allowed: \[0, 1\]$"):
        keep_counts("uniform", SIZES, LAYERS, FANS, 1.5)  # round(1.5 * 12) = 18 of 12


@pytest.mark.parametrize("budget", ["uniform", "erk", "balanced", "pyramidal"])
@pytest.mark.parametrize("density", [float("nan"), float("inf"), "0.5", None])
def test_a_density_that_is_not_a_finite_number_is_refused(budget, density):
    message = rf"^density {re.escape(repr(density))} is invalid; it must be a finite number in \[0, 1\]$"
    with pytest.raises(UsageError, match=message):
        keep_counts(budget, SIZES, LAYERS, FANS, density)


@pytest.mark.parametrize("budget", ["uniform", "erk", "balanced", "pyramidal"])
def test_no_prunable_tensor_keeps_nothing(budget):
    # a network whose prunable set is empty: nothing to share out, at any density
    assert keep_counts(budget, [], [], {}, 0.5) == []


def test_pyramidal_gives_a_single_kept_entry_to_the_largest_real_count():
    # one layer of 2 + 10 entries, target round(12 / 12) = 1: 12 r = 1, so r = 1/12 and the real counts
    # are 2/12 and 10/12; floors 0, 0 and the one entry goes to the larger remainder, the second tensor
    assert keep_counts("pyramidal", [2, 10], [0, 0], {}, 1 / 12) == [0, 1]
    # layers of 2 (depth 1) and 10 (depth 2), target 1: 2 r + 10 r^2 = 1 -> r = (-2 + sqrt 44) / 20 = .2317,
    # real counts .463 and 10 r^2 = .537: the deeper, larger layer gets it
    assert keep_counts("pyramidal", [2, 10], [0, 1], {}, 1 / 12) == [0, 1]


@pytest.mark.parametrize("budget", ["erk", "balanced", "pyramidal"])
def test_a_layer_wise_budget_without_the_layers_is_refused_with_the_whole_message(budget):
    message = rf"^budget '{budget}' shares the kept parameters among layers: give layers= \(the layer index of each tensor\)$"
    with pytest.raises(UsageError, match=message):
        topk_masks([torch.ones(2, 2)], [torch.ones(2, 2)], 0.5, budget)


def test_an_unknown_scope_is_refused_with_every_allowed_name():
    with pytest.raises(UsageError, match=r"^unknown scope 'x'; allowed: local, global, uniform, erk, balanced, pyramidal$"):
        topk_masks([torch.ones(2)], [torch.ones(2)], 0.5, "x", layers=[0])
