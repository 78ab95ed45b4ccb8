"""The native training kernel (``kernel.c``): whether it can take a training step, and taking it.

A stacked PyTorch step is bound by memory traffic, not arithmetic: every step streams all runs' weights,
gradients and optimizer moments through memory several times. The kernel trains one run at a time for
all the steps of a call with that run's tensors in the core's cache (see ``kernel.c``); same
mathematics as the PyTorch path (autograd and ``torch.optim``), which stays as the fallback and as the
tests' reference. Building and loading: :mod:`plantnseek.engine.kernel_build`.
"""
from __future__ import annotations

import ctypes
from typing import Any, Sequence

import torch
from torch import Tensor

from plantnseek.core.errors import RunFailure
from plantnseek.engine.kernel_build import failure, load, mode

KINDS = {"adam": 0, "sgd": 1, "momentum": 2, "rms": 3}
MAX_LAYERS = 64  # kernel.c's MAX_LAYERS
PROFILE_NAME = "plantnseek::kernel"  # the kernel's calls in torch.profiler's tables


def _optimizer_kind(opt: torch.optim.Optimizer) -> str | None:
    """Which of make_optimizer's optimizers ``opt`` is, or None for anything the kernel does not do."""
    if len(opt.param_groups) != 1:
        return None
    g = opt.param_groups[0]
    if g.get("maximize") or g.get("differentiable"):
        return None
    if type(opt) is torch.optim.Adam and not g["amsgrad"] and not g.get("decoupled_weight_decay", False):
        return "adam"
    if type(opt) is torch.optim.SGD and g["dampening"] == 0:
        if g["momentum"] == 0 and not g["nesterov"]:
            return "sgd"
        if g["momentum"] > 0 and g["nesterov"]:
            return "momentum"
    if type(opt) is torch.optim.RMSprop and not g["centered"] and g["momentum"] == 0:
        return "rms"
    return None


def refusal(params: Sequence[Tensor], opt: torch.optim.Optimizer) -> str | None:
    """Why the kernel cannot train ``params`` with ``opt`` (None: it can), as a reason a user can act on.

    The kernel takes whole optimizer steps in C: it needs one of make_optimizer's optimizers over exactly
    ``params`` (CPU, float32 or float64, contiguous), every parameter trainable (it would move a frozen
    one), full precision (autocast asks for low-precision products), and a library that loads.
    """
    if _optimizer_kind(opt) is None:
        return f"the optimizer ({type(opt).__name__} with these options) is not one the kernel implements"
    if [id(p) for p in opt.param_groups[0]["params"]] != [id(p) for p in params]:
        return "the optimizer does not train exactly the network's weights and biases"
    if any(not p.requires_grad for p in params):
        return "a parameter is frozen (requires_grad False)"
    if not 1 <= len(params) // 2 <= MAX_LAYERS:
        return f"the network has {len(params) // 2} layers; the kernel takes 1 to {MAX_LAYERS}"
    if _autocast():
        return "autocast (mixed precision) is on"
    dtype = params[0].dtype
    if dtype not in (torch.float32, torch.float64) or any(p.dtype != dtype for p in params):
        return f"parameters in {dtype}; the kernel computes in float32 or float64"
    if any(p.device.type != "cpu" or not p.is_contiguous() for p in params):
        return "a parameter is not a contiguous CPU tensor"
    if load() is None:
        return "PLANTNSEEK_KERNEL=torch" if mode() == "torch" else failure() or "the kernel library is unavailable"
    return None


# Where PyTorch's BLAS overtakes the kernel (benchmarks/engine_crossover.py, idle, 2026-12-07: kernel /
# PyTorch time per step, depth 5, batch 32): a lone run 0.68 at width 400, 0.93 at 600, 1.10 at 800 and
# 1000, 1.33 at 1600; 2 runs 0.99 at 600, 1.04-1.11 from 800; 4 runs 1.04 at 800, 0.98 at 1200; 8 runs
# 0.68-0.99 at every width from 400 to 1600 (the stacked matmuls are memory-bound, the kernel's are not).
WIDEST, STACK = 700, 8


