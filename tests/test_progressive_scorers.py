"""Iterative SNIP, FORCE and ProsPr checked against independent computations on tiny float64 MLPs.

The references never call the scorers' code: an explicit ``F.linear``/ReLU forward on plain weight tensors,
sensitivities and meta-gradients by central finite differences in the masks (or hand-written backprop where
pruned biases put ReLU kinks at the evaluation point), rounds written out with
a plain sort on a flat vector, and ProsPr's inner SGD unrolled by hand (inner gradients by first-order
autograd on detached leaves, so everything the scorer gets from second-order autograd comes from the
finite differences here).
"""
import math

import pytest
import torch
import torch.nn.functional as F

from plantnseek.core.errors import UsageError
from plantnseek.core.layers import MaskedMLP
from plantnseek.core.progressive import FORCE, IterSNIP, progressive_densities
from plantnseek.core.pruning_step import make_scorer
from plantnseek.core.prospr import ProsPr
from plantnseek.core.pruners import SCORERS
from plantnseek.core.scorers import ScoringContext

H = 1e-6


def tiny_net(widths, seed=0):
    g = torch.Generator().manual_seed(seed)
    net = MaskedMLP(widths).double()
    with torch.no_grad():
        for layer in net.layers:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g, dtype=torch.float64))
            layer.bias.copy_(0.3 * torch.randn(layer.bias.shape, generator=g, dtype=torch.float64))
    return net


def data(n_batches=2, n=7, d_in=3, classes=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, d_in, generator=g, dtype=torch.float64),
             torch.randint(classes, (n,), generator=g)) for _ in range(n_batches)]


def context(net, batches, density, bias=True, budget="global"):
    params = list(net.masked_parameters(bias=bias))
    return ScoringContext(net=net, names=[n for n, _, _ in params], params=[p for _, p, _ in params],
                          masks=[m for _, _, m in params], batches=list(batches), loss=F.cross_entropy,
                          generator=torch.Generator().manual_seed(0), ticket_masks=[], density=density,
                          budget=budget)


# -- the independent reference -------------------------------------------------------------------------
def explicit(net):
    """Plain copies: [W0, b0, W1, b1, ...] and their masks [M_W0, M_b0, ...]."""
    ps = [t.detach().clone() for l in net.layers for t in (l.weight, l.bias)]
    ms = [t.detach().clone() for l in net.layers for t in (l.weight_mask, l.bias_mask)]
    return ps, ms


def mlp(ps, ms, x):
    h = x
    n = len(ps) // 2
    for i in range(n):
        h = F.linear(h, ps[2 * i] * ms[2 * i], ps[2 * i + 1] * ms[2 * i + 1])
        if i < n - 1:
            h = torch.relu(h)
    return h


def prunable(ms, bias):
    """Indices (into the explicit lists) of the prunable tensors, in ``masked_parameters`` order."""
    return list(range(len(ms))) if bias else list(range(0, len(ms), 2))


def fd_grad(f, ms, idx):
    """Central differences of ``f(ms)`` in every entry of the tensors ``idx`` of ``ms``."""
    out = []
    for i in idx:
        g = torch.zeros_like(ms[i])
        flat = g.view(-1)
        for j in range(ms[i].numel()):
            up = [m.clone() for m in ms]
            down = [m.clone() for m in ms]
            up[i].view(-1)[j] += H
            down[i].view(-1)[j] -= H
            flat[j] = (f(up) - f(down)) / (2 * H)
        out.append(g)
    return out


def backprop_mask_grads(ps, ms, batches):
    """dL/dm for every mask by hand-written backpropagation (no autograd), summed over batches.

    Where the masks zero every input of a unit (a pruned bias too), its pre-activation is exactly 0 and the
    loss has a kink in the masks: finite differences give half a one-sided slope there, so this follows
    autograd's convention relu'(0) = 0 explicitly: ``delta = (delta_next @ W) * (z > 0)``.
    """
    n = len(ps) // 2
    out = [torch.zeros_like(m) for m in ms]
    for x, y in batches:
        acts, zs = [x], []
        for l in range(n):
            z = acts[-1] @ (ps[2 * l] * ms[2 * l]).T + ps[2 * l + 1] * ms[2 * l + 1]
            zs.append(z)
            acts.append(torch.clamp(z, min=0) if l < n - 1 else z)
        p = torch.exp(zs[-1] - zs[-1].max(dim=1, keepdim=True).values)
        p = p / p.sum(dim=1, keepdim=True)
        delta = (p - F.one_hot(y, p.shape[1]).double()) / len(y)  # d mean cross-entropy / d logits
        for l in reversed(range(n)):
            out[2 * l] += ps[2 * l] * (delta.T @ acts[l])  # dL/dm = theta * dL/d(theta_bar)
            out[2 * l + 1] += ps[2 * l + 1] * delta.sum(dim=0)
            if l:
                delta = (delta @ (ps[2 * l] * ms[2 * l])) * (zs[l - 1] > 0).double()
    return out


