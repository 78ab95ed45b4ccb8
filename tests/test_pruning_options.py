"""Each Pruning option pinned by a test that fails when the option is wired wrong."""
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from helpers import tiny
from plantnseek.callbacks import Pruning, RunSummary
from plantnseek.core.sampling import STREAM_PLANT, stream
from plantnseek.core.masking import shuffle_masks, topk_masks
from plantnseek.module import make_optimizer
from plantnseek.core.planting import he_scaled_init


def weight_masks(model):
    return [l.weight_mask.clone() for l in model.run.net.layers]


# -- shuffle -------------------------------------------------------------------------------------------
def test_shuffle_masks_moves_kept_entries_only_among_alive_positions():
    alive = torch.tensor([1.0, 1, 1, 1, 0, 0, 1, 1, 0, 1])
    mask = torch.tensor([1.0, 1, 0, 0, 0, 0, 0, 0, 0, 1])
    seen = set()
    for seed in range(30):
        out = shuffle_masks([mask], [alive], torch.Generator().manual_seed(seed))[0]
        assert int(out.sum()) == 3
        assert bool((out <= alive).all())  # never on a position pruned before
        seen.add(tuple(out.nonzero().flatten().tolist()))
    assert len(seen) > 5  # and the positions do move


@pytest.mark.parametrize("scope", ["global", "local"])
def test_shuffle_with_multishot_keeps_pruned_entries_pruned(scope):
    model, dm = tiny("circle", depth=4)
    plain, _ = tiny("circle", depth=4)
    pruning = Pruning(pruner="mag", sparsity=0.05, levels=3, shuffle=True, scope=scope)
    reference = Pruning(pruner="mag", sparsity=0.05, levels=3, scope=scope)
    pruning.remember_initial(model)
    before = weight_masks(model)
    for level in range(3):
        pruning.prune_level(model.run, level, dm)
        reference.prune_level(plain.run, level, dm)
        after = weight_masks(model)
        for a, b in zip(after, before):
            assert bool((a <= b).all()), f"level {level + 1}: {int((a > b).sum())} pruned entries revived"
        counts = [int(m.sum()) for m in after]
        if scope == "global":
            assert sum(counts) == round(pruning.level_density(level) * sum(m.numel() for m in after))
        if level == 0 or scope == "local":  # same starting masks: shuffle keeps each tensor's count
            assert counts == [int(m.sum()) for m in weight_masks(plain)]
        before = after
    assert any(not torch.equal(a, b) for a, b in zip(weight_masks(model), weight_masks(plain)))


def test_shuffle_follows_the_seed():
    def shuffled(seed):
        model, dm = tiny("circle", depth=4, seed=seed)
        Pruning(pruner="mag", sparsity=0.2, shuffle=True).prune_level(model.run, 0, dm)
        return weight_masks(model)

    a, b = shuffled(1), shuffled(1)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    alive = [torch.ones(50), torch.ones(50)]
    masks = [(torch.arange(50) < 10).double()] * 2
    draws = [shuffle_masks(masks, alive, torch.Generator().manual_seed(s)) for s in (4, 4, 5)]
    assert all(torch.equal(x, y) for x, y in zip(draws[0], draws[1]))
    assert not torch.equal(draws[0][0], draws[2][0])
    assert not torch.equal(draws[0][0], draws[0][1])  # one stream across tensors, not a reseed per tensor


# -- reinitialize --------------------------------------------------------------------------------------
def test_reinitialize_is_independent_of_the_planted_init_and_of_the_planting_stream(in_tmp):
    model, dm = tiny("circle", depth=4, seed=3)
    initial = [p.detach().clone() for p in model.run.net.parameters()]
    planting_draw = he_scaled_init(model.run.net.widths, stream(3, STREAM_PLANT))
    pruning = Pruning(pruner="mag", sparsity=0.5, reinitialize=True, post_epochs=0)
    trainer = pl.Trainer(accelerator="cpu", default_root_dir=str(in_tmp), max_epochs=0, logger=False,
                         enable_checkpointing=False, callbacks=[pruning, RunSummary(verbose=False)],
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm)
    for i, layer in enumerate(model.run.net.layers):
        kept = layer.weight_mask.bool()
        w = layer.weight.detach()
        assert bool((w[~kept] == 0).all())  # still masked
        fresh = w[kept]
        assert not torch.isclose(fresh, initial[2 * i][kept]).any()
        assert not torch.isclose(fresh.double(), torch.as_tensor(planting_draw[i][0])[kept]).any()
        # still He-scaled: N(0, 2 / fan_in)
        std = float(w[kept].std()) if kept.sum() > 20 else None
        if std is not None:
            assert std == pytest.approx(np.sqrt(2 / w.shape[1]), rel=0.35)
        assert not torch.isclose(layer.bias.detach(), initial[2 * i + 1]).any()


