"""Each built-in score checked against an independent computation on tiny networks.

Nothing here calls the scorer's own code path twice: SynFlow against the product of |w| along a chain
and an explicit path enumeration, SNIP against central finite differences of the loss in the masks,
GraSP against finite differences of the gradient (Hg), magnitude and random by definition.
"""
import itertools

import pytest
import torch
import torch.nn.functional as F

from plantnseek.callbacks import SCORERS, ScoringContext
from plantnseek.core.scorers import SNIP, GraSP, Mag, Rand, SynFlow, Ticket
from plantnseek.core.layers import MaskedMLP


def tiny_net(widths, seed=0, bias_scale=0.3):
    """A float64 masked MLP with seeded weights and non-zero biases."""
    g = torch.Generator().manual_seed(seed)
    net = MaskedMLP(widths).double()
    with torch.no_grad():
        for layer in net.layers:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g, dtype=torch.float64))
            layer.bias.copy_(bias_scale * torch.randn(layer.bias.shape, generator=g, dtype=torch.float64))
    return net


def context(net, bias=True, batches=(), loss=F.cross_entropy, seed=3, ticket=None):
    params = list(net.masked_parameters(bias=bias))
    return ScoringContext(net=net, names=[n for n, _, _ in params], params=[p for _, p, _ in params],
                          masks=[m for _, _, m in params], batches=list(batches), loss=loss,
                          generator=torch.Generator().manual_seed(seed),
                          ticket_masks=ticket if ticket is not None else [])


def data(n_batches=2, n=7, d_in=3, classes=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, d_in, generator=g, dtype=torch.float64),
             torch.randint(classes, (n,), generator=g)) for _ in range(n_batches)]


def total_loss(net, batches, loss, scale=1.0):
    return sum(loss(net(x) / scale, y) for x, y in batches)


# -- definitions ---------------------------------------------------------------------------------------
def test_mag_is_the_absolute_value():
    net = tiny_net([3, 4, 2])
    scores = Mag().score(context(net))
    expected = [net.layers[0].weight, net.layers[0].bias, net.layers[1].weight, net.layers[1].bias]
    for s, p in zip(scores, expected):
        assert s.dtype == torch.float64
        assert torch.equal(s, p.detach().abs())
    assert (torch.cat([s.flatten() for s in scores]) > 0).all()


def test_rand_is_the_seeded_generators_normal_draws_in_order():
    net = tiny_net([3, 4, 2])
    scores = Rand().score(context(net, seed=11))
    g = torch.Generator().manual_seed(11)
    shapes = [(4, 3), (4,), (2, 4), (2,)]
    for s, shape in zip(scores, shapes):
        assert torch.equal(s, torch.randn(shape, generator=g, dtype=torch.float64))
    other = Rand().score(context(net, seed=12))
    assert not torch.equal(scores[0], other[0])


def test_ticket_scores_are_the_ticket_masks():
    net = tiny_net([3, 4, 2])
    ticket = [torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 0], [1, 1, 1]], dtype=torch.bool),
              torch.tensor([1, 0, 0, 1], dtype=torch.bool)]
    scores = Ticket().score(context(net, bias=True, ticket=ticket))
    assert [s.tolist() for s in scores] == [t.double().tolist() for t in ticket]


def test_data_use_flags():
    assert {n for n, cls in SCORERS.items() if cls.uses_data} == {"snip", "grasp", "itersnip", "force", "prospr"}


# -- SynFlow -------------------------------------------------------------------------------------------
def test_synflow_on_a_chain_is_the_product_of_magnitudes_along_the_path():
    w = [-0.5, 2.0, -3.0]
    b = [0.25, -0.75, 1.5]
    net = MaskedMLP([1, 1, 1, 1])
    with torch.no_grad():
        for layer, wi, bi in zip(net.layers, w, b):
            layer.weight.fill_(wi)
            layer.bias.fill_(bi)
    s = [float(t) for t in SynFlow().score(context(net))]
    a = [abs(v) for v in w]
    c = [abs(v) for v in b]
    # R = a3 (a2 (a1 + c1) + c2) + c3 on the all-ones input; score = |theta dR/dtheta|
    expected = [a[0] * a[1] * a[2], c[0] * a[1] * a[2],
                a[1] * (a[0] + c[0]) * a[2], c[1] * a[2],
                a[2] * (a[1] * (a[0] + c[0]) + c[1]), c[2]]
    assert s == pytest.approx(expected, rel=1e-12)
    # a pruned weight cuts every path through it
    net.layers[1].weight_mask.zero_()
    s = [float(t) for t in SynFlow().score(context(net))]
    assert s == pytest.approx([0, 0, 0, c[1] * a[2], a[2] * c[1], c[2]], abs=1e-15)