def slower(runs: int, widths: Sequence[int]) -> str | None:
    """Why PyTorch would train this stack faster than the kernel (None: the kernel is not slower): a stack
    of fewer than STACK runs with a hidden layer wider than WIDEST."""
    widest = max(widths[1:-1], default=0)
    if runs < STACK and widest > WIDEST:
        return (f"{runs} run(s) with a hidden layer of width {widest} train faster on PyTorch (fewer than {STACK} "
                f"runs wider than {WIDEST}: benchmarks/engine_crossover.py)")
    return None


def usable(params: Sequence[Tensor], opt: torch.optim.Optimizer) -> bool:
    """True if the kernel can take this training step (see :func:`refusal`)."""
    return refusal(params, opt) is None


def _autocast() -> bool:
    """Mixed precision (autocast) asks for low-precision products: the kernel computes in full precision,
    so it steps aside for the PyTorch path rather than ignore the setting."""
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # older torch
        return torch.is_autocast_cpu_enabled()


def _check_shapes(params: Sequence[Tensor], masks: Sequence[Tensor],
                  states: list[tuple[Tensor | None, Tensor | None]]) -> None:
    """The kernel trusts every pointer it gets: refuse anything of another shape than its parameter."""
    for p, m, pair in zip(params, masks, states):
        for what, t in (("mask", m), ("optimizer state", pair[0]), ("optimizer state", pair[1])):
            if t is not None and (t.shape != p.shape or t.dtype != p.dtype or t.device != p.device
                                  or not t.is_contiguous()):
                raise RunFailure(f"{what} of shape {tuple(t.shape)} ({t.dtype}) does not match its parameter "
                                 f"{tuple(p.shape)} ({p.dtype}); the kernel needs equal, contiguous CPU tensors")


def _states(opt: torch.optim.Optimizer, kind: str, params: Sequence[Tensor]) -> list[tuple[Tensor | None, Tensor | None]]:
    """Each parameter's optimizer state in ``torch.optim``'s own format (made as its first step would),
    so checkpoints, resumes and learning-rate schedules work the same on both paths."""
    out = []
    for p in params:
        st = opt.state[p]
        if kind in ("adam", "rms") and "step" not in st:
            st["step"] = torch.tensor(0.0, dtype=torch.float32)
        if kind == "adam":
            for key in ("exp_avg", "exp_avg_sq"):
                st.setdefault(key, torch.zeros_like(p, memory_format=torch.preserve_format))
            out.append((st["exp_avg"], st["exp_avg_sq"]))
        elif kind == "momentum":
            if st.get("momentum_buffer") is None:
                st["momentum_buffer"] = torch.zeros_like(p)  # torch's first step: buffer = grad = 0 * mu + grad
            out.append((st["momentum_buffer"], None))
        elif kind == "rms":
            st.setdefault("square_avg", torch.zeros_like(p, memory_format=torch.preserve_format))
            out.append((st["square_avg"], None))
        else:
            out.append((None, None))
    return out


def _hyper(kind: str, group: dict[str, Any]) -> list[float]:
    lr, wd = float(group["lr"]), float(group["weight_decay"])
    if kind == "adam":
        return [lr, float(group["betas"][0]), float(group["betas"][1]), float(group["eps"]), wd]
    if kind == "momentum":
        return [lr, float(group["momentum"]), 0.0, 0.0, wd]
    if kind == "rms":
        return [lr, float(group["alpha"]), 0.0, float(group["eps"]), wd]
    return [lr, 0.0, 0.0, 0.0, wd]


