"""Training against a plain PyTorch loop written here: masked forward, one loss per run, unfused Adam.

Both training paths (the native kernel, and the PyTorch fallback with its hand-written backward and
fused optimizer) compute with the stored weights (pruned entries kept at zero after every step);
none of that may change the mathematics. The reference below shares none of it: per run,
``x (W * M)^T + b * M_b`` with ``F.linear`` and ``torch.optim.Adam(foreach=False)``, over the same batches.
"""
import pytorch_lightning as pl
import pytest
import torch
import torch.nn.functional as F

from plantnseek.data import PlantedDataModule, PerRunData
from plantnseek.core.sampling import TensorBatches
from plantnseek.module import PlantedMLP

SEEDS = (3, 4)


def masked_reference(model, dms, masks, epochs, lr):
    """Each run trained alone by a plain loop; returns its final weights and biases (masked)."""
    results = []
    for r, dm in enumerate(dms):
        params = [torch.nn.Parameter(p[r].detach().clone()) for p in (*model.stack.weights, *model.stack.biases)]
        depth = len(params) // 2
        ws, bs = params[:depth], params[depth:]
        wm, bm = masks[r]
        opt = torch.optim.Adam(params, lr=lr, foreach=False, fused=False)
        loader = TensorBatches(*dm.split("train"), batch_size=dm.hparams.train_batch_size, shuffle=True, seed=dm.seed)
        for _ in range(epochs):
            for x, y in loader:
                h = x
                for l in range(depth):
                    h = F.linear(h, ws[l] * wm[l], bs[l] * bm[l])
                    h = torch.relu(h) if l < depth - 1 else h
                opt.zero_grad()
                F.cross_entropy(h, y).backward()
                opt.step()
        results.append(([w.detach() * m for w, m in zip(ws, wm)], [b.detach() * m for b, m in zip(bs, bm)]))
    return results


@pytest.mark.parametrize("path", ["kernel", "pytorch"])
@pytest.mark.parametrize("prune_first", [False, True])
def test_stacked_training_equals_a_plain_masked_loop(tmp_path, prune_first, path, monkeypatch):
    monkeypatch.setenv("PLANTNSEEK_KERNEL", "native" if path == "kernel" else "torch")
    model = PlantedMLP(dataset="circle", depth=4, width=20, seed=list(SEEDS), lr=0.01)
    dms = [PlantedDataModule(dataset="circle", n_samples=400, train_batch_size=32, seed=s, batches_per_step=3)
           for s in SEEDS]
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for l in range(len(model.stack.weights)):
            wm, bm = model.stack.masks(l)
            wm.copy_(torch.rand(wm.shape, generator=gen) < 0.5)
            if prune_first:
                bm.copy_(torch.rand(bm.shape, generator=gen) < 0.7)
        # pruned entries are left non-zero on purpose: training must not depend on them being zeroed
        masks = [([model.stack.masks(l)[0][r].clone() for l in range(3)], [model.stack.masks(l)[1][r].clone() for l in range(3)])
                 for r in range(len(SEEDS))]
    expected = masked_reference(model, dms, masks, epochs=2, lr=0.01)
    initial = model.stack.weights[1].detach().clone()
    trainer = pl.Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         default_root_dir=str(tmp_path))
    trainer.fit(model, datamodule=PerRunData(dms))
    assert model.engine == path
    for r, (ws, bs) in enumerate(expected):
        for l in range(3):
            wm, bm = masks[r][0][l], masks[r][1][l]
            w, b = model.stack.weights[l][r].detach(), model.stack.biases[l][r].detach()
            assert torch.count_nonzero(w[wm == 0]) == 0 and torch.count_nonzero(b[bm == 0]) == 0  # stored as zeros
            torch.testing.assert_close(w, ws[l], rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(b, bs[l], rtol=1e-4, atol=1e-5)
        assert not torch.allclose(model.stack.weights[1][r].detach(), initial[r] * masks[r][0][1])  # it trained


def test_masked_and_unmasked_forward_agree_once_pruned_entries_are_zero():
    model = PlantedMLP(dataset="helix", depth=4, width=30, seed=[1, 2])
    with torch.no_grad():
        model.stack.masks(1)[0][:, ::3] = 0
    x = torch.randn(2, 5, 1)
    masked = model.stack(x)
    assert not torch.allclose(model.stack(x, masked=False), masked)  # pruned entries still stored
    model.stack.zero_pruned()
    assert torch.equal(model.stack(x, masked=False), masked)
    assert torch.count_nonzero(model.stack.weights[1][:, ::3]) == 0