def path_scores(weights, biases):
    """Score of every weight and bias as the sum, over the input-to-output paths through it, of the
    product of |entries| on the path; a bias starts a path at its unit (enumerated explicitly)."""
    n_layers = len(weights)
    w_scores = [torch.zeros_like(w) for w in weights]
    b_scores = [torch.zeros_like(b) for b in biases]
    for start in range(n_layers):
        # a path starts at input i (start 0, through W_0) or at a bias of layer `start`
        sources = [("in", i) for i in range(weights[0].shape[1])] if start == 0 else []
        sources += [("bias", j) for j in range(biases[start].shape[0])]
        for kind, first in sources:
            for rest in itertools.product(*[range(weights[l].shape[0]) for l in range(start, n_layers)]):
                units = list(rest)
                if kind == "bias" and units[0] != first:
                    continue
                entries = []
                if kind == "in":
                    entries.append(("w", 0, (units[0], first)))
                else:
                    entries.append(("b", start, (units[0],)))
                for l in range(start + 1, n_layers):
                    entries.append(("w", l, (units[l - start], units[l - start - 1])))
                value = 1.0
                for typ, l, idx in entries:
                    value *= float(abs((weights if typ == "w" else biases)[l][idx]))
                for typ, l, idx in entries:
                    (w_scores if typ == "w" else b_scores)[l][idx] += value
    return w_scores, b_scores


def test_synflow_on_a_dense_net_equals_explicit_path_enumeration():
    net = tiny_net([3, 4, 3, 2], seed=5)
    net.layers[1].weight_mask[2, 1] = 0  # a pruned weight: no path through it counts
    weights = [(l.weight * l.weight_mask).detach() for l in net.layers]
    biases = [l.bias.detach() for l in net.layers]
    w_exp, b_exp = path_scores(weights, biases)
    scores = SynFlow().score(context(net, bias=True))
    for i in range(3):
        torch.testing.assert_close(scores[2 * i], w_exp[i], rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(scores[2 * i + 1], b_exp[i], rtol=1e-12, atol=1e-14)
    assert float(scores[2][2, 1]) == 0.0


def test_synflow_does_not_change_the_network():
    net = tiny_net([3, 4, 2], seed=2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    SynFlow().score(context(net))
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


# -- SNIP ----------------------------------------------------------------------------------------------
def fd_mask_grads(net, batches, loss, bias=True, h=1e-6):
    out = []
    for _, _, m in net.masked_parameters(bias=bias):
        g = torch.zeros_like(m)
        for idx in itertools.product(*[range(s) for s in m.shape]):
            orig = float(m[idx])
            with torch.no_grad():
                m[idx] = orig + h
                up = float(total_loss(net, batches, loss))
                m[idx] = orig - h
                down = float(total_loss(net, batches, loss))
                m[idx] = orig
            g[idx] = (up - down) / (2 * h)
        out.append(g)
    return out


@pytest.mark.parametrize("bias", [False, True])
def test_snip_is_the_normalised_abs_mask_gradient_by_finite_differences(bias):
    net = tiny_net([3, 5, 4, 3], seed=7)
    batches = data(n_batches=3)
    grads = fd_mask_grads(net, batches, F.cross_entropy, bias=bias)
    total = sum(g.abs().sum() for g in grads)
    scores = SNIP().score(context(net, bias=bias, batches=batches))
    assert len(scores) == len(grads)
    for s, g in zip(scores, grads):
        assert s.dtype == torch.float64
        torch.testing.assert_close(s, g.abs() / total, rtol=1e-5, atol=1e-9)
    assert float(sum(s.sum() for s in scores)) == pytest.approx(1.0, abs=1e-12)
    # summed over batches before taking |.|: per-batch |.| would differ on this data
    per_batch = sum(sum(g.abs().sum() for g in fd_mask_grads(net, [b], F.cross_entropy, bias=bias))
                    for b in batches)
    assert float(per_batch) > float(total) * 1.01


def test_snip_with_zero_gradient_returns_zeros_not_nan():
    net = tiny_net([3, 4, 3], seed=1)
    with torch.no_grad():
        for layer in net.layers:
            layer.weight.zero_()
            layer.bias.zero_()
    scores = SNIP().score(context(net, bias=False, batches=data()))
    assert all(torch.equal(s, torch.zeros_like(s)) for s in scores)


def test_snip_with_mse_loss():
    net = tiny_net([2, 4, 2], seed=4)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(6, 2, generator=g, dtype=torch.float64), torch.randn(6, 2, generator=g, dtype=torch.float64))]
    grads = fd_mask_grads(net, batches, F.mse_loss, bias=False)
    total = sum(g.abs().sum() for g in grads)
    for s, g in zip(SNIP().score(context(net, bias=False, batches=batches, loss=F.mse_loss)), grads):
        torch.testing.assert_close(s, g.abs() / total, rtol=1e-5, atol=1e-9)