# -- rewinding, optimizer and lr schedule ---------------------------------------------------------------
class Watch(Callback):
    def __init__(self):
        self.lrs, self.adam_steps, self.weights = [], [], []

    def on_train_epoch_start(self, trainer, pl_module):
        opt = trainer.optimizers[0]
        self.lrs.append(opt.param_groups[0]["lr"])
        state = opt.state.get(next(iter(pl_module.stack.parameters())), {})  # the optimizer trains the stack
        self.adam_steps.append(int(state["step"]) if "step" in state else 0)
        self.weights.append([p.detach().clone() for p in pl_module.run.net.parameters()])


def test_every_rewind_resets_the_optimizer_and_the_lr_schedule(in_tmp):
    model, dm = tiny("relu", depth=4, width=6, lr_drops=[1], lr_drop_rate=0.1, lr=1e-2)
    initial = [p.detach().clone() for p in model.run.net.parameters()]
    pruning = Pruning(pruner="mag", sparsity=0.3, levels=3, pre_epochs=2, post_epochs=2)
    watch = Watch()
    trainer = pl.Trainer(accelerator="cpu", default_root_dir=str(in_tmp), logger=False, enable_checkpointing=False,
                         callbacks=[pruning, watch, RunSummary(verbose=False)], enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm)
    # each level and the final training restart the schedule: lr 1e-2, then 1e-3 after the drop at epoch 1
    assert watch.lrs == pytest.approx([1e-2, 1e-3] * 4)
    steps_per_epoch = watch.adam_steps[1]
    assert steps_per_epoch > 0
    assert watch.adam_steps == [0, steps_per_epoch] * 4  # Adam's state starts afresh after each rewind
    masks = [m for _, _, m in model.run.net.masked_parameters(bias=True)]
    for start in (2, 4, 6):  # rewound exactly to the planted values (the finally pruned ones read zero)
        assert all(torch.equal(w * m, w0 * m) for w, w0, m in zip(watch.weights[start], initial, masks))
    assert any(not torch.equal(w, w0) for w, w0 in zip(watch.weights[1], initial))  # training moved them


def test_rewind_restores_the_initial_values_exactly():
    model, dm = tiny("circle", depth=4)
    pruning = Pruning(pruner="mag", sparsity=0.3)
    pruning.remember_initial(model)
    initial = [p.detach().clone() for p in model.run.net.parameters()]
    pruning.prune_level(model.run, 0, dm)
    with torch.no_grad():
        for p in model.run.net.parameters():
            p.mul_(1.5).add_(0.25)
    pruning.rewind_weights(model)
    for (_, p, m), p0 in zip(model.run.net.masked_parameters(bias=True), initial):
        assert torch.equal(p, p0 * m)
    assert any(not bool(m.all()) for _, _, m in model.run.net.masked_parameters(bias=False))


# -- selection rule: tie-break, invert, scope -----------------------------------------------------------
def test_ties_go_to_the_lower_flat_index():
    new = topk_masks([torch.zeros(2, 3)], [torch.ones(2, 3)], density=0.5, scope="global")[0]
    assert new.flatten().tolist() == [1, 1, 1, 0, 0, 0]
    # across tensors in a global ranking: the earlier tensor first
    a, b = topk_masks([torch.ones(3), torch.ones(3)], [torch.ones(3), torch.ones(3)], density=4 / 6, scope="global")
    assert a.tolist() == [1, 1, 1] and b.tolist() == [1, 0, 0]
    # ties among equal scores below a strictly higher one
    new = topk_masks([torch.tensor([1.0, 2.0, 1.0, 1.0, 0.5])], [torch.ones(5)], density=0.6, scope="local")[0]
    assert new.tolist() == [1, 1, 1, 0, 0]


def test_invert_keeps_exactly_the_lowest_scores():
    model, dm = tiny("circle", depth=4)
    w = [l.weight.detach().abs().clone() for l in model.run.net.layers]
    Pruning(pruner="mag", sparsity=0.2, invert=True).prune_level(model.run, 0, dm)
    flat = torch.cat([x.flatten() for x in w])
    k = round(0.2 * flat.numel())
    expected = torch.zeros(flat.numel())
    expected[torch.argsort(flat)[:k]] = 1
    assert torch.equal(torch.cat([l.weight_mask.flatten() for l in model.run.net.layers]), expected)


