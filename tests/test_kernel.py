"""The native training kernel against an independent computation, and its build and fallback.

The reference here shares nothing with the kernel: per run, a plain masked MLP (``F.linear`` of
``W * M``), autograd, and ``torch.optim``'s own single-tensor optimizers. In float64 the two must agree
to rounding (1e-10) after several steps, for every optimizer and both losses; in float32 a stack must
equal each of its runs trained alone, bit for bit.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from plantnseek.engine import kernel
from plantnseek.engine.kernel_build import library_path, mode
from plantnseek.core.errors import RunFailure, UsageError
from plantnseek.core.layers import StackedMLP
from plantnseek.module import make_optimizer

WIDTHS = [3, 13, 9, 4]  # odd sizes: padding to the vector width must not show
STEPS, BATCH, RUNS = 5, 7, 3


def make_stack(dtype=torch.float64, seed=0, runs=RUNS, widths=WIDTHS):
    gen = torch.Generator().manual_seed(seed)
    stack = StackedMLP(runs, widths).to(dtype)
    with torch.no_grad():
        for l, (w, b) in enumerate(zip(stack.weights, stack.biases)):
            w.copy_(torch.randn(w.shape, generator=gen, dtype=dtype) * 0.5)
            b.copy_(torch.randn(b.shape, generator=gen, dtype=dtype) * 0.1)
            wm, bm = stack.masks(l)
            wm.copy_(torch.rand(wm.shape, generator=gen) < 0.6)
            bm.copy_(torch.rand(bm.shape, generator=gen) < 0.8)
        stack.zero_pruned()
    return stack


def make_batches(classification, dtype=torch.float64, seed=1, runs=RUNS, widths=WIDTHS, steps=STEPS, batch=BATCH):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        x = torch.randn(runs, batch, widths[0], generator=gen, dtype=dtype)
        y = (torch.randint(0, widths[-1], (runs, batch), generator=gen) if classification
             else torch.randn(runs, batch, widths[-1], generator=gen, dtype=dtype))
        out.append((x, y))
    return out


def hparams(optimizer, lr=0.01, weight_decay=0.0):
    return {"optimizer": optimizer, "lr": lr, "weight_decay": weight_decay, "lr_drops": [], "lr_drop_rate": 0.1}


def reference(stack, r, batches, classification, hp):
    """Run ``r`` trained alone by autograd and torch.optim (single-tensor), masked forward."""
    depth = len(stack.weights)
    ws = [torch.nn.Parameter(w[r].detach().clone()) for w in stack.weights]
    bs = [torch.nn.Parameter(b[r].detach().clone()) for b in stack.biases]
    wms = [stack.masks(l)[0][r] for l in range(depth)]
    bms = [stack.masks(l)[1][r] for l in range(depth)]
    opt_kw = {"lr": hp["lr"], "weight_decay": hp["weight_decay"], "foreach": False}
    opt = {"adam": lambda p: torch.optim.Adam(p, **opt_kw),
           "sgd": lambda p: torch.optim.SGD(p, **opt_kw),
           "momentum": lambda p: torch.optim.SGD(p, momentum=0.9, nesterov=True, **opt_kw),
           "rms": lambda p: torch.optim.RMSprop(p, **opt_kw)}[hp["optimizer"]](ws + bs)
    losses = []
    for x, y in batches:
        h = x[r]
        for l in range(depth):
            h = F.linear(h, ws[l] * wms[l], bs[l] * bms[l])
            h = torch.relu(h) if l < depth - 1 else h
        loss = F.cross_entropy(h, y[r]) if classification else F.mse_loss(h, y[r])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return [w.detach() * m for w, m in zip(ws, wms)], [b.detach() * m for b, m in zip(bs, bms)], losses


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "momentum", "rms"])
@pytest.mark.parametrize("classification", [True, False])
def test_kernel_equals_autograd_and_torch_optim_in_float64(optimizer, classification):
    stack = make_stack()
    batches = make_batches(classification)
    hp = hparams(optimizer, weight_decay=0.01 if optimizer != "sgd" else 0.0)
    expected = [reference(stack, r, batches, classification, hp) for r in range(RUNS)]
    opt = make_optimizer(hp, stack.parameters())["optimizer"]
    t = stack.tensors()
    assert kernel.usable([*t.weights, *t.biases], opt)
    total, count = kernel.train(*t, opt, batches[:2], classification)  # in two calls: the step count carries
    more, rest = kernel.train(*t, opt, batches[2:], classification)
    total, count = total + more, count + rest
    assert count == STEPS * BATCH
    for r, (ws, bs, losses) in enumerate(expected):
        for l in range(len(WIDTHS) - 1):
            torch.testing.assert_close(stack.weights[l][r].detach(), ws[l], rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(stack.biases[l][r].detach(), bs[l], rtol=1e-10, atol=1e-12)
            wm, bm = stack.masks(l)
            assert torch.count_nonzero(stack.weights[l][r][wm[r] == 0]) == 0  # pruned entries stay zero
            assert torch.count_nonzero(stack.biases[l][r][bm[r] == 0]) == 0
        assert float(total[r]) == pytest.approx(sum(losses) * BATCH, rel=1e-10)


@pytest.mark.parametrize("optimizer", ["adam", "momentum", "rms"])
def test_kernel_keeps_torch_optim_state_so_the_paths_can_alternate(optimizer):
    """Kernel steps then PyTorch steps equal PyTorch steps throughout: the optimizer state (moments,
    step count) is torch.optim's own, so checkpoints and resumes do not depend on the path."""
    hp = hparams(optimizer)
    batches = make_batches(True, steps=6)
    a, b = make_stack(), make_stack()
    opt_a = make_optimizer(hp, a.parameters())["optimizer"]
    opt_b = make_optimizer(hp, b.parameters())["optimizer"]
    kernel.train(*a.tensors(), opt_a, batches[:3], True)
    for stack, opt, part in ((a, opt_a, batches[3:]), (b, opt_b, batches)):
        for x, y in part:  # the PyTorch path: autograd, torch.optim
            opt.zero_grad()
            F.cross_entropy(stack(x).transpose(1, 2), y, reduction="none").mean(dim=1).sum().backward()
            opt.step()
            stack.zero_pruned()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)


