"""When the pruning callback does what: levels due after each epoch, rewind, reinitialisation and the
``pruned`` evaluation only after the last level — driven directly, without a Trainer, step by step."""
import copy
from types import SimpleNamespace

import pytest
import torch

from helpers import FakeTrainer, RecordingLogger, tiny
from plantnseek.callbacks import Pruning
from plantnseek.callbacks.pruning import STREAM_REINIT
from plantnseek.core.sampling import stream
from plantnseek.core.errors import UsageError
from plantnseek.core.planting import he_scaled_init


def params(model):
    return [p.detach().clone() for p in model.run.net.parameters()]


def masks(model):
    return [m.detach().clone() for _, _, m in model.run.net.masked_parameters(bias=True)]


def disturb(model):
    with torch.no_grad():
        for p in model.run.net.parameters():
            p.add_(0.5)


def test_levels_run_when_their_pre_epochs_are_done():
    model, dm = tiny("circle", depth=4)
    trainer = FakeTrainer(dm)
    pruning = Pruning(pruner="mag", sparsity=0.1, levels=3, pre_epochs=2)
    pruning.density = pruning.target_density(model.run)
    pruning.remember_initial(model)
    done = []
    for epochs in range(8):
        pruning._run_due_levels(trainer, model, epochs_done=epochs)
        done.append(pruning.levels_done)
    assert done == [0, 0, 1, 1, 2, 2, 3, 3]  # level l after 2 l epochs, each once
    assert [e["level"] for e in pruning.events] == [1, 2, 3]
    # several levels due at once (a resume, or pre_epochs 0) run in order in one call
    other = Pruning(pruner="mag", sparsity=0.1, levels=3, pre_epochs=0)
    other.density = other.target_density(model.run)
    other.remember_initial(model)
    other._run_due_levels(trainer, model, epochs_done=0)
    assert other.levels_done == 3 and [e["level"] for e in other.events] == [1, 2, 3]


def test_rewind_after_every_level_and_the_reset_is_left_to_the_next_epoch():
    model, dm = tiny("circle", depth=4)
    trainer = FakeTrainer(dm)
    initial = params(model)
    pruning = Pruning(pruner="mag", sparsity=0.1, levels=2, pre_epochs=1)
    pruning.density = pruning.target_density(model.run)
    pruning.remember_initial(model)
    disturb(model)  # as if trained for an epoch
    pruning._run_due_levels(trainer, model, epochs_done=1)
    assert pruning.levels_done == 1 and pruning.reset_pending is True
    assert all(torch.equal(p, p0 * m) for p, p0, m in zip(params(model), initial, masks(model)))
    assert pruning.pruned is None and trainer.loggers[0].logged[-1][0] == 1  # not the last level yet


def test_without_rewind_the_trained_weights_stay():
    model, dm = tiny("circle", depth=4)
    trainer = FakeTrainer(dm)
    pruning = Pruning(pruner="mag", sparsity=0.1, levels=2, pre_epochs=1, rewind=False)
    pruning.density = pruning.target_density(model.run)
    pruning.remember_initial(model)
    disturb(model)
    trained = params(model)
    pruning._run_due_levels(trainer, model, epochs_done=1)
    assert pruning.reset_pending is False
    assert all(torch.equal(p, p0 * m) for p, p0, m in zip(params(model), trained, masks(model)))


def test_reinitialize_only_after_the_last_level_and_pruned_recorded_once():
    model, dm = tiny("circle", depth=4, seed=5)
    trainer = FakeTrainer(dm)
    run_logger = RecordingLogger()
    model.run_loggers = [[run_logger]]  # the run's own logger (as in a sweep)
    initial = params(model)
    pruning = Pruning(pruner="mag", sparsity=0.1, levels=2, pre_epochs=1, reinitialize=True)
    pruning.density = pruning.target_density(model.run)
    pruning.remember_initial(model)
    pruning._run_due_levels(trainer, model, epochs_done=1)
    # level 1 of 2: rewound to the planted values, not reinitialised
    assert all(torch.equal(p, p0 * m) for p, p0, m in zip(params(model), initial, masks(model)))
    assert pruning.pruned is None
    pruning._run_due_levels(trainer, model, epochs_done=2)
    fresh = he_scaled_init(model.run.net.widths, stream(5, STREAM_REINIT))
    expected = [torch.as_tensor(a, dtype=torch.float32) for wb in fresh for a in wb]
    assert all(torch.equal(p, e * m) for p, e, m in zip(params(model), expected, masks(model)))
    # the pruned network is evaluated once, as post-training starts from it (reinitialised)
    assert pruning.pruned == model.run.evaluate(dm.test_dataloader())
    assert run_logger.logged == [(0, {f"test_pruned/{k}": v for k, v in pruning.pruned.items()})]