def summed_loss(ps, batches):
    return lambda ms: float(sum(F.cross_entropy(mlp(ps, ms, x), y) for x, y in batches))


def topk_mask(scores, alive, k):
    """Flat 0/1 mask of the ``k`` largest ``scores`` among ``alive``, exact ties to the lower index (a plain
    Python sort). Asserts that the boundary is an exact tie or a gap far above the finite-difference error,
    so that the reference's choice is well posed."""
    values = [float(v) for v in scores]
    order = sorted((i for i in range(len(values)) if alive[i] > 0), key=lambda i: (-values[i], i))
    if k < len(order):
        gap = values[order[k - 1]] - values[order[k]] if k else math.inf
        assert gap == 0 or gap > 1e-5, "near-tie at the selection boundary: pick another seed"
    out = torch.zeros_like(scores)
    out[order[:k]] = 1.0
    return out


def reference_rounds(net, batches, density, rounds, revive, bias=True, budget="global"):
    """The rounds from the definitions: per round the mask sensitivities (finite differences; hand-written
    backprop when biases are prunable), then a top-k by plain sort."""
    ps, ms = explicit(net)
    idx = prunable(ms, bias)
    entry = [ms[i].clone() for i in idx]
    n = sum(m.numel() for m in entry)
    d0 = sum(float(m.sum()) for m in entry) / n
    current, history = [m.clone() for m in entry], []
    for t in range(1, rounds + 1):
        d_t = d0 ** (1 - t / rounds) * density ** (t / rounds)
        full = list(ms)
        for i, m in zip(idx, current):
            full[i] = m
        if bias:  # pruned biases let pre-activations be exactly 0 (ReLU kinks): backprop by hand
            g = [backprop_mask_grads(ps, full, batches)[i] for i in idx]
        else:  # every hidden unit keeps its (non-zero) bias: the loss is smooth in the masks
            g = fd_grad(summed_loss(ps, batches), full, idx)
        scores = [gi.abs() if revive else (m * gi).abs() for gi, m in zip(g, current)]
        pool = entry if revive else current
        if budget == "global":
            flat = topk_mask(torch.cat([s.reshape(-1) for s in scores]), torch.cat([p.reshape(-1) for p in pool]),
                             round(d_t * n))
            current = list(torch.split(flat, [m.numel() for m in entry]))
            current = [c.reshape(m.shape) for c, m in zip(current, entry)]
        else:  # uniform: the same count share in every tensor
            current = [topk_mask(s.reshape(-1), p.reshape(-1), round(d_t * s.numel())).reshape(s.shape)
                       for s, p in zip(scores, pool)]
        history.append([c.clone() for c in current])
    return history, scores, entry


def expected_returned(scores, final, entry):
    s = [torch.where(e > 0, x, torch.zeros_like(x)) for x, e in zip(scores, entry)]
    top = max(float(x.max()) for x in s)
    return [x / top + 2.0 * f for x, f in zip(s, final)]


# -- Iterative SNIP and FORCE ----------------------------------------------------------------------------
def test_schedule_is_geometric_from_the_entry_density():
    assert progressive_densities(1.0, 0.01, 4) == pytest.approx([0.01 ** 0.25, 0.1, 0.01 ** 0.75, 0.01], rel=1e-15)
    d = progressive_densities(0.5, 0.02, 2)
    assert d[0] == pytest.approx(0.1, rel=1e-15) and d[1] == 0.02
    assert progressive_densities(0.3, 0.07, 1) == [0.07]


