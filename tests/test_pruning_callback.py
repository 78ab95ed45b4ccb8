"""The pruning callback's bookkeeping: defaults, validation, events, logged metrics, score log, checks."""
import pytest
import torch

from helpers import FakeTrainer, tiny
from plantnseek.callbacks import Pruning, Scorer
from plantnseek.core.scorers import SNIP, GraSP, Mag, Rand, SynFlow, Ticket
from plantnseek.core.errors import RunFailure, UsageError


class Fixed(Scorer):
    uses_data = False

    def __init__(self, make):
        self.make = make

    def score(self, ctx):
        return self.make(ctx)


def test_scorer_names_and_instances():
    assert [c().name for c in (Rand, Mag, SNIP, GraSP, SynFlow, Ticket)] == \
        ["rand", "mag", "snip", "grasp", "synflow", "ticket"]
    scorer = Mag()
    assert Pruning(pruner=scorer).scorer is scorer
    with pytest.raises(UsageError, match="pruner 3 is invalid"):
        Pruning(pruner=3)


def test_rewind_defaults_to_multishot_only():
    assert Pruning(levels=1).rewind is False
    assert Pruning(levels=2).rewind is True
    assert Pruning(levels=1, rewind=True).rewind is True
    assert Pruning(levels=3, rewind=False).rewind is False
    assert Pruning(levels=3, pre_epochs=2, post_epochs=5).total_epochs == 11


def test_smallest_target_that_keeps_one_parameter_is_allowed():
    model, _ = tiny("relu", depth=3, width=4)  # 4 + 4 prunable weights
    assert Pruning(sparsity=0.1).target_density(model.run) == 0.1  # round(0.8) = 1 parameter
    with pytest.raises(UsageError, match="smallest kept fraction is 0.062"):
        Pruning(sparsity=0.05).target_density(model.run)  # round(0.4) = 0


@pytest.mark.parametrize("training", [False, True])
def test_scoring_mode_is_restored(training):
    model, dm = tiny("circle", depth=4)
    model.train(training)
    seen = []
    Pruning(pruner=Fixed(lambda ctx: seen.append(ctx.net.training) or [p.detach().abs() for p in ctx.params]),
            sparsity=0.5, prune_train_mode=not training).prune_level(model.run, 0, dm)
    assert seen == [not training] and model.run.net.training is training


def test_event_score_log_and_logged_metrics():
    model, dm = tiny("circle", depth=4)
    weights = [l.weight.detach().abs().clone() for l in model.run.net.layers]
    trainer = FakeTrainer()
    pruning = Pruning(pruner="mag", sparsity=0.25)
    event = pruning.prune_level(model.run, 0, dm, trainer)
    total = sum(w.numel() for w in weights)
    kept = round(0.25 * total)
    assert event["level"] == 1 and event["density_target"] == 0.25
    assert event["kept"] == kept and event["prunable"] == total and event["density"] == kept / total
    masks = {f"layers.{i}.weight": l.weight_mask for i, l in enumerate(model.run.net.layers)}
    assert event["kept_fraction"] == {n: float(m.mean()) for n, m in masks.items()}
    assert set(event["test_after_prune"]) == {"loss", "accuracy"}
    assert pruning.events == [event]
    # the score log keeps each step's scores and resulting masks (the pictures use them)
    (entry,) = pruning.score_log
    assert entry["level"] == 1 and list(entry["scores"]) == list(masks)
    for (name, m), w in zip(masks.items(), weights):
        assert torch.equal(entry["masks"][name], m) and torch.equal(entry["scores"][name], w.double())
    # logged once, at step 1, with the event's numbers
    ((step, metrics),) = trainer.loggers[0].logged
    assert step == 1
    rec = event["recovery"]
    assert metrics["prune/density"] == event["density"] and metrics["prune/recall"] == rec["recall"]
    assert metrics["prune/precision"] == rec["precision"] and metrics["prune/collapsed"] == float(rec["collapsed"])
    assert metrics["prune/kept/layers.1.weight"] == event["kept_fraction"]["layers.1.weight"]
    for row in rec["layers"]:
        assert metrics[f"prune/recall/layers.{row['layer']}.weight"] == row["recall"]
        assert metrics[f"prune/precision/layers.{row['layer']}.weight"] == row["precision"]
    assert metrics["prune/dead_units/layers.0"] == rec["layers"][0]["dead_units"]
    assert "prune/dead_units/layers.2" not in metrics  # the output layer has no units to die


