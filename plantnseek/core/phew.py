"""PHEW (Patil & Dovrolis, ICML 2021): a data-free sparse network grown from weight-biased random walks.

Paths with Higher Edge Weights: walks from an input to an output unit (forward) or back, each step drawn
with probability ``|w|`` among the current unit's edges, are added until the network holds the target
number of distinct edges. High-magnitude paths give a high path kernel (as SynFlow-L2) while the
randomness keeps layers wide (SynFlow-L2 makes bottlenecks); every kept edge lies on a complete
input-to-output path, so the network cannot collapse.

As the authors' code (github.com/ShreyasMalakarjunPatil/PHEW, ``PHEW/phew.py``): forward steps normalise
``|w|`` over a unit's outgoing edges, backward steps over its incoming ones, a unit whose edges all have
``|w| = 0`` steps uniformly; walks alternate forward (1st, 3rd, ...) and backward; forward walks start at
the inputs in turn (0, 1, ..., wrapping round), backward walks at the outputs in turn, so every end unit
gets walks; the budget counts weights only, and a unit a kept edge enters keeps its bias.

Deviations:

* Walks use only *live* edges: alive in ``ctx.masks`` and on an alive input-to-output path (else a walk
  could get stuck after earlier pruning). At the first pruning round every edge is live.
* The count is exact, ``round(density * weights)`` (the authors stop after the walk that reaches
  ``int(...)``, up to depth-1 edges over). From the walk that would overshoot on, walks are cut at the
  units already on kept paths; each piece of new edges between two such units (or an input/output) closes
  paths by itself, and pieces are kept in walk order while they fit. If none fits within 2000 walks (or
  the walks stall past ``20 * target`` steps), single edges closing a path are drawn by ``|w|``, else a
  shortest closing chain is added; only if no chain fits (alive structure in disconnected pieces) are the
  last edges drawn by ``|w|`` among live ones, and may dangle.
* Scores: kept edges by the order chosen (walk by walk, a walk's edges by layer) in (2, 3], others 0.
  Prunable biases rank after all kept edges (the budget is shared): units a kept edge enters in [1, 2),
  by how many; other alive biases 0.5 (outputs) or 0.25, so no unchosen edge fills a bias slot.
* Budgets: ``global`` as above. Per-layer budgets (:func:`plantnseek.core.budgets.keep_counts`) run whole
  walks until every layer holds its count; the selection keeps each layer's earliest edges, so an edge of
  a layer that got more than its count may dangle.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from plantnseek.core.budgets import keep_counts, layer_fans
from plantnseek.core.errors import UsageError, check_number
from plantnseek.core.masking import keep_count
from plantnseek.core.scorers import Scorer, ScoringContext, layer_indices

F64 = torch.float64


def _inv_cdf(p: Tensor) -> Tensor:
    """One sorted table for inverse-CDF draws from every row of ``p``: row ``c`` spans [c, c + 1] (a row's
    last value is exactly ``c + 1``, as ``x / x == 1``); a zero entry repeats the value before it, so a
    search for the first value above ``c + u`` never lands on it."""
    cdf = p.cumsum(1)
    cdf /= cdf[:, -1:].clamp_min(1e-300)
    cdf += torch.arange(p.shape[0], dtype=F64)[:, None]
    return cdf.reshape(-1)


class _Walker:
    """Weight-biased walks on the live edges (``live`` None: all edges) of a layered network, many at once."""

    def __init__(self, absw: list[Tensor], live: list[Tensor] | None) -> None:
        self.shapes = [w.shape for w in absw]
        self.offsets = [0] + torch.tensor([w.numel() for w in absw]).cumsum(0)[:-1].tolist()
        self.fwd, self.bwd = [], []
        for l, w in enumerate(absw):
            p = w if live is None else w * live[l]
            for dim, tables in ((1, self.bwd), (0, self.fwd)):  # bwd rows: output units; fwd rows: input units
                rows = p if dim else p.T.contiguous()
                stuck = rows.sum(1) == 0  # all |w| = 0 (or no live edge): step uniformly over live edges
                if bool(stuck.any()):
                    lv = torch.ones_like(rows) if live is None else (live[l] if dim else live[l].T).to(F64)
                    rows = torch.where(stuck[:, None], lv, rows)
                tables.append(_inv_cdf(rows))

    def walks(self, starts: Tensor, forward: bool, gen: torch.Generator) -> Tensor:
        """Flat edge ids ``[len(starts), depth]`` (column ``l``: layer ``l``) of walks from ``starts``."""
        depth = len(self.shapes)
        ids = torch.empty(len(starts), depth, dtype=torch.long)
        cur = starts
        for l in range(depth) if forward else reversed(range(depth)):
            table, n_next = (self.fwd[l], self.shapes[l][0]) if forward else (self.bwd[l], self.shapes[l][1])
            c = cur.to(F64)
            x = torch.minimum(c + torch.rand(len(cur), generator=gen, dtype=F64), torch.nextafter(c + 1, c))
            nxt = torch.searchsorted(table, x, right=True) - cur * n_next
            out, inp = (nxt, cur) if forward else (cur, nxt)
            ids[:, l] = self.offsets[l] + out * self.shapes[l][1] + inp
            cur = nxt
        return ids

    def units(self, ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Layer, output unit and input unit of each flat edge id."""
        layer = torch.bucketize(ids, torch.tensor(self.offsets), right=True) - 1
        local, n_in = ids - torch.tensor(self.offsets)[layer], torch.tensor([s[1] for s in self.shapes])[layer]
        return layer, local // n_in, local % n_in