def test_scope_local_keeps_the_fraction_of_each_tensor():
    model, dm = tiny("circle", depth=4)
    Pruning(pruner="rand", sparsity=0.3, scope="local", prune_bias=True).prune_level(model.run, 0, dm)
    counts = [int(m.sum()) for _, _, m in model.run.net.masked_parameters(bias=True)]
    # circle depth 4, width 20: weights 20x2, 20x20, 4x20 and biases 20, 20, 4
    assert counts == [12, 6, 120, 6, 24, 1]


# -- prune_epochs schedules ----------------------------------------------------------------------------
@pytest.mark.parametrize("schedule,levels,expected", [
    # singleshot to 0.125 in 3 rounds: 0.125^(1/3), ^(2/3), ^1
    ("exponential", 1, [0.5, 0.25, 0.125]),
    # linear: 1 - (1 - 0.25) r / 3
    ("linear", 1, [0.75, 0.5, 0.25]),
    # multishot, 2 levels to 0.0625: level targets 0.25 and 0.0625, 2 rounds each, each level's rounds
    # start from 1 (as the reference's prune loop), so a round above the current density prunes nothing
    ("exponential", 2, [0.5, 0.25, 0.25, 0.0625]),
    ("linear", 2, [0.625, 0.25, 0.25, 0.0625]),  # level 2, round 1: 1 - 0.9375 / 2 = 0.53 > 0.25
])
def test_prune_epochs_densities_per_round(schedule, levels, expected):
    from my_scorers import Spy

    target = {1: 0.125 if schedule == "exponential" else 0.25, 2: 0.0625}[levels]
    rounds = 3 if levels == 1 else 2
    model, dm = tiny("circle", depth=4)
    n = sum(l.weight.numel() for l in model.run.net.layers)
    Spy.calls.clear()
    pruning = Pruning(pruner="my_scorers.Spy", sparsity=target, levels=levels, prune_epochs=rounds, schedule=schedule)
    for level in range(levels):
        pruning.prune_level(model.run, level, dm)
    # the masks each round starts from, then the final one
    kept = [int(sum(m.sum() for m in c["masks"])) for c in Spy.calls][1:] + [int(sum(m.sum() for m in weight_masks(model)))]
    assert kept == [round(d * n) for d in expected]


# -- optimizers ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,cls,extra", [
    ("adam", torch.optim.Adam, {}),
    ("sgd", torch.optim.SGD, {"momentum": 0, "nesterov": False}),
    ("momentum", torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
    ("rms", torch.optim.RMSprop, {}),
])
def test_each_optimizer_name_builds_that_optimizer_with_its_settings(name, cls, extra):
    params = [torch.nn.Parameter(torch.zeros(3))]
    hp = {"optimizer": name, "lr": 0.0123, "weight_decay": 0.0045, "lr_drops": [3, 7], "lr_drop_rate": 0.2}
    conf = make_optimizer(hp, params)
    opt = conf["optimizer"]
    assert type(opt) is cls
    group = opt.param_groups[0]
    assert group["lr"] == 0.0123 and group["weight_decay"] == 0.0045
    for key, value in extra.items():
        assert group[key] == value
    sched = conf["lr_scheduler"]["scheduler"]
    assert isinstance(sched, torch.optim.lr_scheduler.MultiStepLR)
    assert dict(sched.milestones) == {3: 1, 7: 1} and sched.gamma == 0.2
    assert conf["lr_scheduler"]["interval"] == "epoch"


# -- checkpoint state ----------------------------------------------------------------------------------
def test_pruning_state_round_trips_through_a_checkpoint_dict():
    model, dm = tiny("circle", depth=4)
    pruning = Pruning(pruner="mag", sparsity=0.2, levels=2)
    pruning.remember_initial(model)
    pruning._initial_optim, pruning._initial_sched = [{"lr": 0.5}], [{"last_epoch": 3}]
    pruning.prune_level(model.run, 0, dm)
    pruning.levels_done, pruning.reset_pending = 1, True
    state = pruning.state_dict()
    restored = Pruning(pruner="mag", sparsity=0.2, levels=2)
    restored.load_state_dict(state)
    assert restored.levels_done == 1 and restored.reset_pending is True
    assert restored.events == pruning.events and len(restored.events) == 1
    assert restored._initial_optim == [{"lr": 0.5}] and restored._initial_sched == [{"last_epoch": 3}]
    assert restored._initial.keys() == pruning._initial.keys()
    assert all(torch.equal(restored._initial[k], v) for k, v in pruning._initial.items())