def test_without_a_datamodule_no_test_results_for_data_free_scorers():
    model, _ = tiny("circle", depth=4)
    event = Pruning(pruner="synflow", sparsity=0.3).prune_level(model.run, 0, None)
    assert "test_after_prune" not in event


@pytest.mark.parametrize("make,error,match", [
    (lambda ctx: [p.detach().abs() for p in ctx.params][:-1], RuntimeError, "returned 2 score tensors for 3"),
    (lambda ctx: [p.detach().abs().flatten() for p in ctx.params], RuntimeError, r"scored layers.0.weight with shape \(40,\)"),
    (lambda ctx: [torch.full_like(p, float("inf")) for p in ctx.params], RunFailure, "non-finite scores in layers.0.weight"),
    (lambda ctx: torch.ones(3), RunFailure, "pruner 'fixed' returned Tensor; score\\(\\) must return a list of torch tensors"),
    (lambda ctx: [p.detach().numpy() for p in ctx.params[:1]] + [1.0] + [p.detach() for p in ctx.params[2:]],
     RunFailure, "pruner 'fixed' returned a list holding float, ndarray; score"),
])
def test_bad_scores_are_refused(make, error, match):
    model, dm = tiny("circle", depth=4)
    with pytest.raises(error, match=match):
        Pruning(pruner=Fixed(make), sparsity=0.3).prune_level(model.run, 0, dm)


def test_singleshot_prunes_before_the_first_epoch(tmp_path):
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import Callback

    from plantnseek.callbacks import RunSummary

    class Seen(Callback):
        kept = []

        def on_train_epoch_start(self, trainer, pl_module):
            Seen.kept.append(sum(int(l.weight_mask.sum()) for l in pl_module.run.net.layers))

    model, dm = tiny("circle", depth=4)
    pruning = Pruning(pruner="synflow", sparsity=0.2, pre_epochs=0, post_epochs=1)
    trainer = pl.Trainer(accelerator="cpu", default_root_dir=str(tmp_path), logger=False, enable_checkpointing=False,
                         callbacks=[pruning, Seen(), RunSummary(verbose=False)], enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm)
    assert Seen.kept == [round(0.2 * 520)]
    assert len(pruning.events) == 1 and "test_after_prune" in pruning.events[0]


@pytest.mark.parametrize("pruner,match", [("snip", "needs data"), ("grasp", "needs data"),
                                          ("edgepopup", "trains on data")])
def test_scorers_that_need_data_refuse_a_datamodule_without_it(pruner, match):
    model, _ = tiny("circle", depth=4)

    class NoData:
        pass

    for datamodule in (None, NoData()):
        with pytest.raises(UsageError, match=f"pruner '{pruner}' {match}: use a plantnseek.PlantedDataModule"):
            Pruning(pruner=pruner, sparsity=0.3).prune_level(model.run, 0, datamodule)


class Record(Scorer):
    """Records the scoring context it is given; scores like magnitude."""

    uses_data = False
    uses_train = False

    def __init__(self):
        self.seen = []

    def score(self, ctx):
        self.seen.append({"generator_seed": ctx.generator.initial_seed(), "batches": ctx.batches,
                          "train": ctx.train, "batch_size": ctx.batch_size, "density": ctx.density,
                          "budget": ctx.budget})
        return [p.detach().abs() for p in ctx.params]