def test_hand_backprop_reference_agrees_with_finite_differences_where_smooth():
    net = tiny_net([3, 5, 4, 3], seed=7)
    with torch.no_grad():
        net.layers[1].weight_mask[2] = 0  # a unit keeps only its bias: still smooth
        net.layers[0].weight_mask[0, 1] = 0
    batches = data(n_batches=2)
    ps, ms = explicit(net)
    for b, f in zip(backprop_mask_grads(ps, ms, batches), fd_grad(summed_loss(ps, batches), ms, range(len(ms)))):
        torch.testing.assert_close(b, f, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("cls", [IterSNIP, FORCE])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("budget", ["global", "uniform"])
def test_rounds_masks_and_scores_match_the_definition(cls, bias, budget):
    net = tiny_net([3, 5, 4, 3], seed=7)
    batches = data(n_batches=2)
    scorer = cls(rounds=3)
    ctx = context(net, batches, 0.3, bias=bias, budget=budget)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    scores = scorer.score(ctx)
    history, last, entry = reference_rounds(net, batches, 0.3, 3, cls.revive, bias=bias, budget=budget)
    assert len(scorer.round_masks) == 3
    for got, want in zip(scorer.round_masks, history):
        assert [g.tolist() for g in got] == [w.bool().tolist() for w in want]
    for s, e in zip(scores, expected_returned(last, history[-1], entry)):
        assert s.dtype == torch.float64
        torch.testing.assert_close(s, e, rtol=1e-6, atol=1e-7)
    # the callback's own top-k at ctx.density reproduces the final internal mask
    assert [m.bool().tolist() for m in ctx.select(scores, ctx.masks, ctx.density)] == \
        [m.tolist() for m in scorer.round_masks[-1]]
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # the net is untouched


@pytest.mark.parametrize("cls", [IterSNIP, FORCE])
def test_starts_from_the_current_mask(cls):
    net = tiny_net([3, 6, 3], seed=2)
    with torch.no_grad():  # a third of the first layer already pruned
        net.layers[0].weight_mask.view(-1)[::3] = 0
    batches = data(n_batches=2, seed=5)
    scorer = cls(rounds=2)
    ctx = context(net, batches, 0.25, bias=False)
    scores = scorer.score(ctx)
    n, alive = 36, 36 - 6
    assert scorer.round_densities == pytest.approx([math.sqrt(alive / n * 0.25), 0.25], rel=1e-14)
    history, _, entry = reference_rounds(net, batches, 0.25, 2, cls.revive, bias=False)
    for got, want in zip(scorer.round_masks, history):
        assert [g.tolist() for g in got] == [w.bool().tolist() for w in want]
        assert all(not (g & (e == 0)).any() for g, e in zip(got, entry))  # never outside the entry mask
    assert sum(int(m.sum()) for m in scorer.round_masks[0]) == round(scorer.round_densities[0] * n)
    assert [m.bool().tolist() for m in ctx.select(scores, ctx.masks, 0.25)] == \
        [m.tolist() for m in scorer.round_masks[-1]]


REVIVAL = dict(widths=[3, 6, 5, 3], seed=4, data_seed=3, density=0.15, rounds=4)


def revived(history):
    """Entries kept in some round after being pruned in an earlier one."""
    out = 0
    for t in range(1, len(history)):
        for prev, cur in zip(history[t - 1], history[t]):
            out += int((cur.bool() & ~prev.bool()).sum())
    return out


def test_force_revives_an_entry_pruned_earlier_and_itersnip_never_does():
    c = REVIVAL
    net = tiny_net(c["widths"], seed=c["seed"])
    batches = data(n_batches=2, seed=c["data_seed"])
    force = FORCE(rounds=c["rounds"])
    force.score(context(net, batches, c["density"], bias=False))
    history, _, _ = reference_rounds(net, batches, c["density"], c["rounds"], True, bias=False)
    assert revived(history) > 0  # the constructed case: the definition revives
    assert revived(force.round_masks) == revived(history)
    snip = IterSNIP(rounds=c["rounds"])
    snip.score(context(net, batches, c["density"], bias=False))
    assert revived(snip.round_masks) == 0
    for t in range(1, c["rounds"]):
        for prev, cur in zip(snip.round_masks[t - 1], snip.round_masks[t]):
            assert not (cur & ~prev).any()


@pytest.mark.parametrize("cls", [IterSNIP, FORCE])
@pytest.mark.parametrize("density", [0.05, 0.5, 1.0])
@pytest.mark.parametrize("budget", ["global", "uniform"])
def test_callback_topk_reproduces_the_final_internal_mask(cls, density, budget):
    net = tiny_net([3, 8, 6, 3], seed=11)
    batches = data(n_batches=3, seed=2)
    scorer = cls(rounds=5)
    ctx = context(net, batches, density, budget=budget)
    scores = scorer.score(ctx)
    final = scorer.round_masks[-1]
    assert [m.bool().tolist() for m in ctx.select(scores, ctx.masks, density)] == [m.tolist() for m in final]
    on = torch.cat([s[f] for s, f in zip(scores, final)])
    off = torch.cat([s[~f] for s, f in zip(scores, final)])
    if off.numel() and on.numel():
        assert float(on.min()) > float(off.max())


# -- ProsPr ----------------------------------------------------------------------------------------------
def unrolled_loss(ps, batches, steps, lr):
    """L(c * theta_M; batch M) after ``steps`` hand-written SGD steps on every weight and bias, as a function of c."""
    def f(ms):
        p = [t.clone() for t in ps]
        for k in range(steps):
            x, y = batches[k % len(batches)]
            leaves = [t.detach().requires_grad_(True) for t in p]
            grads = torch.autograd.grad(F.cross_entropy(mlp(leaves, ms, x), y), leaves)
            p = [(t - lr * g).detach() for t, g in zip(leaves, grads)]
        x, y = batches[steps % len(batches)]
        return float(F.cross_entropy(mlp(p, ms, x), y))
    return f


@pytest.mark.parametrize("steps", [0, 1, 2])
@pytest.mark.parametrize("bias", [False, True])
def test_prospr_is_the_meta_gradient_by_finite_differences(steps, bias):
    net = tiny_net([3, 5, 4, 3], seed=3)
    with torch.no_grad():  # a partly pruned network: pruned entries are masked in every step
        net.layers[1].weight_mask[1, 2] = 0
        net.layers[0].weight_mask[0, 0] = 0
    batches = data(n_batches=2, seed=6)
    lr = 0.5
    scores = ProsPr(steps=steps, lr=lr).score(context(net, batches, 0.5, bias=bias))
    ps, ms = explicit(net)
    want = fd_grad(unrolled_loss(ps, batches, steps, lr), ms, prunable(ms, bias))
    assert len(scores) == len(want)
    for s, w in zip(scores, want):
        assert s.dtype == torch.float64
        torch.testing.assert_close(s, w.abs(), rtol=1e-6, atol=1e-9)
    assert float(scores[2 if bias else 1][1, 2]) > 0  # a pruned entry still has a meta-gradient


def test_prospr_steps_change_the_scores_and_use_later_batches():
    net = tiny_net([3, 5, 3], seed=1)
    batches = data(n_batches=3, seed=2)
    s0 = torch.cat([s.flatten() for s in ProsPr(steps=0).score(context(net, batches, 0.5))])
    s2 = torch.cat([s.flatten() for s in ProsPr(steps=2, lr=0.5).score(context(net, batches, 0.5))])
    assert not torch.allclose(s0, s2, rtol=1e-2)
    # steps=0 is |dL/dc| on the first batch only
    ps, ms = explicit(net)
    want = torch.cat([g.flatten() for g in fd_grad(unrolled_loss(ps, batches[:1], 0, 0.1), ms, prunable(ms, True))])
    torch.testing.assert_close(s0, want.abs(), rtol=1e-6, atol=1e-9)
    # with 2 steps the final loss is on the third batch: changing it changes the scores
    other = batches[:2] + [data(n_batches=1, seed=9)[0]]
    s2b = torch.cat([s.flatten() for s in ProsPr(steps=2, lr=0.5).score(context(net, other, 0.5))])
    assert not torch.allclose(s2, s2b, rtol=1e-2)


# -- options and registration ----------------------------------------------------------------------------
def test_registered_with_defaults_as_attributes():
    assert SCORERS["itersnip"] is IterSNIP and SCORERS["force"] is FORCE and SCORERS["prospr"] is ProsPr
    for name in ("itersnip", "force", "prospr"):
        scorer = make_scorer(name)
        assert scorer.name == name and scorer.uses_data and not scorer.uses_train
    assert IterSNIP().rounds == 10 and FORCE(rounds=4).rounds == 4
    p = ProsPr(steps=5, lr=0.2)
    assert (ProsPr().steps, ProsPr().lr, p.steps, p.lr) == (3, 0.01, 5, 0.2)


@pytest.mark.parametrize("make", [
    lambda: IterSNIP(rounds=0), lambda: FORCE(rounds=2.5), lambda: FORCE(rounds=True), lambda: IterSNIP(rounds="3"),
    lambda: ProsPr(steps=-1), lambda: ProsPr(steps=1.0), lambda: ProsPr(lr=0), lambda: ProsPr(lr=-0.1),
    lambda: ProsPr(lr=float("nan")), lambda: ProsPr(lr="0.1"),
])
def test_bad_options_are_refused(make):
    with pytest.raises(UsageError) as e:
        make()
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("cls", [IterSNIP, FORCE, ProsPr])
def test_no_batches_is_refused(cls):
    with pytest.raises(UsageError, match="no batches"):
        cls().score(context(tiny_net([3, 4, 3]), [], 0.5))


def test_prospr_default_is_stable_on_the_regression_task():
    """The paper-size relu network (depth 5, width 100, MSE about 7 at the planted initialisation): three
    inner steps at the default lr give finite scores (at the authors' 0.1 they diverged in the methods sweep)."""
    import sys

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from helpers import tiny

    model, dm = tiny("relu", depth=5, width=100, seed=4, n_samples=2000)
    dm.setup("fit")
    params = list(model.run.net.masked_parameters(bias=True))
    ctx = ScoringContext(net=model.run.net, names=[n for n, _, _ in params], params=[p for _, p, _ in params],
                         masks=[m for _, _, m in params], batches=list(dm.prune_dataloader()), loss=model.run.loss,
                         generator=torch.Generator().manual_seed(0), ticket_masks=[])
    assert all(torch.isfinite(s).all() for s in ProsPr().score(ctx))
    assert not all(torch.isfinite(s).all() for s in ProsPr(lr=0.1).score(ctx))
