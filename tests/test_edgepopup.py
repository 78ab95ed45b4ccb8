"""Edge-popup: exact top-k with a straight-through gradient, frozen weights, determinism, all tasks, stacked."""
import json

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from helpers import MIN_W, tiny, versions
from plantnseek.callbacks import EdgePopup, EdgePopupAnneal, Pruning, RunSummary, make_scorer
from plantnseek.core import edgepopup as ep
from plantnseek.cli.entry import main
from plantnseek.core.errors import UsageError
from plantnseek.core.masking import keep_count, select_by_threshold, topk_masks
from plantnseek.module import PlantedMLP
from plantnseek.trainer import fit_stacked


def record_steps(monkeypatch):
    """Every straight-through mask edge-popup computes: (density, [mask per tensor]) per training step."""
    steps = []
    original = ep.Selector.straight_through

    def spy(self, scores, density):
        masks = original(self, scores, density)
        steps.append((density, [m.detach().clone() for m in masks]))
        return masks

    monkeypatch.setattr(ep.Selector, "straight_through", spy)
    return steps


def test_threshold_selection_is_the_stable_topk_rule():
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        n = int(torch.randint(1, 40, (1,), generator=gen))
        scores = torch.randint(0, 4, (n,), generator=gen).float()  # many ties
        alive = torch.rand(n, generator=gen) > 0.3
        k = int(torch.randint(0, n + 1, (1,), generator=gen))
        want = topk_masks([scores], [alive.float()], k / n, "global")[0] > 0
        assert torch.equal(select_by_threshold(scores, alive, k), want)


