"""How a fit's optimizer steps are taken under Lightning's contract: which engine takes them (the native
kernel or PyTorch), decided once per fit with its reason, and how many of them one Lightning batch may
hold. Both follow from what the trainer's settings, the callbacks and the module ask of a step.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import pytorch_lightning as pl

from plantnseek.engine import kernel
from plantnseek.core.errors import UsageError

if TYPE_CHECKING:
    from plantnseek.module import PlantedMLP

GRADIENT_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")
_said: set[str] = set()


def choose_engine(module: "PlantedMLP") -> tuple[str, str | None]:
    """``("kernel", None)`` or ``("pytorch", why)`` for the whole fit, said once where it is not the kernel.

    The kernel takes whole optimizer steps in C and leaves ``.grad`` empty, so a hook that reads gradients
    (overridden by the module or a callback) or autocast sends the run to the PyTorch path, as does
    anything :func:`plantnseek.engine.kernel.refusal` names; ``PLANTNSEEK_KERNEL=native`` refuses such a run.
    Otherwise layers wide enough for PyTorch to be faster (:func:`plantnseek.engine.kernel.slower`) go to
    PyTorch, unless ``native`` asks for the kernel.
    """
    from plantnseek.engine.kernel_build import failure, mode

    trainer = module.trainer
    hooked = [f"{type(owner).__name__}.{hook}" for owner, base in
              [(module, pl.LightningModule)] + [(cb, pl.Callback) for cb in trainer.callbacks]
              for hook in GRADIENT_HOOKS if getattr(type(owner), hook) is not getattr(base, hook)]
    precision = str(trainer.precision)
    if "mixed" in precision:
        reason: str | None = f"precision {precision} trains under autocast"
    elif hooked:
        reason = f"{hooked[0]} reads gradients, which the kernel does not put in .grad"
    else:
        t = module.stack.tensors()
        reason = kernel.refusal([*t.weights, *t.biases], trainer.optimizers[0])
    if reason is not None and mode() == "native":
        raise UsageError(f"PLANTNSEEK_KERNEL=native, but the training kernel cannot train this run: {reason}")
    if reason is None and mode() != "native":  # native: the kernel, even where PyTorch would be faster
        reason = kernel.slower(len(module.runs), module.stack.widths)
    if reason is None:
        return "kernel", None
    if reason not in _said and reason not in ("PLANTNSEEK_KERNEL=torch", failure()):  # asked for, or said already
        _said.add(reason)
        print(f"plantnseek: training on the PyTorch path (same mathematics): {reason}", file=sys.stderr)
    return "pytorch", reason


BATCH_HOOKS = ("on_train_batch_start", "on_train_batch_end", "on_before_backward", "on_after_backward",
               "on_before_optimizer_step", "on_before_zero_grad")


def steps_observed(trainer: pl.Trainer | None) -> str | None:
    """Why every optimizer step must be a Lightning batch of its own (None: nothing can tell them apart).

    Grouping ``batches_per_step`` optimizer steps into one Lightning batch removes most of Lightning's
    per-batch cost on these tiny networks, but anything that counts, limits or watches batches or steps
    would then see groups: such settings and callbacks get one step per batch, as in any Lightning module.
    Lightning's and plantnseek's own callbacks watch batches only when told to (checked by their settings).
    """
    if trainer is None:
        return None
    if trainer.max_steps not in (-1, None):
        return f"max_steps {trainer.max_steps}"
    for name in ("limit_train_batches", "val_check_interval"):
        value = getattr(trainer, name)
        if value is not None and (isinstance(value, int) or float(value) != 1.0):
            return f"{name} {value}"
    for cb in trainer.callbacks:
        module = type(cb).__module__
        if module.startswith(("pytorch_lightning.", "lightning.", "plantnseek.")):
            if getattr(cb, "_every_n_train_steps", 0) or getattr(cb, "_train_time_interval", None) \
                    or getattr(cb, "logging_interval", None) == "step":
                return f"callback {type(cb).__name__} acts every n training steps"
            continue
        if any(getattr(type(cb), hook) is not getattr(pl.Callback, hook) for hook in BATCH_HOOKS):
            return f"callback {type(cb).__name__} watches training batches"
    module = trainer.lightning_module
    if any(getattr(type(module), hook) is not getattr(pl.LightningModule, hook) for hook in BATCH_HOOKS):
        return f"{type(module).__name__} watches training batches"
    return None