def test_a_stack_trains_each_run_exactly_as_alone_in_float32():
    widths = [2, 100, 100, 2]
    stack = make_stack(torch.float32, runs=4, widths=widths)
    batches = make_batches(True, torch.float32, runs=4, widths=widths, batch=32, steps=4)
    alone = []
    for r in range(4):
        one = StackedMLP(1, widths)
        with torch.no_grad():
            for src, dst in zip([*stack.parameters(), *stack.buffers()], [*one.parameters(), *one.buffers()]):
                dst.copy_(src[r:r + 1])
        opt = make_optimizer(hparams("adam"), one.parameters())["optimizer"]
        kernel.train(*one.tensors(), opt, [(x[r:r + 1], y[r:r + 1]) for x, y in batches], True)
        alone.append(one)
    opt = make_optimizer(hparams("adam"), stack.parameters())["optimizer"]
    kernel.train(*stack.tensors(), opt, batches, True)
    for r, one in enumerate(alone):
        for p, q in zip(stack.parameters(), one.parameters()):
            assert torch.equal(p[r], q[0])


def test_batches_of_different_sizes_and_bad_labels():
    stack = make_stack()
    opt = make_optimizer(hparams("sgd"), stack.parameters())["optimizer"]
    batches = make_batches(True, steps=2) + make_batches(True, steps=1, batch=3)
    expected = [reference(stack, r, batches, True, hparams("sgd")) for r in range(RUNS)]
    total, count = kernel.train(*stack.tensors(), opt, batches, True)
    assert count == 2 * BATCH + 3
    torch.testing.assert_close(stack.weights[1][2].detach(), expected[2][0][1], rtol=1e-10, atol=1e-12)
    sizes = [BATCH, BATCH, 3]
    for r in range(RUNS):
        assert float(total[r]) == pytest.approx(sum(l * n for l, n in zip(expected[r][2], sizes)), rel=1e-10)
    x, y = batches[0]
    before = [p.detach().clone() for p in stack.parameters()]
    with pytest.raises(RunFailure, match="class labels must lie in 0..3; got 0..4"):
        kernel.train(*stack.tensors(), opt, [(x, torch.full_like(y, 4).index_fill_(1, torch.tensor([0]), 0))], True)
    assert all(torch.equal(a, b) for a, b in zip(before, stack.parameters()))  # nothing changed


def test_the_kernel_is_used_only_where_it_applies(monkeypatch):
    stack = make_stack()
    params = list(stack.parameters())
    assert kernel.usable(params, make_optimizer(hparams("adam"), params)["optimizer"])
    assert not kernel.usable(params, torch.optim.Adam(params, amsgrad=True))
    assert not kernel.usable(params, torch.optim.SGD(params, lr=0.1, momentum=0.9))  # not Nesterov
    assert not kernel.usable(params, torch.optim.Adagrad(params))
    assert not kernel.usable(params[:2], torch.optim.SGD(params, lr=0.1))  # other parameters
    monkeypatch.setenv("PLANTNSEEK_KERNEL", "torch")
    assert not kernel.usable(params, make_optimizer(hparams("adam"), params)["optimizer"])
    monkeypatch.setenv("PLANTNSEEK_KERNEL", "fast")
    with pytest.raises(UsageError, match="PLANTNSEEK_KERNEL='fast' is invalid; allowed: auto, native, torch"):
        mode()