def train(weights: Sequence[Tensor], biases: Sequence[Tensor], weight_masks: Sequence[Tensor],
          bias_masks: Sequence[Tensor], opt: torch.optim.Optimizer, batches: Sequence[tuple[Tensor, Tensor]],
          classification: bool) -> tuple[Tensor, int]:
    """One optimizer step per ``(x [R, B, d_in], y)`` batch for every run of the stack, in the kernel.

    Returns each run's summed loss x batch size (float64 ``[R]``) and the number of samples per run.
    Requires :func:`usable`. Pruned entries must be stored as zeros on entry; they stay zero.
    """
    lib = load()
    assert lib is not None
    kind = _optimizer_kind(opt)
    assert kind is not None
    params = [*weights, *biases]
    dtype = weights[0].dtype
    runs, depth = weights[0].shape[0], len(weights)
    widths = [weights[0].shape[2]] + [w.shape[1] for w in weights]
    for l, (w, b) in enumerate(zip(weights, biases)):
        if w.dim() != 3 or w.shape[0] != runs or w.shape[2] != widths[l] or tuple(b.shape) != (runs, w.shape[1]):
            raise RunFailure(f"layer {l}: weight {tuple(w.shape)} and bias {tuple(b.shape)} do not form a stack of "
                             f"{runs} runs of widths {widths}")
    states = _states(opt, kind, params)
    _check_shapes(params, [*weight_masks, *bias_masks], states)
    steps = opt.state[params[0]].get("step")
    step0 = float(steps) if steps is not None else 0.0
    ptrs = []
    for l in range(depth):
        (s1w, s2w), (s1b, s2b) = states[l], states[depth + l]
        for t in (weights[l], biases[l], weight_masks[l], bias_masks[l], s1w, s2w, s1b, s2b):
            ptrs.append(t.data_ptr() if t is not None else None)
    c_ptrs = (ctypes.c_void_p * len(ptrs))(*ptrs)
    c_widths = (ctypes.c_int * len(widths))(*widths)
    hyper = (ctypes.c_double * 5)(*_hyper(kind, opt.param_groups[0]))
    fn = lib.pns_train_f32 if dtype == torch.float32 else lib.pns_train_f64
    total = torch.zeros(runs, dtype=torch.float64)
    count = 0
    for group in _equal_batches(batches):
        xs = torch.stack([x for x, _ in group]).to(dtype).contiguous()
        if classification:
            ys = torch.stack([y for _, y in group]).to(torch.int64).contiguous()
            if ys.numel() and (int(ys.min()) < 0 or int(ys.max()) >= widths[-1]):
                raise RunFailure(f"class labels must lie in 0..{widths[-1] - 1}; got {int(ys.min())}..{int(ys.max())}")
        else:
            ys = torch.stack([y for _, y in group]).to(dtype).contiguous()
        n_steps, batch = xs.shape[0], xs.shape[2]
        want = (n_steps, runs, batch) + (() if classification else (widths[-1],))
        if xs.shape[1:2] + xs.shape[3:] != (runs, widths[0]) or batch < 1 or tuple(ys.shape) != want:
            raise RunFailure(f"a batch of inputs {tuple(xs.shape[1:])} and targets {tuple(ys.shape[1:])} does not fit "
                             f"a stack of {runs} runs of widths {widths} (want inputs [{runs}, B >= 1, {widths[0]}])")
        with torch.profiler.record_function(PROFILE_NAME):
            code = fn(depth, c_widths, runs, n_steps, batch, c_ptrs, ctypes.c_void_p(xs.data_ptr()),
                      ctypes.c_void_p(ys.data_ptr()), int(classification), KINDS[kind], hyper,
                      ctypes.c_double(step0), ctypes.c_void_p(total.data_ptr()))
        if code == -1:
            raise MemoryError(f"the training kernel ran out of memory for a stack of {runs} runs of widths {widths}")
        if code != 0:
            raise RunFailure(f"the training kernel refused a stack of {runs} runs of widths {widths}, batch {batch}")
        step0 += n_steps
        count += n_steps * batch
        for p in params:
            st = opt.state[p]
            if "step" in st:
                st["step"] += n_steps
    return total, count


def _equal_batches(batches: Sequence[tuple[Tensor, Tensor]]) -> list[list[tuple[Tensor, Tensor]]]:
    """Consecutive batches of one size (only an epoch's last batch is usually smaller)."""
    groups: list[list[tuple[Tensor, Tensor]]] = []
    for x, y in batches:
        if groups and groups[-1][0][0].shape == x.shape:
            groups[-1].append((x, y))
        else:
            groups.append([(x, y)])
    return groups
