import re

import pytest
import torch
from pytorch_lightning.callbacks import Callback

from helpers import fit, make_pruning, read_summary, tiny
from plantnseek.callbacks import SCORERS, Pruning, Scorer, ScoringContext, SynFlow
from plantnseek.core.errors import UsageError

SCORER_NAMES = list(SCORERS)


def prunable_counts(model, prune_bias):
    masks = [m for _, _, m in model.run.net.masked_parameters(bias=prune_bias)]
    return sum(int(m.sum()) for m in masks), sum(m.numel() for m in masks)


@pytest.mark.parametrize("pruner", SCORER_NAMES)
@pytest.mark.parametrize("scope", ["global", "local"])
@pytest.mark.parametrize("prune_bias", [False, True])
def test_every_scorer_keeps_exactly_k(pruner, scope, prune_bias):
    model, dm = tiny("circle", depth=4, width=20)
    pruning = Pruning(pruner=pruner, sparsity=0.13, scope=scope, prune_bias=prune_bias, post_epochs=0)
    pruning.prune_level(model.run, 0, dm)
    kept, total = prunable_counts(model, prune_bias)
    if scope == "global":
        assert kept == round(0.13 * total)
    else:
        assert kept == sum(round(0.13 * m.numel()) for _, _, m in model.run.net.masked_parameters(bias=prune_bias))
    if not prune_bias:
        assert all(bool(l.bias_mask.all()) for l in model.run.net.layers)
    for _, _, m in model.run.net.masked_parameters(bias=True):
        assert set(m.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("prune_bias", [False, True])
@pytest.mark.parametrize("dataset", ["circle", "relu", "helix"])
def test_ticket_oracle_recovers_the_ticket_exactly(dataset, prune_bias):
    model, dm = tiny(dataset, depth=5)
    pruning = Pruning(pruner="ticket", sparsity=-1, prune_bias=prune_bias, post_epochs=0)
    event = pruning.prune_level(model.run, 0, dm)
    assert event["recovery"]["recall"] == 1.0 and event["recovery"]["precision"] == 1.0
    # the pruned network is the ticket times its output scale
    x, _ = dm.split("test")
    with torch.no_grad():
        out = model(x).double() / model.run.ticket.scale
    torch.testing.assert_close(out, model.run.ticket(x), rtol=1e-3, atol=1e-4)
    if dataset != "circle":
        # least-squares rescaling can only improve on the ticket's exact scale
        assert event["test_after_prune"]["rescaled_mse"] <= 1.01 * model.run.ticket_metric(*dm.split("test"))


def test_sparsity_minus_one_is_the_ticket_density():
    model, _ = tiny("circle", depth=5, width=50)
    assert Pruning(sparsity=-1).target_density(model.run) == 108 / 5300
    assert Pruning(sparsity=-1, prune_bias=True).target_density(model.run) == (108 + 22) / 5454
    assert Pruning(sparsity=None, compression=2).target_density(model.run) == pytest.approx(0.01)


def test_a_sparsity_that_keeps_nothing_is_refused():
    model, _ = tiny("relu", depth=3, width=4)
    with pytest.raises(UsageError, match="keeps no parameter"):
        Pruning(sparsity=0.01).target_density(model.run)


def test_synflow_needs_no_data_and_is_deterministic():
    model, _ = tiny("helix", depth=5)
    params = list(model.run.net.masked_parameters(bias=True))

    def ctx():
        return ScoringContext(net=model.run.net, names=[n for n, _, _ in params], params=[p for _, p, _ in params],
                              masks=[m for _, _, m in params], batches=[], loss=model.run.loss,
                              generator=torch.Generator(), ticket_masks=[])

    a, b = SynFlow().score(ctx()), SynFlow().score(ctx())
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert all(x.dtype == torch.float64 for x in a)
    # SynFlow of a linear path: score of W in a 1-unit chain is the product of all |w| (and |b| terms)
    assert all(torch.isfinite(x).all() for x in a)


def test_synflow_has_no_float32_ties_at_depth_10():
    from plantnseek.module import PlantedMLP

    model = PlantedMLP(dataset="circle", depth=10, width=100)
    params = list(model.run.net.masked_parameters(bias=False))
    ctx = ScoringContext(net=model.run.net, names=[n for n, _, _ in params], params=[p for _, p, _ in params],
                         masks=[m for _, _, m in params], batches=[], loss=model.run.loss,
                         generator=torch.Generator(), ticket_masks=[])
    scores = torch.cat([s.flatten() for s in SynFlow().score(ctx)])
    positive = scores[scores > 0]
    assert positive.numel() == scores.numel()
    assert positive.unique().numel() == positive.numel()


def test_snip_and_grasp_score_on_the_pruning_subset():
    from my_scorers import Spy

    model, dm = tiny("circle", depth=4)
    Spy.calls.clear()
    Pruning(pruner="my_scorers.Spy", sparsity=0.5, post_epochs=0).prune_level(model.run, 0, dm)
    assert Spy.calls[0]["n_samples"] == len(dm.split("prune")[0]) == 20
    for name in ("snip", "grasp"):
        scores = []
        for seed in (1, 2):
            _, dm2 = tiny("circle", depth=4, seed=seed)
            m = tiny("circle", depth=4)[0]
            Pruning(pruner=name, sparsity=0.5, post_epochs=0).prune_level(m.run, 0, dm2)
            scores.append(torch.cat([l.weight_mask.flatten() for l in m.run.net.layers]))
        assert not torch.equal(scores[0], scores[1]), name  # another subset, other masks
        with pytest.raises(UsageError, match="needs data"):
            Pruning(pruner=name, sparsity=0.5).prune_level(tiny("circle", depth=4)[0].run, 0, None)


class Watch(Callback):
    def __init__(self):
        self.optim_state_sizes, self.weights = [], []

    def on_train_epoch_start(self, trainer, pl_module):
        self.optim_state_sizes.append(len(trainer.optimizers[0].state))
        self.weights.append([p.detach().clone() for p in pl_module.run.net.parameters()])


def test_multishot_follows_the_schedule_rewinds_and_resets(in_tmp):
    from my_scorers import Spy

    model, dm = tiny("circle", depth=4)
    initial = [p.detach().clone() for p in model.run.net.parameters()]
    Spy.calls.clear()
    pruning = Pruning(pruner="my_scorers.Spy", sparsity=0.05, levels=3, pre_epochs=1, post_epochs=1, prune_epochs=2)
    watch = Watch()
    import pytorch_lightning as pl
    from plantnseek.callbacks import RunSummary

    trainer = pl.Trainer(accelerator="cpu", default_root_dir=str(in_tmp), callbacks=[pruning, watch, RunSummary(verbose=False)],
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm)
    assert trainer.current_epoch == 4  # 3 levels x 1 pre-epoch + 1 post-epoch, set by the callback
    targets = [e["density_target"] for e in pruning.events]
    assert targets == pytest.approx([0.05 ** (1 / 3), 0.05 ** (2 / 3), 0.05])
    total = sum(m.numel() for _, _, m in model.run.net.masked_parameters(bias=False))
    assert [e["kept"] for e in pruning.events] == [round(t * total) for t in targets]
    # pruned stays pruned across scoring rounds and levels: masks only ever lose entries
    seq = [torch.cat([m.flatten() for m in c["masks"]]) for c in Spy.calls]
    assert len(seq) == 6
    assert all(bool((b <= a).all()) for a, b in zip(seq, seq[1:]))
    # every level starts from the planted initialisation with a fresh optimizer
    masks = [m for _, _, m in model.run.net.masked_parameters(bias=True)]
    for level_start in (1, 2, 3):
        # rewound weights equal the initial ones, except that the finally pruned ones are zero
        assert all(torch.equal(w * m, w0 * m) for w, w0, m in zip(watch.weights[level_start], initial, masks))
        assert watch.optim_state_sizes[level_start] == 0
    assert watch.optim_state_sizes[0] == 0
    summary = read_summary(trainer)
    assert summary["levels"] == 3 and summary["param_sparsity"] == pytest.approx(round(0.05 * total) / total)


def test_singleshot_keeps_training_state_and_logs_summary(in_tmp):
    model, dm = tiny("relu", depth=5, width=6)
    watch = Watch()
    import pytorch_lightning as pl
    from plantnseek.callbacks import RunSummary

    pruning = Pruning(pruner="mag", sparsity=0.5, pre_epochs=1, post_epochs=1)
    trainer = pl.Trainer(accelerator="cpu", default_root_dir=str(in_tmp), callbacks=[pruning, watch, RunSummary(verbose=False)],
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm)
    assert watch.optim_state_sizes == [0, 4 * 2]  # Adam state survives the pruning step
    s = read_summary(trainer)
    for key in ("dataset", "depth", "width", "pruner", "levels", "sparsity_target", "param_sparsity",
                "flop_sparsity", "ticket", "recovery", "final", "history", "layers"):
        assert key in s
    assert s["pruner"] == "mag" and s["status"] == "completed" and len(s["history"]) == 2
    assert set(s["final"]) == {"loss", "mse", "rescaled_mse"}
    assert {"shape", "size", "kept_fraction", "flops", "score_mean", "score_var", "score_sum"} <= set(s["layers"][0])


def test_invert_shuffle_and_reinitialize():
    model, dm = tiny("circle", depth=4)
    w = model.run.net.layers[1].weight.detach().abs().clone()
    Pruning(pruner="mag", sparsity=0.2, invert=True).prune_level(model.run, 0, dm)
    m = model.run.net.layers[1].weight_mask.bool()
    assert w[m].max() <= w[~m].min()  # the kept ones are the smallest
    assert bool((model.run.net.layers[1].weight[~m] == 0).all())  # pruned values are zeroed

    plain, _ = tiny("circle", depth=4)
    shuffled, _ = tiny("circle", depth=4)
    Pruning(pruner="mag", sparsity=0.2).prune_level(plain.run, 0, dm)
    Pruning(pruner="mag", sparsity=0.2, shuffle=True).prune_level(shuffled.run, 0, dm)
    for a, b in zip(plain.run.net.layers, shuffled.run.net.layers):
        assert int(a.weight_mask.sum()) == int(b.weight_mask.sum())
    assert any(not torch.equal(a.weight_mask, b.weight_mask) for a, b in zip(plain.run.net.layers, shuffled.run.net.layers))


def test_reinitialize_draws_fresh_weights(in_tmp):
    model, dm = tiny("circle", depth=4)
    before = [p.detach().clone() for p in model.run.net.parameters()]
    fit(model, dm, make_pruning(pruner="mag", sparsity=0.3, reinitialize=True), root=str(in_tmp), max_epochs=0)
    after = list(model.run.net.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(before, after))


class NeedsArguments(Scorer):
    def __init__(self, power):
        self.power = power


@pytest.mark.parametrize("kwargs,match", [
    ({"pruner": "magic"}, "unknown pruner 'magic'"),
    ({"pruner": "nowhere.Scorer"}, "cannot import pruner"),
    ({"pruner": "torch.nn.Linear"}, "not a subclass"),
    ({"scope": "flow"}, "unknown scope 'flow'"),
    ({"schedule": "cubic"}, "unknown schedule"),
    ({"levels": 0}, "levels 0"),
    ({"prune_epochs": 0}, "prune_epochs 0"),
    ({"sparsity": 0.0}, "sparsity 0.0"),
    ({"sparsity": 1.5}, "sparsity 1.5"),
    ({"sparsity": None, "compression": -1}, "compression -1"),
    ({"pruner": "magic"}, "allowed: rand, mag, snip, grasp, synflow, ticket, edgepopup"),
    ({"scope": "flow"}, "allowed: global, local"),
    ({"schedule": "cubic"}, "allowed: exponential, linear"),
    ({"sparsity": "0.1"}, "sparsity '0.1' is invalid; it must be a number"),
    ({"sparsity": float("nan")}, "sparsity nan is invalid; it must be a finite number"),
    ({"sparsity": None, "compression": "2"}, "compression '2' is invalid; it must be a number"),
    ({"levels": 1.5}, "levels 1.5 is invalid; it must be an integer"),
    ({"prune_epochs": 2.0}, "prune_epochs 2.0 is invalid; it must be an integer"),
    ({"pre_epochs": 0.5}, "pre_epochs 0.5 is invalid; it must be an integer"),
    ({"post_epochs": "3"}, "post_epochs '3' is invalid; it must be an integer"),
    ({"pre_epochs": -1}, "pre_epochs -1 is invalid; it must be at least 0"),
    ({"post_epochs": -1}, "post_epochs -1 is invalid; it must be at least 0"),
    ({"pruner": "test_pruning.NeedsArguments"}, r"pruner 'test_pruning.NeedsArguments' cannot be built without "
                                               r"arguments .*init_args"),
])
def test_bad_pruning_arguments(kwargs, match):
    with pytest.raises(UsageError, match=match):
        Pruning(**kwargs)


def test_documented_defaults():
    p = Pruning()
    assert (p.scorer.name, p.sparsity, p.compression, p.levels, p.pre_epochs, p.post_epochs, p.prune_epochs) == \
        ("synflow", 0.1, None, 1, 0, 10, 1)
    assert (p.schedule, p.scope, p.prune_bias, p.invert, p.shuffle, p.reinitialize, p.prune_train_mode, p.rewind) == \
        ("exponential", "global", False, False, False, False, False, False)


@pytest.mark.parametrize("kwargs, message", [
    ({"budget": "x"}, "unknown budget 'x'; allowed: global, uniform, erk, balanced, pyramidal"),
    ({"scope": "local", "budget": "erk"}, "scope 'local' and budget 'erk' contradict each other; give the budget alone"),
    ({"levels": 3, "pre_epochs": 3, "rewind_epoch": 1.5}, "rewind_epoch 1.5 is invalid; it must be an integer"),
    ({"levels": 3, "pre_epochs": 2, "rewind": True, "lr_rewind": True},
     "lr_rewind keeps the trained weights and rewind: true rewinds them; give one of the two"),
    ({"levels": 1, "pre_epochs": 2, "rewind_epoch": 1}, "rewind_epoch 1 has no effect: nothing is rewound (multishot "
                                                        "levels > 1 rewind by default, or give rewind: true or lr_rewind: true)"),
    ({"levels": 3, "pre_epochs": 2, "rewind_epoch": 2},
     "rewind_epoch 2 is invalid; allowed: 0 to pre_epochs - 1 (1), an epoch of the first level's training"),
    ({"levels": 3, "pre_epochs": 4, "rewind_epoch": -1},
     "rewind_epoch -1 is invalid; allowed: 0 to pre_epochs - 1 (3), an epoch of the first level's training"),
])
def test_bad_budget_and_rewind_settings_are_refused_with_the_whole_message(kwargs, message):
    with pytest.raises(UsageError, match="^" + re.escape(message) + "$"):
        Pruning(pruner="mag", **kwargs)


def test_budget_and_rewind_settings_that_agree_are_kept():
    for budget in ("global", "uniform", "erk", "balanced", "pyramidal"):
        assert Pruning(pruner="mag", budget=budget).budget == budget  # scope global: any budget
    assert Pruning(pruner="mag", scope="local", budget="uniform").budget == "uniform"  # the scope's own budget
    assert Pruning(pruner="mag", scope="local").budget == "uniform" and Pruning(pruner="mag").budget == "global"
    lr = Pruning(pruner="mag", levels=3, pre_epochs=3, rewind_epoch=2, lr_rewind=True)
    assert (lr.rewind, lr.lr_rewind, lr.rewind_epoch) == (False, True, 2)
    # a rewind epoch is one of the first level's training epochs: 0 (fit start, the default) to pre_epochs - 1
    assert [Pruning(pruner="mag", levels=2, pre_epochs=3, rewind_epoch=k).rewind_epoch for k in (0, 1, 2)] == [0, 1, 2]
    assert Pruning(pruner="mag", levels=1, pre_epochs=3, rewind=True, rewind_epoch=1).rewind is True