def test_each_scoring_round_gets_its_own_seeded_generator():
    from plantnseek.callbacks.pruning import STREAM_SCORE
    from plantnseek.core.sampling import torch_generator

    seen = {}
    for seed in (1, 2):
        model, dm = tiny("circle", depth=4, seed=seed)
        scorer = Record()
        pruning = Pruning(pruner=scorer, sparsity=0.1, levels=2, prune_epochs=2)
        for level in range(2):
            pruning.prune_level(model.run, level, dm)
        seen[seed] = [c["generator_seed"] for c in scorer.seen]
        # (seed, stream, level, round) -> the generator: pinned, so a run's random scores never change
        assert seen[seed] == [torch_generator(seed, STREAM_SCORE, l, r).initial_seed() for l in (0, 1) for r in (0, 1)]
    assert len(set(seen[1] + seen[2])) == 8  # every seed, level and round draws afresh


def test_data_free_scorers_get_no_batches_and_trainers_get_the_train_split():
    model, dm = tiny("circle", depth=4)
    scorer = Record()
    Pruning(pruner=scorer, sparsity=0.3, scope="local").prune_level(model.run, 0, dm)
    (ctx,) = scorer.seen
    assert ctx["batches"] == [] and ctx["train"] is None and ctx["budget"] == "uniform" and ctx["density"] == 0.3

    class Trains(Record):
        uses_train = True

    from plantnseek.data import PlantedDataModule

    dm = PlantedDataModule(dataset="circle", n_samples=600, train_batch_size=16, seed=1, prune_dataset_ratio=5)
    trains = Trains()
    Pruning(pruner=trains, sparsity=0.3).prune_level(model.run, 0, dm)
    (ctx,) = trains.seen
    assert ctx["batch_size"] == 16
    x, y = ctx["train"]
    x_ref, y_ref = dm.split("train")
    assert torch.equal(x, x_ref) and torch.equal(y, y_ref)


def test_shuffle_draws_from_its_own_stream_per_seed_and_level():
    from plantnseek.callbacks.pruning import STREAM_SHUFFLE
    from plantnseek.core.sampling import torch_generator
    from plantnseek.core.masking import shuffle_masks

    for seed in (1, 2):
        model, dm = tiny("circle", depth=4, seed=seed)
        twin, _ = tiny("circle", depth=4, seed=seed)
        shuffled = Pruning(pruner="mag", sparsity=0.2, levels=2, shuffle=True)
        plain = Pruning(pruner="mag", sparsity=0.2, levels=2)
        for level in range(2):
            alive = [m.clone() for _, _, m in model.run.net.masked_parameters(bias=False)]
            # the same ranking on the twin, from the same starting masks, without the shuffle
            with torch.no_grad():
                for (_, _, m), a in zip(twin.run.net.masked_parameters(bias=False), alive):
                    m.copy_(a)
            plain.prune_level(twin.run, level, dm)
            shuffled.prune_level(model.run, level, dm)
            ranked = [m.clone() for _, _, m in twin.run.net.masked_parameters(bias=False)]
            expected = shuffle_masks(ranked, alive, torch_generator(seed, STREAM_SHUFFLE, level))
            got = [m for _, _, m in model.run.net.masked_parameters(bias=False)]
            assert all(torch.equal(g, e) for g, e in zip(got, expected)), (seed, level)


def test_a_layer_wise_budget_shares_the_kept_weights_among_the_layers():
    model, _ = tiny("circle", depth=4)
    weights = [l.weight.detach().abs().reshape(-1).tolist() for l in model.run.net.layers]
    Pruning(pruner="mag", sparsity=0.1, budget="balanced").prune_level(model.run, 0, None)
    # 40 + 400 + 80 = 520 weights, 52 kept: 52/3 = 17 1/3 per layer (every layer is larger); the three
    # remainders tie, so the extra weight goes to the first layer
    kept = [l.weight_mask.reshape(-1) for l in model.run.net.layers]
    assert [int(m.sum()) for m in kept] == [18, 17, 17]
    for w, m, k in zip(weights, kept, (18, 17, 17)):  # each layer keeps its own largest magnitudes
        assert m.nonzero().flatten().tolist() == sorted(sorted(range(len(w)), key=lambda i: (-w[i], i))[:k])