def _ends(edges: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
    """Per layer of units, which are reachable from the inputs and which reach the outputs by ``edges``."""
    reach = [torch.ones(edges[0].shape[1], dtype=torch.bool)]
    for e in edges:
        reach.append((e & reach[-1][None, :]).any(1))
    co = [torch.ones(edges[-1].shape[0], dtype=torch.bool)]
    for e in reversed(edges):
        co.insert(0, (e & co[0][:, None]).any(0))
    return reach, co


def _live(alive: list[Tensor]) -> list[Tensor]:
    """Alive edges on some alive input-to-output path (a walk on them never gets stuck)."""
    reach, co = _ends(alive)
    return [a & co[l + 1][:, None] & reach[l][None, :] for l, a in enumerate(alive)]


def _first_new(ids: Tensor, chosen: Tensor) -> Tensor:
    """Which entries of the flat ``ids`` add an edge: first occurrence, in order, and not chosen before."""
    sorted_ids, perm = torch.sort(ids, stable=True)
    first = torch.ones_like(sorted_ids, dtype=torch.bool)
    first[1:] = sorted_ids[1:] != sorted_ids[:-1]
    is_first = torch.zeros_like(first)
    is_first[perm[first]] = True
    return is_first & ~chosen[ids]


def _draw(weights: Tensor, r: int, gen: torch.Generator) -> Tensor:
    """``r`` positions drawn without replacement with probability ``weights``, in draw order (exponential
    race; zero weights last, in index order)."""
    keys = -torch.log1p(-torch.rand(weights.shape, generator=gen, dtype=F64)) / weights
    return torch.sort(torch.nan_to_num(keys, nan=math.inf), stable=True).indices[:r]


class _Growth:
    """The walks of one scoring call: which edges are chosen, in which order."""

    max_steps_per_edge = 20  # sampled walk steps per target edge before the walks count as stalled
    max_piece_walks = 2000  # walks tried for pieces that fit the last few edges

    def __init__(self, flat_w: Tensor, absw: list[Tensor], live: list[Tensor] | None, gen: torch.Generator):
        self.flat_w, self.live, self.gen = flat_w, live, gen
        self.walker = _Walker(absw, live)
        self.depth = len(absw)
        self.starts_f = torch.arange(absw[0].shape[1]) if live is None else live[0].any(0).nonzero().flatten()
        self.starts_b = torch.arange(absw[-1].shape[0]) if live is None else live[-1].any(1).nonzero().flatten()
        self.chosen = torch.zeros(flat_w.numel(), dtype=torch.bool)
        self.order: list[Tensor] = []
        self.walked = 0

    def batch(self, n: int) -> Tensor:
        """Edge ids ``[n, depth]`` of the next ``n`` walks (n even): walk ``w`` is forward for even ``w``,
        backward for odd, and starts at unit ``(w // 2) mod count`` of the live inputs or outputs."""
        nf = torch.arange((self.walked + 1) // 2, (self.walked + 1) // 2 + n // 2)
        nb = torch.arange(self.walked // 2, self.walked // 2 + n // 2)
        ids = torch.empty(n, self.depth, dtype=torch.long)
        ids[0::2] = self.walker.walks(self.starts_f[nf % len(self.starts_f)], True, self.gen)
        ids[1::2] = self.walker.walks(self.starts_b[nb % len(self.starts_b)], False, self.gen)
        if self.walked % 2:  # this batch starts with a backward walk
            ids = ids[[i ^ 1 for i in range(n)]]
        return ids

    def add(self, ids: Tensor) -> None:
        self.chosen[ids] = True
        self.order.append(ids)

    def walk(self, quota: list[int], exact: bool) -> Tensor | None:
        """Whole walks until the total (``exact``) or every layer reaches ``quota``; the walks left over
        from the one that would overshoot the exact total on, if any."""
        q = torch.tensor(quota)
        have = torch.zeros(len(quota), dtype=torch.long)
        steps, new_rate, ends = 0, 1.0, len(self.starts_f) + len(self.starts_b)
        max_steps = self.max_steps_per_edge * int(q.sum()) + 2 * self.depth * ends
        while bool((have < q).any()) and steps < max_steps and len(self.starts_f):
            need = int((q - have).sum() if exact else (q - have).clamp_min(0).max())
            n = int(min(max(1.5 * need / (self.depth * new_rate), 64), 1 << 16))
            ids = self.batch(n + n % 2)
            new = _first_new(ids.reshape(-1), self.chosen).view(ids.shape)
            if exact:
                cum = have + new.sum(1).cumsum(0)
                hit = (cum >= q).nonzero().flatten()
            else:
                cum = have + new.long().cumsum(0)  # column k: layer k
                hit = (cum >= q).all(1).nonzero().flatten()
            take = len(ids) if not len(hit) else int(hit[0]) + 1
            over = exact and len(hit) and int(cum[take - 1]) > int(q)
            take -= int(bool(over))
            self.add(ids[:take][new[:take]])
            have = cum[take - 1] if take else have
            self.walked, steps = self.walked + take, steps + take * self.depth
            new_rate = max(float(new[:take].float().mean()) if take else 0.0, 0.05)
            if over:
                return ids[take:]
        return None

    def pieces(self, r: int, pending: Tensor | None) -> int:
        """Keep pieces of walks (see the module) while they fit in the ``r`` edges left; returns what is left."""
        widths = [self.walker.shapes[0][1]] + [s[0] for s in self.walker.shapes]
        starts = torch.tensor([0] + widths).cumsum(0)
        touched = torch.zeros(int(starts[-1]), dtype=torch.bool)  # units with a kept edge, all layers
        if self.order:
            layer, out, inp = self.walker.units(torch.cat(self.order))
            touched[starts[layer] + inp] = True
            touched[starts[layer + 1] + out] = True
        touched = [t.tolist() for t in touched.split(widths)]
        tried = 0
        while r > 0 and tried < self.max_piece_walks and len(self.starts_f):
            if pending is None or not len(pending):
                pending = self.batch(64)
            ids, pending = pending[:64], pending[64:]
            tried += len(ids)
            _, out, inp = self.walker.units(ids)
            old = self.chosen[ids].tolist()
            ids, out, inp, added = ids.tolist(), out.tolist(), inp.tolist(), {}
            for w in range(len(ids)):
                piece = []
                for k in range(self.depth):
                    if not old[w][k] and ids[w][k] not in added:
                        piece.append(k)
                    if k + 1 < self.depth and not touched[k + 1][out[w][k]]:
                        continue  # not yet on a kept path: the piece goes on
                    if piece and len(piece) <= r:
                        for j in piece:
                            touched[j][inp[w][j]] = touched[j + 1][out[w][j]] = True
                            added[ids[w][j]] = None  # (a dict keeps the order)
                        r -= len(piece)
                    piece = []
                if r == 0:
                    break
            self.add(torch.tensor(list(added), dtype=torch.long))
        return r

    def bridges(self, r: int) -> None:
        """``r`` more edges closing paths, without walks (see the module)."""
        shapes, sizes = self.walker.shapes, [s.numel() for s in self.walker.shapes]
        while r > 0:
            kept = [c.view(s) for c, s in zip(self.chosen.split(sizes), shapes)]
            free = [~k if self.live is None else self.live[l] & ~k for l, k in enumerate(kept)]
            reach, co = _ends(kept)
            single = torch.cat([(f & co[l + 1][:, None] & reach[l][None, :]).reshape(-1) for l, f in enumerate(free)])
            cand = single.nonzero().flatten()
            pick = cand[_draw(self.flat_w[cand], r, self.gen)] if len(cand) else _shortest_chain(free, reach, co)
            if pick is None or len(pick) > r:  # no addition that closes paths fits: draw live edges by |w|
                cand = torch.cat([f.reshape(-1) for f in free]).nonzero().flatten()
                if not len(cand):
                    return
                pick = cand[_draw(self.flat_w[cand], r, self.gen)]
            self.add(pick)
            r -= len(pick)


def _shortest_chain(free: list[Tensor], reach: list[Tensor], co: list[Tensor]) -> Tensor | None:
    """Flat ids of a shortest chain of free edges from a reachable unit to a co-reachable one, or None."""
    offsets = [0] + torch.tensor([f.numel() for f in free]).cumsum(0)[:-1].tolist()
    dist, arg, ends = [torch.where(reach[0], 0.0, math.inf).to(F64)], [], []
    for l, f in enumerate(free):
        best, a = torch.where(f, dist[l][None, :] + 1, math.inf).min(1)
        arg.append(a)
        dist.append(torch.where(reach[l + 1], 0.0, best))
        ends.append(torch.where(co[l + 1], best, math.inf))
    lengths = torch.stack([e.min() for e in ends])
    if not bool(torch.isfinite(lengths).any()):
        return None
    l = int(lengths.argmin())
    v, ids = int(ends[l].argmin()), []
    while True:
        u = int(arg[l][v])
        ids.append(offsets[l] + v * free[l].shape[1] + u)
        if float(dist[l][u]) == 0:
            return torch.tensor(ids[::-1], dtype=torch.long)
        l, v = l - 1, u


class PHEW(Scorer):
    """PHEW: keep the edges of weight-biased random input-output walks (data-free; see the module)."""

    uses_data = False

    def score(self, ctx: ScoringContext) -> list[Tensor]:
        check_number("density", ctx.density)
        if not 0 <= ctx.density <= 1:
            raise UsageError(f"density {ctx.density} is invalid; PHEW needs a kept fraction in [0, 1]")
        layers = layer_indices(ctx.names)
        w_at = [i for i, n in enumerate(ctx.names) if n.endswith(".weight")]
        shapes = [ctx.params[i].shape for i in w_at]
        if not w_at or [layers[i] for i in w_at] != list(range(len(w_at))) or any(
                len(s) != 2 for s in shapes) or any(a[0] != b[1] for a, b in zip(shapes[:-1], shapes[1:])):
            raise UsageError(f"PHEW needs the chained weights of every layer, in order; got {ctx.names}")
        sizes = [s.numel() for s in shapes]
        alive = [m.detach() > 0 for m in ctx.masks]
        n_alive = [int(torch.count_nonzero(a)) for a in alive]
        live = None if all(n_alive[i] == n for i, n in zip(w_at, sizes)) else _live([alive[i] for i in w_at])
        n_live = [n_alive[i] for i in w_at] if live is None else [int(torch.count_nonzero(lv)) for lv in live]
        exact = ctx.budget == "global"
        if exact:
            k_total = min(keep_count(ctx.density, sum(a.numel() for a in alive)), sum(n_alive))
            bias_room = sum(n_alive) - sum(n_alive[i] for i in w_at)
            quota = [min(max(keep_count(ctx.density, sum(sizes)), k_total - bias_room), k_total, sum(n_live))]
        else:
            budget = "uniform" if ctx.budget == "local" else ctx.budget
            counts = keep_counts(budget, [a.numel() for a in alive], layers,
                                 layer_fans([a.shape for a in alive], layers), ctx.density)
            quota = [min(counts[i], n) for i, n in zip(w_at, n_live)]
        flat_w = torch.cat([ctx.params[i].detach().reshape(-1) for i in w_at]).to(F64).abs_()
        absw = [w.view(s) for w, s in zip(flat_w.split(sizes), shapes)]
        growth = _Growth(flat_w, absw, live, ctx.generator)
        if exact and quota[0] == sum(n_live):  # everything live is kept: nothing to choose
            growth.add(torch.arange(sum(sizes)) if live is None else
                       torch.cat([lv.reshape(-1) for lv in live]).nonzero().flatten())
        elif max(quota) > 0:
            pending = growth.walk(quota, exact)
            left = quota[0] - int(growth.chosen.sum()) if exact else 0
            if left > 0:
                growth.bridges(growth.pieces(left, pending))
        return self._scores(ctx, w_at, growth, sizes, shapes)

    @staticmethod
    def _scores(ctx: ScoringContext, w_at: list[int], growth: _Growth, sizes: list[int], shapes) -> list[Tensor]:
        order = torch.cat(growth.order) if growth.order else torch.zeros(0, dtype=torch.long)
        n = len(order)
        flat = torch.zeros(sum(sizes), dtype=F64)
        flat[order] = 2 + (n - torch.arange(n, dtype=F64)) / max(n, 1)
        out = dict(zip(w_at, (s.view(shape) for s, shape in zip(flat.split(sizes), shapes))))
        kept = [c.view(shape) for c, shape in zip(growth.chosen.split(sizes), shapes)]
        for i, l in enumerate(layer_indices(ctx.names)):
            if i not in out:  # a bias: after every edge; first the units kept edges enter
                incoming = kept[l].sum(1).to(F64)
                idle = 0.5 if l == len(w_at) - 1 else 0.25
                out[i] = torch.where(incoming > 0, 1 + incoming / (incoming.max() + 1), idle)
        return [out[i] for i in range(len(ctx.names))]

