"""PHEW (weight-biased random walks, data-free) against independent computations on tiny float64 nets.

Counts against ``round(density * weights)``, paths against a set-based reachability search written
here, step probabilities against ``|w| / sum |w|`` worked out by hand, selection against the
callback's ``ctx.select``.
"""
import math

import pytest
import torch

from plantnseek.core import phew as ph
from plantnseek.core.errors import UsageError
from plantnseek.core.layers import MaskedMLP
from plantnseek.core.phew import PHEW
from plantnseek.core.pruners import SCORERS
from plantnseek.core.scorers import ScoringContext


def net_of(widths, seed=0, weights=None):
    """A float64 masked MLP with seeded normal weights and biases (or the given weight matrices)."""
    g = torch.Generator().manual_seed(seed)
    net = MaskedMLP(widths).double()
    with torch.no_grad():
        for i, layer in enumerate(net.layers):
            w = weights[i] if weights is not None else torch.randn(layer.weight.shape, generator=g, dtype=torch.float64)
            layer.weight.copy_(torch.as_tensor(w, dtype=torch.float64))
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=g, dtype=torch.float64))
    return net


def context(net, density, seed=0, bias=False, budget="global"):
    params = list(net.masked_parameters(bias=bias))
    return ScoringContext(net=net, names=[n for n, _, _ in params], params=[p for _, p, _ in params],
                          masks=[m for _, _, m in params], batches=[], loss=None,
                          generator=torch.Generator().manual_seed(seed), ticket_masks=[],
                          density=density, budget=budget)


def chosen_weights(ctx, scores):
    return [(s > 0) for n, s in zip(ctx.names, scores) if n.endswith(".weight")]


def n_weights(net):
    return sum(layer.weight.numel() for layer in net.layers)


def off_path_edges(chosen):
    """Chosen edges (layer, out, in) not on an input-to-output path of chosen edges: a set-based search
    forward from every input and backward from every output."""
    edges = [{(int(j), int(i)) for j, i in c.nonzero().tolist()} for c in chosen]
    reach = [set(range(chosen[0].shape[1]))]
    for e in edges:
        reach.append({j for j, i in e if i in reach[-1]})
    co = [set(range(chosen[-1].shape[0]))]
    for e in reversed(edges):
        co.insert(0, {i for j, i in e if j in co[0]})
    return [(l, j, i) for l, e in enumerate(edges) for j, i in sorted(e) if i not in reach[l] or j not in co[l + 1]]


CASES = [([3, 4, 2], 0.3), ([5, 8, 8, 4], 0.15), ([6, 7, 5, 7, 3], 0.1), ([10, 12, 12, 12, 12, 2], 0.05),
         ([4, 6, 6, 3], 0.6), ([8, 8, 8], 0.02)]


# -- (a), (b), (f): exact count, complete paths, the callback keeps exactly them -----------------------------
@pytest.mark.parametrize("widths,density", CASES)
def test_exact_count_on_complete_paths_and_select_keeps_them(widths, density):
    net = net_of(widths, seed=len(widths))
    target = round(density * n_weights(net))
    for seed in range(8):
        ctx = context(net, density, seed=seed)
        scores = PHEW().score(ctx)
        chosen = chosen_weights(ctx, scores)
        assert sum(int(c.sum()) for c in chosen) == target
        assert off_path_edges(chosen) == []
        kept = ctx.select(scores, ctx.masks, density)
        assert all(torch.equal(k > 0, c) for k, c in zip(kept, chosen))
        assert all(bool((s[c] > 0).all()) and bool((s[~c] == 0).all()) for s, c in zip(scores, chosen))


def test_registered_and_data_free():
    assert SCORERS["phew"] is PHEW and PHEW.uses_data is False and PHEW.uses_train is False


# -- (c): step probabilities follow |w| ---------------------------------------------------------------------
def frequencies_ok(counts, probs, n):
    """Every cell within 4.5 binomial standard deviations (plus one count) of its exact probability."""
    for key, p in probs.items():
        f = counts.get(key, 0) / n
        assert abs(f - p) <= 4.5 * math.sqrt(p * (1 - p) / n) + 1 / n, (key, f, p)
    assert sum(counts.values()) == n and set(counts) <= set(probs)


