"""The training path: grouping batches per Lightning step changes speed only; lr drops and optimizers."""
import pytest
import torch

from helpers import fit, tiny


def test_batches_per_step_changes_nothing_but_speed(tmp_path):
    results = []
    for group in (1, 3, 32):
        model, dm = tiny("relu", depth=4, width=6, batches_per_step=group)
        fit(model, dm, root=str(tmp_path / str(group)), max_epochs=2, enable_checkpointing=False, logger=False)
        results.append(([p.detach().clone() for p in model.parameters()], model.run.history))
    for params, history in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0][0], params))
        assert history == results[0][1]


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "momentum", "rms"])
def test_optimizers_and_lr_drops(optimizer, tmp_path):
    model, dm = tiny("circle", depth=4, optimizer=optimizer, lr=0.01, lr_drops=[1, 2], lr_drop_rate=0.5)
    trainer = fit(model, dm, root=str(tmp_path), max_epochs=3, enable_checkpointing=False, logger=False)
    opt = trainer.optimizers[0]
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01 * 0.5 * 0.5)
    if optimizer == "momentum":
        assert opt.param_groups[0]["nesterov"] and opt.param_groups[0]["momentum"] == 0.9
    assert len(model.run.history) == 3 and all("train_loss" in row for row in model.run.history)
    assert trainer.global_step > 0