def test_a_schedule_without_training_prunes_at_fit_end():
    model, dm = tiny("circle", depth=4)
    trainer = FakeTrainer(dm)
    trainer.current_epoch = 0
    pruning = Pruning(pruner="mag", sparsity=0.1, levels=1, pre_epochs=0, post_epochs=0)
    pruning.density = pruning.target_density(model.run)
    pruning.on_fit_end(trainer, model)
    assert pruning.levels_done == 1 and pruning._initial is not None and pruning.pruned is not None
    kept = sum(int(m.sum()) for _, _, m in model.run.net.masked_parameters(bias=False))
    assert kept == round(0.1 * sum(m.numel() for _, _, m in model.run.net.masked_parameters(bias=False)))
    pruning.on_fit_end(trainer, model)  # a second call (fit ended again) does not prune again
    assert len(pruning.events) == 1


def test_ticket_density_counts_biases_only_when_they_are_prunable():
    model, _ = tiny("circle", depth=4)
    wm, bm = model.run.ticket.weight_masks(), model.run.ticket.bias_masks()
    by_hand = sum(float(m.sum()) for m in wm) / sum(m.numel() for m in wm)
    with_bias = (sum(float(m.sum()) for m in wm + bm)) / sum(m.numel() for m in wm + bm)
    assert by_hand != pytest.approx(with_bias)
    assert Pruning(sparsity=-1).ticket_density(model.run) == pytest.approx(by_hand)
    assert Pruning(sparsity=-1, prune_bias=True).ticket_density(model.run) == pytest.approx(with_bias)
    assert Pruning(sparsity=-1, prune_bias=True).target_density(model.run) == pytest.approx(with_bias)


class FitLoop:
    max_epochs = None


class SetupTrainer:
    def __init__(self):
        self.fit_loop = FitLoop()


def test_setup_checks_the_model_and_the_target_before_any_training():
    model, _ = tiny("relu", depth=3, width=4)  # 8 prunable weights
    trainer = SetupTrainer()
    pruning = Pruning(pruner="mag", sparsity=0.25, levels=2, pre_epochs=3, post_epochs=4)
    pruning.setup(trainer, model, stage="fit")
    assert pruning.density == 0.25 and trainer.fit_loop.max_epochs == 10
    other = SetupTrainer()
    Pruning(pruner="mag", sparsity=0.25).setup(other, model, stage="test")  # only fitting is scheduled
    assert other.fit_loop.max_epochs is None
    with pytest.raises(UsageError, match="sparsity 0.05 keeps no parameter"):
        Pruning(pruner="mag", sparsity=0.05).setup(SetupTrainer(), model, stage="fit")

    class OnlyNet(torch.nn.Module):
        net = model.run.net

    class OnlyTicket(torch.nn.Module):
        ticket = model.run.ticket

    for wrong in (OnlyNet(), OnlyTicket(), torch.nn.Linear(2, 2)):
        with pytest.raises(UsageError, match="^the Pruning callback needs a plantnseek.PlantedMLP model, not (OnlyNet|OnlyTicket|Linear)$"):
            Pruning(pruner="mag").setup(SetupTrainer(), wrong, stage="fit")


def test_pruned_is_not_recorded_without_a_test_split():
    model, _ = tiny("circle", depth=4)

    class NoTestSplit:
        pass

    for datamodule in (None, NoTestSplit()):
        trainer = FakeTrainer(datamodule)
        pruning = Pruning(pruner="mag", sparsity=0.1)
        pruning.record_pruned(trainer, model)
        assert pruning.pruned is None


def test_lr_rewinding_keeps_the_trained_weights_and_leaves_the_reset_to_the_next_epoch():
    model, dm = tiny("circle", depth=4)
    trainer = FakeTrainer(dm)
    pruning = Pruning(pruner="mag", sparsity=0.1, levels=2, pre_epochs=1, lr_rewind=True)
    pruning.density = pruning.target_density(model.run)
    pruning.remember_initial(model)
    disturb(model)
    trained = params(model)
    pruning._run_due_levels(trainer, model, epochs_done=1)
    assert pruning.levels_done == 1 and pruning.reset_pending is True
    assert all(torch.equal(p, p0 * m) for p, p0, m in zip(params(model), trained, masks(model)))


def test_setup_refuses_a_stack_of_runs_and_names_the_per_run_callback():
    from plantnseek.module import PlantedMLP

    model = PlantedMLP(dataset="relu", depth=3, width=4, seed=[1, 2])  # two runs stacked
    with pytest.raises(UsageError, match=r"^one Pruning callback prunes one run; this model stacks 2 runs "
                                         r"\(give each its own Pruning: plantnseek\.callbacks\.PerRunPruning\)$"):
        Pruning(pruner="mag", sparsity=0.25).setup(SetupTrainer(), model, stage="fit")