def test_forward_walk_steps_with_probability_proportional_to_magnitude():
    # the first walk starts at input 0: hidden unit h with |W0[h,0]| / sum, then output o with
    # |W1[o,h]| / sum over o; hidden unit 2 has only zero outgoing weights: it steps uniformly
    w0 = [[0.01, 5.0], [-1.0, 5.0], [0.01, 5.0]]  # input 0: one edge 100x the others
    w1 = [[1.0, -2.0, 0.0], [-100.0, 1.0, 0.0]]
    net = net_of([2, 3, 2], weights=[w0, w1])
    p_h = [0.01 / 1.02, 1.0 / 1.02, 0.01 / 1.02]
    p_o = [[1 / 101, 100 / 101], [2 / 3, 1 / 3], [1 / 2, 1 / 2]]
    probs = {(h, o): p_h[h] * p_o[h][o] for h in range(3) for o in range(2)}
    n, counts = 3000, {}
    for seed in range(n):
        ctx = context(net, 2 / 12, seed=seed)  # target: exactly the first walk's two edges
        c0, c1 = chosen_weights(ctx, PHEW().score(ctx))
        (h, i), = c0.nonzero().tolist()
        (o, h1), = c1.nonzero().tolist()
        assert i == 0 and h1 == h
        counts[(h, o)] = counts.get((h, o), 0) + 1
    frequencies_ok(counts, probs, n)


def test_backward_walk_steps_with_probability_proportional_to_magnitude():
    # masks force the first (forward) walk to in0 -> h0 -> out1; the second walk goes backward from
    # out0: h in {h1, h2} with |W1[0,h]| / sum, then input i in {in1, in2} with |W0[h,i]| / sum
    w0 = [[1.0, 1.0, 1.0], [7.0, 3.0, -1.0], [7.0, 100.0, 1.0]]
    w1 = [[9.0, -1.0, 100.0], [1.0, 1.0, 1.0]]
    net = net_of([3, 3, 2], weights=[w0, w1])
    net.layers[0].weight_mask[1:, 0] = 0
    net.layers[1].weight_mask[0, 0] = 0
    p_h = {1: 1 / 101, 2: 100 / 101}
    p_i = {1: {1: 3 / 4, 2: 1 / 4}, 2: {1: 100 / 101, 2: 1 / 101}}
    probs = {(h, i): p_h[h] * p_i[h][i] for h in (1, 2) for i in (1, 2)}
    n, counts = 3000, {}
    for seed in range(n):
        ctx = context(net, 4 / 15, seed=seed)  # target 4: both walks, all their edges new
        c0, c1 = chosen_weights(ctx, PHEW().score(ctx))
        assert c0[0, 0] and c1[1, 0]  # the forced first walk
        (h, o), = [(j, 0) for j in (1, 2) if c1[0, j]]
        (i,) = [k for k in (1, 2) if c0[h, k]]
        counts[(h, i)] = counts.get((h, i), 0) + 1
    frequencies_ok(counts, probs, n)


def test_walks_alternate_and_start_at_every_input_and_output_in_turn():
    # 5 inputs, 4 outputs, depth 3: 42 edges need at least 14 walks (7 forward from inputs 0..4, 0, 1 and
    # 7 backward from outputs 0..3, 0..2), so every input and every output has a chosen edge
    net = net_of([5, 8, 8, 4], seed=3)
    for seed in range(10):
        ctx = context(net, 42 / n_weights(net), seed=seed)
        scores = PHEW().score(ctx)
        c0, _, c2 = chosen_weights(ctx, scores)
        assert bool(c0.any(0).all()) and bool(c2.any(1).all())
        # the highest score is the first forward walk's first edge (from input 0); the first backward
        # walk (from output 0) comes next, so output 0 has one of the top-6 edges
        assert int(scores[0].argmax()) % 5 == 0
        top = sorted(((float(s), l, j) for l, sc in enumerate(scores) for (j, i), s in
                      zip(sc.nonzero().tolist(), sc[sc > 0])), reverse=True)[:6]
        assert any(l == 2 and j == 0 for _, l, j in top)


