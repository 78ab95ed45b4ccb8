"""The pruning callback's identity and checkpoint state: the settings that make a run's numbers (its
fingerprint), and a resume refused under other settings."""
import pytest
import torch

from helpers import tiny
from plantnseek.callbacks import Pruning
from plantnseek.core.edgepopup import EdgePopup
from plantnseek.core.scorers import Mag
from plantnseek.core.errors import UsageError


class MyMag(Mag):
    """A user's subclass of a built-in: same name, other class, so it must be named by its path."""


def test_config_lists_every_setting_that_changes_the_numbers():
    pruning = Pruning(pruner="snip", sparsity=None, compression=1.5, levels=2, pre_epochs=3, post_epochs=4,
                      prune_epochs=5, schedule="linear", scope="local", prune_bias=True, invert=True, shuffle=True,
                      reinitialize=True, prune_train_mode=True, rewind=False)
    assert pruning.config() == {
        "pruner": "snip", "sparsity": None, "compression": 1.5, "levels": 2, "pre_epochs": 3, "post_epochs": 4,
        "prune_epochs": 5, "schedule": "linear", "scope": "local", "budget": "uniform", "prune_bias": True, "invert": True,
        "shuffle": True, "reinitialize": True, "prune_train_mode": True, "rewind": False, "rewind_epoch": 0, "lr_rewind": False,
    }


def test_config_names_the_pruner_as_the_user_does():
    assert Pruning(pruner="mag").config()["pruner"] == "mag"
    assert Pruning(pruner=Mag()).config()["pruner"] == "mag"
    assert Pruning(pruner="my_scorers.SmallestMagnitude").config()["pruner"] == "my_scorers.SmallestMagnitude"
    assert Pruning(pruner=MyMag()).config()["pruner"] == f"{__name__}.MyMag"


def test_config_carries_the_scorers_constructor_arguments():
    config = Pruning(pruner=EdgePopup(epochs=3, lr=0.25, momentum=0.5, weight_decay=0.0, score_init="magnitude")).config()
    assert config["pruner"] == "edgepopup"
    assert {k: v for k, v in config.items() if k.startswith("pruner.")} == {
        "pruner.anneal": False, "pruner.epochs": 3, "pruner.lr": 0.25, "pruner.momentum": 0.5,
        "pruner.score_init": "magnitude", "pruner.weight_decay": 0.0}
    other = Pruning(pruner=EdgePopup(epochs=4, lr=0.25, momentum=0.5, weight_decay=0.0, score_init="magnitude"))
    assert other.config() != config


def test_a_resume_under_other_settings_is_refused_and_an_evaluation_is_not():
    model, dm = tiny("circle", depth=4)
    made = Pruning(pruner="mag", sparsity=0.2, levels=2)
    made.remember_initial(model)
    made.prune_level(model.run, 0, dm)
    made.levels_done, made.reset_pending = 1, True
    made.pruned = {"loss": 0.5, "accuracy": 0.75}
    state = made.state_dict()
    with pytest.raises(UsageError, match="pruning.sparsity"):
        Pruning(pruner="mag", sparsity=0.3, levels=2).load_state_dict(state)
    with pytest.raises(UsageError, match="pruning.pruner"):
        Pruning(pruner="snip", sparsity=0.2, levels=2).load_state_dict(state)
    same = Pruning(pruner="mag", sparsity=0.2, levels=2)
    same.load_state_dict(state)
    assert same.levels_done == 1 and same.events == made.events and same.pruned == made.pruned
    evaluating = Pruning(pruner="mag", sparsity=0.3, levels=2)
    evaluating._resuming_fit = False  # `plantnseek test --ckpt_path`: the checkpoint's own state is used
    evaluating.load_state_dict(state)
    assert evaluating.levels_done == 1 and evaluating.reset_pending is True
    assert set(evaluating.last_scores) == set(made.last_scores) and len(evaluating.score_log) == 1
    # a checkpoint from before fingerprints, score logs and the after-pruning metric
    old = {k: v for k, v in state.items() if k not in ("config", "last_scores", "score_log", "pruned")}
    loaded = Pruning(pruner="mag", sparsity=0.3, levels=2)
    loaded.load_state_dict(old)
    assert loaded.last_scores == {} and loaded.score_log == [] and loaded.pruned is None
    assert loaded.levels_done == 1 and loaded.events == made.events