# -- GraSP ---------------------------------------------------------------------------------------------
def grad_at(net, params, batches, loss, temperature):
    """Gradient of the summed, temperature-scaled loss at the net's current values (autograd, one pass)."""
    value = total_loss(net, batches, loss, temperature)
    return torch.autograd.grad(value, params)


@pytest.mark.parametrize("bias", [False, True])
def test_grasp_is_theta_times_hg_by_finite_differences_of_the_gradient(bias):
    net = tiny_net([3, 5, 4, 3], seed=9)
    batches = data(n_batches=2, seed=4)
    params = [p for _, p, _ in net.masked_parameters(bias=bias)]
    temperature = 200.0
    g = [t.detach() for t in grad_at(net, params, batches, F.cross_entropy, temperature)]
    norm = torch.sqrt(sum((t * t).sum() for t in g))
    h = 1e-5 / float(norm)
    with torch.no_grad():
        for p, t in zip(params, g):
            p.add_(h * t)
    up = [t.detach() for t in grad_at(net, params, batches, F.cross_entropy, temperature)]
    with torch.no_grad():
        for p, t in zip(params, g):
            p.sub_(2 * h * t)
    down = [t.detach() for t in grad_at(net, params, batches, F.cross_entropy, temperature)]
    with torch.no_grad():
        for p, t in zip(params, g):
            p.add_(h * t)
    hg = [(u - d) / (2 * h) for u, d in zip(up, down)]
    raw = [p.detach() * v for p, v in zip(params, hg)]
    denom = abs(float(sum(r.sum() for r in raw))) + 1e-10
    scores = GraSP().score(context(net, bias=bias, batches=batches))
    for s, r in zip(scores, raw):
        assert s.dtype == torch.float64
        torch.testing.assert_close(s, r / denom, rtol=2e-4, atol=1e-7)
    flat = torch.cat([s.flatten() for s in scores])
    assert abs(float(flat.sum())) == pytest.approx(1.0, rel=1e-6)  # divided by |sum|
    assert (flat < 0).any() and (flat > 0).any()  # signed: no abs()


def test_grasp_uses_temperature_200():
    assert GraSP.temperature == 200.0
    # a different temperature gives different (normalised) scores on the same data
    net = tiny_net([3, 5, 3], seed=2)
    batches = data(n_batches=1, seed=2)
    a = torch.cat([s.flatten() for s in GraSP().score(context(net, batches=batches))])
    low = GraSP()
    low.temperature = 1.0
    b = torch.cat([s.flatten() for s in low.score(context(net, batches=batches))])
    assert not torch.allclose(a, b, rtol=1e-3)


def test_grasp_with_zero_gradient_is_zero_not_nan():
    net = tiny_net([3, 4, 3], seed=1)
    with torch.no_grad():
        for layer in net.layers:
            layer.weight.zero_()
            layer.bias.zero_()
    scores = GraSP().score(context(net, batches=data()))
    assert all(torch.equal(s, torch.zeros_like(s)) for s in scores)


def test_grasp_eps_keeps_a_tiny_sum_below_one():
    # weights scaled by 0.01: sum(theta Hg) is about 1.7e-8, so dividing by |sum| + 1e-10 gives |total| ~ 0.994
    net = tiny_net([3, 4, 3], seed=1)
    with torch.no_grad():
        for layer in net.layers:
            layer.weight.mul_(0.01)
            layer.bias.mul_(0.01)
    total = abs(float(sum(s.sum() for s in GraSP().score(context(net, batches=data())))))
    assert 0.98 < total < 0.999


def test_snip_normalises_a_total_below_one_too():
    net = tiny_net([3, 4, 3], seed=3)
    with torch.no_grad():
        for layer in net.layers:
            layer.weight.mul_(0.05)
    batches = data(n_batches=1)
    total = sum(g.abs().sum() for g in fd_mask_grads(net, batches, F.cross_entropy))
    assert 0 < float(total) < 0.5
    scores = SNIP().score(context(net, batches=batches))
    assert float(sum(s.sum() for s in scores)) == pytest.approx(1.0, abs=1e-12)