# -- (d): determinism -----------------------------------------------------------------------------------------
def test_same_seed_same_scores_other_seed_other_scores():
    net = net_of([6, 8, 8, 3], seed=1)
    a, b = (PHEW().score(context(net, 0.2, seed=5, bias=True)) for _ in range(2))
    c = PHEW().score(context(net, 0.2, seed=6, bias=True))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


# -- (e): pruned entries stay out -----------------------------------------------------------------------------
def test_masked_entries_are_never_chosen_and_paths_stay_complete():
    for seed in range(12):
        net = net_of([6, 9, 9, 4], seed=seed)
        g = torch.Generator().manual_seed(100 + seed)
        for layer in net.layers:
            layer.weight_mask.copy_((torch.rand(layer.weight.shape, generator=g) > 0.4).double())
        ctx = context(net, 0.12, seed=seed)
        chosen = chosen_weights(ctx, PHEW().score(ctx))
        assert all(not bool((c & (m == 0)).any()) for c, m in zip(chosen, ctx.masks))
        assert sum(int(c.sum()) for c in chosen) == round(0.12 * n_weights(net))
        assert off_path_edges(chosen) == []


def test_a_second_round_stays_inside_the_first():
    net = net_of([6, 10, 10, 3], seed=2)
    ctx = context(net, 0.4, seed=0)
    for m, k in zip(ctx.masks, ctx.select(PHEW().score(ctx), ctx.masks, 0.4)):
        m.copy_(k)
    ctx = context(net, 0.1, seed=1)
    scores = PHEW().score(ctx)
    chosen = chosen_weights(ctx, scores)
    assert all(not bool((c & (m == 0)).any()) for c, m in zip(chosen, ctx.masks))
    assert sum(int(c.sum()) for c in chosen) == round(0.1 * n_weights(net))
    assert off_path_edges(chosen) == []
    assert all(torch.equal(k > 0, c) for k, c in zip(ctx.select(scores, ctx.masks, 0.1), chosen))


# -- biases, budgets, finishing ----------------------------------------------------------------------------
def test_prunable_biases_rank_after_edges_units_on_paths_first():
    net = net_of([6, 8, 8, 3], seed=4)
    for seed in range(5):
        ctx = context(net, 0.2, seed=seed, bias=True)
        scores = PHEW().score(ctx)
        kept = ctx.select(scores, ctx.masks, 0.2)
        w = [k for n, k in zip(ctx.names, kept) if n.endswith(".weight")]
        b = [k for n, k in zip(ctx.names, kept) if n.endswith(".bias")]
        chosen = chosen_weights(ctx, scores)
        assert all(torch.equal(k > 0, c) for k, c in zip(w, chosen))
        assert sum(int(c.sum()) for c in chosen) == round(0.2 * n_weights(net))
        n_total = n_weights(net) + sum(layer.bias.numel() for layer in net.layers)
        assert sum(int(k.sum()) for k in kept) == round(0.2 * n_total)
        fed = [c.any(1) for c in chosen]  # units a chosen edge enters
        assert sum(int(k.sum()) for k in b) <= sum(int(f.sum()) for f in fed)
        assert all(not bool((k.bool() & ~f).any()) for k, f in zip(b, fed))


@pytest.mark.parametrize("budget", ["uniform", "erk", "balanced"])
def test_layer_budgets_keep_only_chosen_edges(budget):
    net = net_of([6, 12, 12, 3], seed=5)
    for seed in range(4):
        ctx = context(net, 0.15, seed=seed, budget=budget)
        scores = PHEW().score(ctx)
        kept = ctx.select(scores, ctx.masks, 0.15)
        counts = [int(k.sum()) for k in kept]
        assert counts == [int(k.sum()) for k in ctx.select([torch.rand(m.shape) for m in ctx.masks], ctx.masks, 0.15)]
        assert all(not bool(((k > 0) & (s == 0)).any()) for k, s in zip(kept, scores))