def run_python(code, **env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


USE = ("from plantnseek.engine import kernel; import torch\n"
       "from plantnseek.core.layers import StackedMLP\n"
       "s = StackedMLP(1, [2, 4, 2]); p = list(s.parameters())\n"
       "print(kernel.usable(p, torch.optim.Adam(p)))\n")


def test_without_a_compiler_training_falls_back_with_one_warning(tmp_path):
    (tmp_path / "tmp").mkdir()
    done = run_python(USE + "print(kernel.usable(p, torch.optim.Adam(p)))", CC=str(tmp_path / "no-cc"),
                      PLANTNSEEK_CACHE=str(tmp_path / "cache"), PLANTNSEEK_KERNEL="auto", TMPDIR=str(tmp_path / "tmp"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]
    assert done.stderr.count("could not be built") == 1 and "PyTorch path" in done.stderr
    done = run_python(USE, CC=str(tmp_path / "no-cc"), PLANTNSEEK_CACHE=str(tmp_path / "cache"),
                      PLANTNSEEK_KERNEL="native", TMPDIR=str(tmp_path / "tmp"))
    assert done.returncode != 0 and "PLANTNSEEK_KERNEL=native but the training kernel could not be built" in done.stderr


def test_parallel_first_builds_leave_one_complete_library(tmp_path):
    cache = tmp_path / "cache"
    (tmp_path / "tmp").mkdir()  # no library left in the temporary directory's fallback folder either
    env = {**os.environ, "PLANTNSEEK_CACHE": str(cache), "PLANTNSEEK_KERNEL": "native", "TMPDIR": str(tmp_path / "tmp")}
    procs = [subprocess.Popen([sys.executable, "-c", USE], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for _ in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 and out.strip() == "True" for p, (out, _) in zip(procs, outs)), outs
    lib = Path(library_path()).name  # the library and its digest; no temporary left behind
    assert sorted(f.name for f in cache.iterdir()) == [lib, lib + ".sha256"]


def test_an_unwritable_cache_folder_falls_back_to_the_temporary_directory(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    (tmp_path / "tmp").mkdir()
    done = run_python(USE, PLANTNSEEK_CACHE=str(blocker / "cache"), PLANTNSEEK_KERNEL="native",
                      TMPDIR=str(tmp_path / "tmp"))
    assert done.returncode == 0 and done.stdout.strip() == "True", done.stderr
    assert [p.name for p in (tmp_path / "tmp").glob("plantnseek-*/kernel-*.so")] == [library_path().name]


def test_a_library_planted_in_the_temporary_directory_is_never_loaded(tmp_path):
    """Another user can write /tmp: its folder is used only when the own cache cannot be, and only if
    it is this user's and private."""
    uid = os.getuid()
    planted = tmp_path / "tmp" / f"plantnseek-{uid}"
    planted.mkdir(parents=True)
    (planted / library_path().name).write_text("not a library")
    env = dict(PLANTNSEEK_KERNEL="native", TMPDIR=str(tmp_path / "tmp"))
    done = run_python(USE, PLANTNSEEK_CACHE=str(tmp_path / "cache"), **env)  # own cache usable: built there
    assert done.returncode == 0 and done.stdout.strip() == "True", done.stderr
    assert (tmp_path / "cache" / library_path().name).exists()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    planted.chmod(0o777)  # own cache unusable, and the temporary folder writable by others: refused
    done = run_python(USE, PLANTNSEEK_CACHE=str(blocker / "cache"), **env)
    assert done.returncode != 0 and "is not a private folder of this user" in done.stderr


def test_a_compiler_error_is_reported_by_its_error_line(tmp_path):
    cc = tmp_path / "cc"
    cc.write_text("#!/bin/sh\necho 'kernel.c:12:3: error: something broke' >&2\necho '   |   ^~~~' >&2\nexit 1\n")
    cc.chmod(0o755)
    (tmp_path / "tmp").mkdir()
    done = run_python(USE, CC=str(cc), PLANTNSEEK_CACHE=str(tmp_path / "cache"), PLANTNSEEK_KERNEL="native",
                      TMPDIR=str(tmp_path / "tmp"))
    assert done.returncode != 0 and "failed: kernel.c:12:3: error: something broke" in done.stderr


def test_inputs_of_another_shape_are_refused_before_the_kernel_runs():
    stack = make_stack()
    opt = make_optimizer(hparams("adam"), stack.parameters())["optimizer"]
    before = [p.detach().clone() for p in stack.parameters()]
    x, y = make_batches(True, steps=1)[0]
    with pytest.raises(RunFailure, match=r"inputs \(1, 7, 3\) and targets \(1, 7\) does not fit a stack of 3 runs"):
        kernel.train(*stack.tensors(), opt, [(x[:1], y[:1])], True)
    with pytest.raises(RunFailure, match="does not fit"):
        kernel.train(*stack.tensors(), opt, [(x, y[..., None].double())], False)  # targets [R, B, 1], not [R, B, 4]
    opt.state[stack.weights[0]]["exp_avg"] = torch.zeros(2, dtype=torch.float64)  # e.g. a foreign checkpoint
    with pytest.raises(RunFailure, match=r"optimizer state of shape \(2,\)"):
        kernel.train(*stack.tensors(), opt, [(x, y)], True)
    assert all(torch.equal(a, b) for a, b in zip(before, stack.parameters()))


def test_mixed_precision_leaves_training_to_pytorch():
    stack = make_stack(torch.float32)
    params = list(stack.parameters())
    opt = make_optimizer(hparams("adam"), params)["optimizer"]
    assert kernel.usable(params, opt)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not kernel.usable(params, opt)