class Sched:
    def __init__(self, scheduler):
        self.scheduler = scheduler


class ResumedTrainer:
    def __init__(self, opt, sched, datamodule, epoch):
        self.optimizers, self.lr_scheduler_configs = [opt], [Sched(sched)]
        self.datamodule, self.current_epoch, self.loggers = datamodule, epoch, []


def test_a_reset_pending_at_resume_is_done_before_training_goes_on():
    """A checkpoint taken right after a level (rewound, reset not yet done) resumes with the reset."""
    model, dm = tiny("circle", depth=4)
    p = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.Adam([p], lr=0.1)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[1], gamma=0.1)
    fresh_opt, fresh_sched = opt.state_dict(), sched.state_dict()
    p.grad = torch.ones(3)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01) and opt.state[p]["step"] == 1
    pruning = Pruning(pruner="mag", sparsity=0.2, levels=2, pre_epochs=1)
    pruning.density = pruning.target_density(model.run)
    pruning.remember_initial(model)
    pruning._initial_optim, pruning._initial_sched = [fresh_opt], [fresh_sched]
    pruning.levels_done, pruning.reset_pending = 1, True
    pruning.on_train_start(ResumedTrainer(opt, sched, dm, epoch=1), model)
    assert pruning.reset_pending is False and pruning.levels_done == 1
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1) and len(opt.state) == 0
    assert sched.last_epoch == 0


def test_a_fresh_callback_has_an_empty_state_that_round_trips():
    state = Pruning(pruner="mag", sparsity=0.2).state_dict()
    assert {k: v for k, v in state.items() if k != "config"} == {
        "levels_done": 0, "reset_pending": False, "events": [], "initial": None, "initial_optim": None,
        "initial_sched": None, "rewind_taken_at": 0, "last_scores": {}, "score_log": [], "pruned": None, "pruned_spread": None}
    restored = Pruning(pruner="mag", sparsity=0.2)
    restored.load_state_dict(state)
    assert restored.state_dict() == state


def test_only_a_resumed_fit_checks_the_checkpoints_settings():
    from types import SimpleNamespace

    from pytorch_lightning.trainer.states import TrainerFn

    for fn, resuming in ((TrainerFn.FITTING, True), (TrainerFn.TESTING, False), (TrainerFn.VALIDATING, False)):
        pruning = Pruning(pruner="mag", sparsity=0.3)
        pruning.on_load_checkpoint(SimpleNamespace(state=SimpleNamespace(fn=fn)), None, {})
        assert pruning._resuming_fit is resuming


def test_the_rewind_point_and_the_pruned_spread_round_trip_and_old_checkpoints_get_defaults():
    made = Pruning(pruner="mag", sparsity=0.2, levels=2, pre_epochs=3, rewind_epoch=2)
    made.rewind_taken_at, made.pruned_spread = 2, 0.25
    state = made.state_dict()
    restored = Pruning(pruner="mag", sparsity=0.2, levels=2, pre_epochs=3, rewind_epoch=2)
    restored.load_state_dict(state)
    assert restored.rewind_taken_at == 2 and restored.pruned_spread == 0.25
    # a checkpoint from before rewind_epoch and the dead-network check: its rewind point was fit start
    old = {k: v for k, v in state.items() if k not in ("config", "rewind_taken_at", "pruned_spread")}
    loaded = Pruning(pruner="mag", sparsity=0.2, levels=2)
    loaded.rewind_taken_at, loaded.pruned_spread = 5, 1.0  # whatever it held before is replaced
    loaded.load_state_dict(old)
    assert loaded.rewind_taken_at == 0 and type(loaded.rewind_taken_at) is int and loaded.pruned_spread is None