def test_pieces_disabled_shortest_chains_still_close_paths(monkeypatch):
    monkeypatch.setattr(ph._Growth, "max_piece_walks", 0)
    for widths, density in CASES:
        net = net_of(widths, seed=7)
        for seed in range(4):
            ctx = context(net, density, seed=seed)
            chosen = chosen_weights(ctx, PHEW().score(ctx))
            assert sum(int(c.sum()) for c in chosen) == round(density * n_weights(net))
            assert off_path_edges(chosen) == []


def test_chain_only_bridge_is_found(monkeypatch):
    # alive: in0->h0->g0->o0, in1->h1->g1->o0 and h0->g1. No single edge closes a path once the first
    # walk (in0 -> h0 -> g0 -> o0) is kept; h0 -> g1 -> o0 (two new edges) does.
    ws = [torch.ones(2, 2), torch.ones(2, 2), torch.ones(1, 2)]
    net = net_of([2, 2, 2, 1], weights=ws)
    net.layers[0].weight_mask.copy_(torch.eye(2))
    net.layers[1].weight_mask.copy_(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
    free = [torch.tensor([[False, False], [False, True]]), torch.tensor([[False, False], [True, True]]),
            torch.tensor([[False, True]])]
    reach = [torch.tensor([True, True]), torch.tensor([True, False]), torch.tensor([True, False]), torch.tensor([True])]
    co = [torch.tensor([True, False]), torch.tensor([True, False]), torch.tensor([True, False]), torch.tensor([True])]
    ids = ph._shortest_chain(free, reach, co).tolist()
    assert ids == [4 + 2 * 1 + 0, 8 + 1]  # layer 1 (g1, h0), then layer 2 (o0, g1)
    for pieces in (2000, 0):  # with and without pieces of walks: either way the edges close paths
        monkeypatch.setattr(ph._Growth, "max_piece_walks", pieces)
        for seed in range(6):
            ctx = context(net, 5 / n_weights(net), seed=seed)
            chosen = chosen_weights(ctx, PHEW().score(ctx))
            assert sum(int(c.sum()) for c in chosen) == 5 and off_path_edges(chosen) == []


def test_disconnected_alive_structure_keeps_the_count_and_lets_one_edge_dangle():
    # alive: two disjoint paths in0->h0->o0 and in1->h1->o0; 3 edges cannot all lie on complete paths,
    # so the count wins (documented fallback): exactly one chosen edge is off every complete path
    net = net_of([2, 2, 1], weights=[torch.ones(2, 2), torch.ones(1, 2)])
    net.layers[0].weight_mask.copy_(torch.eye(2))
    for seed in range(4):
        ctx = context(net, 3 / 6, seed=seed)
        chosen = chosen_weights(ctx, PHEW().score(ctx))
        assert sum(int(c.sum()) for c in chosen) == 3 and len(off_path_edges(chosen)) == 1


def test_density_zero_and_everything_live():
    net = net_of([4, 5, 3], seed=8)
    net.layers[0].weight_mask[:, 3] = 0  # input 3 is cut off: its edges are dead
    ctx = context(net, 0.0)
    assert all(bool((s == 0).all()) for s in PHEW().score(ctx))
    ctx = context(net, 1.0)
    chosen = chosen_weights(ctx, PHEW().score(ctx))
    assert [c.tolist() for c in chosen] == [(m > 0).tolist() for m in ctx.masks]


def test_bad_input_is_refused():
    net = net_of([3, 4, 2])
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(UsageError, match="density"):
            PHEW().score(context(net, bad))
    ctx = context(net, 0.5)
    ctx.names, ctx.params, ctx.masks = ctx.names[1:], ctx.params[1:], ctx.masks[1:]
    with pytest.raises(UsageError, match="PHEW needs"):
        PHEW().score(ctx)