class EpochTrainer(FakeTrainer):
    """A trainer driven by hand across epochs, with the model's own optimizer (Adam) and lr schedule."""

    def __init__(self, model, datamodule):
        super().__init__(datamodule)
        conf = model.configure_optimizers()
        self.optimizers = [conf["optimizer"]]
        self.lr_scheduler_configs = [SimpleNamespace(scheduler=conf["lr_scheduler"]["scheduler"])]
        self.current_epoch = 0


def train_steps(trainer, model, steps):
    """Optimizer steps on a made-up gradient: they move the weights and Adam's state (step, moments)."""
    for s in range(steps):
        for p in model.stack.parameters():
            p.grad = torch.full_like(p, 0.1 * (s + 1))
        trainer.optimizers[0].step()


def end_epoch(trainer, pruning, model):
    """The end of an epoch as Lightning orders it: callbacks, then the lr step; the next epoch starts."""
    pruning.on_train_epoch_end(trainer, model)
    trainer.lr_scheduler_configs[0].scheduler.step()
    trainer.current_epoch += 1
    pruning.on_train_epoch_start(trainer, model)


def optimizer_state(trainer):
    opt, sched = trainer.optimizers[0], trainer.lr_scheduler_configs[0].scheduler
    return copy.deepcopy(opt.state_dict()["state"]), opt.param_groups[0]["lr"], sched.last_epoch


def same_state(a, b):
    (sa, lra, ea), (sb, lrb, eb) = a, b
    return (lra, ea) == (lrb, eb) and sa.keys() == sb.keys() and all(
        sa[i].keys() == sb[i].keys() and all(torch.equal(sa[i][k], sb[i][k]) for k in sa[i]) for i in sa)


def test_rewind_epoch_k_is_taken_once_at_epoch_k_and_restored_after_every_level():
    model, dm = tiny("circle", depth=4, lr_drops=[1], lr_drop_rate=0.5)
    trainer = EpochTrainer(model, dm)
    pruning = Pruning(pruner="mag", sparsity=0.2, levels=3, pre_epochs=2, post_epochs=0, rewind_epoch=1)
    pruning.density = pruning.target_density(model.run)
    pruning.on_train_start(trainer, model)
    pruning.on_train_epoch_start(trainer, model)
    assert pruning.rewind_taken_at == 0
    at_k = None
    for epoch in range(6):  # levels end with epochs 1, 3 and 5
        assert trainer.current_epoch == epoch
        if epoch == 1:  # what the rewinds must restore: the state after one epoch, lr drop included
            assert pruning.rewind_taken_at == 1
            at_k = params(model), optimizer_state(trainer)
            assert at_k[1][1] == pytest.approx(0.5e-3) and at_k[1][0]  # Adam has state by now
        if epoch in (2, 4):  # a level ended with the previous epoch: rewound there, reset at this start
            assert pruning.reset_pending is False and pruning.rewind_taken_at == 1
            assert all(torch.equal(p, p0 * m) for p, p0, m in zip(params(model), at_k[0], masks(model)))
            assert same_state(optimizer_state(trainer), at_k[1])
        train_steps(trainer, model, 2)
        end_epoch(trainer, pruning, model)
    assert pruning.levels_done == 3


def test_a_resume_inside_epoch_k_keeps_the_rewind_point_it_saved():
    model, dm = tiny("circle", depth=4)
    trainer = EpochTrainer(model, dm)
    settings = dict(pruner="mag", sparsity=0.2, levels=2, pre_epochs=2, post_epochs=0, rewind_epoch=1)
    pruning = Pruning(**settings)
    pruning.density = pruning.target_density(model.run)
    pruning.on_train_start(trainer, model)
    pruning.on_train_epoch_start(trainer, model)
    train_steps(trainer, model, 2)
    end_epoch(trainer, pruning, model)  # epoch 1 starts: the rewind point is taken
    at_k = params(model)
    train_steps(trainer, model, 1)  # part of epoch 1, then a checkpoint and a resume
    resumed = Pruning(**settings)
    resumed.load_state_dict(copy.deepcopy(pruning.state_dict()))
    resumed.density = resumed.target_density(model.run)
    resumed.on_train_start(trainer, model)  # Lightning restarts the interrupted epoch 1
    resumed.on_train_epoch_start(trainer, model)
    assert resumed.rewind_taken_at == 1
    train_steps(trainer, model, 1)
    resumed.on_train_epoch_end(trainer, model)  # the first level: back to the start of epoch 1
    assert resumed.levels_done == 1
    assert all(torch.equal(p, p0 * m) for p, p0, m in zip(params(model), at_k, masks(model)))