@pytest.mark.parametrize("scope", ["global", "local"])
@pytest.mark.parametrize("prune_bias", [False, True])
@pytest.mark.parametrize("anneal", [False, True])
def test_every_step_keeps_exactly_k_of_the_alive_parameters(scope, prune_bias, anneal, monkeypatch):
    steps = record_steps(monkeypatch)
    model, dm = tiny("circle", depth=4, width=20, n_samples=300)
    pruning = Pruning(pruner=EdgePopup(epochs=3, anneal=anneal), sparsity=0.2, levels=2, scope=scope,
                      prune_bias=prune_bias, post_epochs=0)
    pruning.density = pruning.target_density(model.run)
    for level in range(2):
        before = [m.clone() for _, _, m in model.run.net.masked_parameters(bias=prune_bias)]
        start = sum(int(m.sum()) for m in before) / sum(m.numel() for m in before)
        steps.clear()
        pruning.prune_level(model.run, level, dm)
        target = pruning.level_density(level)
        per_epoch = -(-270 // 64)  # ceil(train samples / batch size)
        assert len(steps) == 3 * per_epoch
        for i, (density, masks) in enumerate(steps):
            epoch = i // per_epoch + 1
            assert density == pytest.approx(start * (target / start) ** (epoch / 3) if anneal else target)
            assert all(bool((m <= b).all()) for m, b in zip(masks, before))  # pruned stays pruned
            if scope == "global":
                assert sum(int(m.sum()) for m in masks) == keep_count(density, sum(m.numel() for m in masks))
            else:
                assert [int(m.sum()) for m in masks] == [min(keep_count(density, m.numel()), int(b.sum()))
                                                         for m, b in zip(masks, before)]
        kept = [m for _, _, m in model.run.net.masked_parameters(bias=prune_bias)]
        assert sum(int(m.sum()) for m in kept) == sum(int(m.sum()) for m in steps[-1][1])


def test_gradient_goes_straight_through_to_the_scores():
    """d loss / d s = d loss / d (w * m) * w * sign(s), computed here by hand from the masked weights."""
    model, dm = tiny("relu", depth=4, width=6)
    x, y = dm.split("train")
    x, y = x[:16], y[:16]
    names = [n for n, _, _ in model.run.net.masked_parameters(bias=True)]
    params = [p.detach() for _, p, _ in model.run.net.masked_parameters(bias=True)]
    selector = ep.Selector([torch.ones_like(p, dtype=torch.bool) for p in params], "global")
    scores = torch.randn(sum(p.numel() for p in params), generator=torch.Generator().manual_seed(3)).requires_grad_(True)
    masks = selector.straight_through(scores, 0.4)
    out = torch.func.functional_call(model.run.net, {f"{n}_mask": m for n, m in zip(names, masks)}, (x,))
    (grad,) = torch.autograd.grad(F.mse_loss(out, y), [scores])
    # by hand: a plain forward with leaf effective weights w * m
    hard = [m.detach() for m in masks]
    eff = [(p * m).requires_grad_(True) for p, m in zip(params, hard)]
    h = x
    for i in range(0, len(eff), 2):
        h = h @ eff[i].T + eff[i + 1]
        if i < len(eff) - 2:
            h = torch.relu(h)
    g_eff = torch.autograd.grad(F.mse_loss(h, y), eff)
    want = torch.cat([(g * p).reshape(-1) for g, p in zip(g_eff, params)]) * scores.detach().sign()
    torch.testing.assert_close(grad, want)
    assert sum(int(m.sum()) for m in hard) == round(0.4 * scores.numel())


def test_weights_and_biases_stay_at_their_planted_values():
    model, dm = tiny("helix", depth=4, n_samples=300)
    initial = {n: p.detach().clone() for n, p in model.run.net.named_parameters()}
    Pruning(pruner=EdgePopup(epochs=2), sparsity=0.3, prune_bias=True, post_epochs=0).prune_level(model.run, 0, dm)
    for name, p in model.run.net.named_parameters():
        assert p.grad is None, name
        mask = dict(model.run.net.named_buffers())[f"{name}_mask"]
        assert torch.equal(p.detach(), initial[name] * mask), name  # kept: the planted value; pruned: 0


def masks_and_scores(seed, dataset="circle", **kw):
    model, dm = tiny(dataset, depth=4, seed=seed, n_samples=300)
    pruning = Pruning(pruner=EdgePopup(epochs=2, **kw), sparsity=0.25, prune_bias=True, post_epochs=0)
    pruning.prune_level(model.run, 0, dm)
    return [m.clone() for _, _, m in model.run.net.masked_parameters()], pruning.last_scores


def test_deterministic_per_seed():
    a_masks, a_scores = masks_and_scores(4)
    b_masks, b_scores = masks_and_scores(4)
    c_masks, _ = masks_and_scores(5)
    assert all(torch.equal(x, y) for x, y in zip(a_masks, b_masks))
    assert all(torch.equal(a_scores[k], b_scores[k]) for k in a_scores)
    assert not all(torch.equal(x, y) for x, y in zip(a_masks, c_masks))


def train_loss(model, masks, dm):
    x, y = dm.split("train")
    names = [n for n, _, _ in model.run.net.masked_parameters(bias=True)]
    with torch.no_grad():
        out = torch.func.functional_call(model.run.net, {f"{n}_mask": m for n, m in zip(names, masks)}, (x,))
        return float(model.run.loss(out, y))


@pytest.mark.parametrize("dataset", ["circle", "relu", "helix"])
@pytest.mark.parametrize("pruner", ["edgepopup", "edgepopup-anneal"])
def test_score_training_lowers_the_task_loss_on_every_task(dataset, pruner, monkeypatch):
    """The trained mask fits the training split better than the first step's mask (the initial scores').

    For relu/helix the loss is the task's MSE on the raw output: no softmax head."""
    steps = record_steps(monkeypatch)
    model, dm = tiny(dataset, depth=4, width={"circle": 20, "relu": 8, "helix": 30}[dataset], n_samples=600, seed=2)
    pruning = Pruning(pruner=pruner, sparsity=0.5, prune_bias=True, post_epochs=0)
    pruning.prune_level(model.run, 0, dm)
    assert len(steps) == 10 * -(-540 // 64)  # 10 epochs by default
    first = [m.detach() for m in steps[0][1]]
    final = [m.clone() for _, _, m in model.run.net.masked_parameters(bias=True)]
    if pruner == "edgepopup":  # annealing starts above the target: its first mask keeps more
        assert train_loss(model, final, dm) < train_loss(model, first, dm)
    assert pruning.events[-1]["kept"] == round(0.5 * sum(m.numel() for m in final))


def test_density_one_keeps_everything_without_training(monkeypatch):
    steps = record_steps(monkeypatch)
    model, dm = tiny("relu", depth=4, width=6)
    scorer = EdgePopup()
    Pruning(pruner=scorer, sparsity=1, prune_bias=True, post_epochs=0).prune_level(model.run, 0, dm)
    assert steps == [] and scorer.epochs_trained == 0
    assert all(bool(m.all()) for _, _, m in model.run.net.masked_parameters())


def test_names_options_and_bad_options():
    assert make_scorer("edgepopup").name == "edgepopup" and not make_scorer("edgepopup").anneal
    assert make_scorer("edgepopup-anneal").name == "edgepopup-anneal" and make_scorer("edgepopup-anneal").anneal
    assert isinstance(make_scorer("edgepopup-anneal"), EdgePopupAnneal)
    s = EdgePopup()
    assert (s.epochs, s.lr, s.momentum, s.weight_decay, s.score_init) == (10, 0.1, 0.9, 5e-4, "kaiming")
    for kwargs, match in [({"epochs": 0}, "epochs 0"), ({"lr": 0}, "lr 0"), ({"momentum": 1}, "momentum 1"),
                          ({"weight_decay": -1}, "weight_decay -1"), ({"score_init": "zeros"}, "score_init 'zeros'"),
                          ({"anneal": "yes"}, "anneal 'yes'"), ({"epochs": 2.5}, "epochs 2.5")]:
        with pytest.raises(UsageError, match=match):
            EdgePopup(**kwargs)
    model, _ = tiny("relu", depth=4, width=6)
    with pytest.raises(UsageError, match="trains on data"):
        Pruning(pruner="edgepopup", post_epochs=0).prune_level(model.run, 0, None)


def test_magnitude_score_init_starts_from_the_magnitude_mask(monkeypatch):
    steps = record_steps(monkeypatch)
    model, dm = tiny("circle", depth=4, width=20, n_samples=300)
    Pruning(pruner=EdgePopup(epochs=1, score_init="magnitude"), sparsity=0.3, post_epochs=0).prune_level(model.run, 0, dm)
    weights = [l.weight.detach().abs() for l in model.run.net.layers]
    want = topk_masks(weights, [torch.ones_like(w) for w in weights], 0.3, "global")
    assert all(torch.equal(a, b) for a, b in zip(steps[0][1], want))


def stacked_parts(dataset, scorer, sparsity, seed, schedule):
    model, dm = tiny(dataset, depth=4, seed=seed, n_samples=300)
    return model, dm, Pruning(pruner=scorer, sparsity=sparsity, prune_bias=True, **schedule)


@pytest.mark.parametrize("schedule", [{"levels": 1, "post_epochs": 1}, {"levels": 2, "pre_epochs": 1, "post_epochs": 0}])
def test_stacked_edgepopup_equals_separate_runs(schedule, tmp_path):
    runs = [(lambda: EdgePopup(epochs=2), 0.3, 1), (lambda: EdgePopupAnneal(epochs=2), 0.2, 2),
            (lambda: EdgePopup(epochs=2, score_init="magnitude"), -1, 3)]
    expected = []
    for i, (make, sparsity, seed) in enumerate(runs):
        model, dm, p = stacked_parts("relu", make(), sparsity, seed, schedule)
        summary = RunSummary(verbose=False)
        trainer = pl.Trainer(accelerator="cpu", logger=False, default_root_dir=str(tmp_path / str(i)),
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             num_sanity_val_steps=0, callbacks=[p, summary])
        trainer.fit(model, datamodule=dm)
        expected.append((summary.summary(trainer, model, "completed"), model))
    _, dms, prunings = zip(*(stacked_parts("relu", make(), s, seed, schedule) for make, s, seed in runs))
    stack = PlantedMLP(dataset="relu", depth=4, width=MIN_W["relu"], seed=[seed for _, _, seed in runs])
    got = fit_stacked(stack, dms, prunings)
    for (want, want_model), have, have_model in zip(expected, got, stack.runs):
        for a, b in zip(want_model.run.net.masked_parameters(), have_model.net.masked_parameters()):
            assert torch.equal(a[2], b[2]), a[0]
        assert have["pruner"] == want["pruner"] and have["recovery"] == want["recovery"]
        for part in ("pruned", "final"):
            assert have[part].keys() == want[part].keys()
            for key, value in want[part].items():
                assert have[part][key] == pytest.approx(value, rel=1e-4, abs=1e-6), (part, key)


def test_main_and_fit_run_edgepopup_and_refuse_bad_options(in_tmp, capsys):
    # main: the default 9,000 training samples, so density 1 (nothing to train) keeps this test quick
    assert main(["main", "--dataset", "relu", "--depth", "4", "--width", "6", "--pruner", "edgepopup-anneal",
                 "--sparsity", "1", "--post-epochs", "0", "--prune-bias", "true", "--result-dir", "r",
                 "--exp-suffix", "ep"]) == 0
    out = capsys.readouterr().out
    s = json.loads((in_tmp / "r/ep/version_0/summary.json").read_text())
    assert s["pruner"] == "edgepopup-anneal" and s["status"] == "completed" and s["final"] == s["pruned"]
    assert "Post-Prune" in out and "after pruning" in out
    (in_tmp / "ep.yaml").write_text("""
data: {dataset: relu, n_samples: 600, prune_dataset_ratio: 5}
model: {depth: 4, width: 6}
trainer:
  enable_progress_bar: false
  callbacks:
    - class_path: plantnseek.callbacks.Pruning
      init_args:
        pruner: {class_path: plantnseek.callbacks.EdgePopup, init_args: {epochs: 1, anneal: true}}
        sparsity: 0.3
        post_epochs: 0
""")
    assert main(["fit", "--config", "ep.yaml"]) == 0
    assert json.loads((versions(in_tmp / "lightning_logs")[0] / "summary.json").read_text())["pruner"] == "edgepopup-anneal"
    capsys.readouterr()
    for flag, message in [("epochs 0", "edge-popup epochs 0 is invalid; it must be at least 1"),
                          ("score_init zeros", "unknown edge-popup score_init 'zeros'; allowed: kaiming, magnitude")]:
        key, value = flag.split()
        assert main(["fit", "--config", "ep.yaml", f"--trainer.callbacks.init_args.pruner.init_args.{key}", value]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"plantnseek: error: {message}", err
    assert [v.name for v in versions(in_tmp / "lightning_logs")] == ["version_0"]  # nothing written
