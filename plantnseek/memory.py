"""How much memory a run needs, estimated from its sizes before anything is allocated.

A run too large for the machine is refused in one line (exit code 2) instead of being killed by the
kernel's OOM killer half-way, with nothing said and a half-written folder; sweeps size their worker
count and their stacks by the same estimate.

The estimate counts what the code allocates, in bytes per parameter ``P`` of one run (weights and
biases) for a stack of ``R`` runs. The peak is the process baseline, plus the data, plus the largest of:

* building the model: every run's planted float64 weights (numpy, 8 P) are held until the float32
  stack's weights and masks (8 P) are filled in: 16 R P;
* the training state -- the stack (8 R P), the optimizer's moments (Adam 8 R P, momentum and RMSprop
  4 R P), the PyTorch path's gradients (4 R P; counted because which path trains is known only at
  fit), the Pruning callback's initial weights for rewinding (4 R P) and each pruning step's float64
  scores and float32 masks kept for the summary and pictures (12 R P per level), the pictures helper's
  copies of the masks (5 P) -- and on top of it the largest transient:

  * scoring one run: SynFlow's float64 copies of weights, masks, products and gradients, or the exact
    top-k's float64 scores, their sorted copy and int64 indices (48 P either way);
  * a checkpoint (``fit`` and ``main``): Lightning serialises it into memory before writing it: the
    stack, the ticket (float64 buffers, read in full), the optimizer and Pruning states;
  * evaluation: two activations of the widest layer for the largest batch (the stack's test batch,
    the PyTorch path's saved training activations, the ticket's float64 metric on the test split);
  * the pictures: the task figure's forward pass over its grid (circle: 201 x 201 points) and the
    masks figure, where matplotlib copies every weight several times (48 P; measured about 40);

  and what an earlier transient freed, which commands keep in the heap up to a bound
  (:func:`plantnseek.core.tuning.keep_freed_memory`).

Within a factor of two of the measured peak resident memory (``tests/test_memory.py``).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

MB = 2**20
# Peak resident memory of a width-20 fit (torch 2.13 CPU, Lightning, matplotlib, TensorBoard), measured:
# 389 MB for fit, 386 MB for main; a sweep worker imports the same.
BASELINE = 390 * MB
PLANT = 16  # bytes per parameter and run while the model is built
STACK = 8  # float32 weights and masks
GRADS = 4  # the PyTorch path's .grad
INITIAL = 4  # Pruning's initial weights, for rewinding
LEVEL = 12  # per pruning step: float64 scores and float32 masks, kept for the summary and the pictures
TICKET = 8  # the ticket's float64 buffers (checkpoints read them in full)
SCORING = 48  # one run scored and its scores ranked
HELPER = 5  # the pictures helper's copies of one run's masks (float32) and ticket masks (bool)
FIGURES = 48  # masks.png and the score histograms: matplotlib's copies of every weight
OPTIMIZER = {"adam": 8, "sgd": 0, "momentum": 4, "rms": 4}
CIRCLE_GRID = 201 * 201  # the decision-region grid of the circle task figure (plantnseek.core.figures)
FIGURE_CURVE = 400  # points of the relu and helix task figures' curves


def parameters(widths: list[int]) -> int:
    """Weights and biases of one run of an MLP with these widths."""
    return sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))


def settings(section: str, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """A section's settings with the constructor defaults filled in (as a sweep resolves them)."""
    from plantnseek.trainer import defaults

    return {**dict(defaults(section)), **dict(given or {})}


def run_bytes(data: Mapping[str, Any], model: Mapping[str, Any], pruning: Mapping[str, Any] | None,
              runs: int = 1, checkpoints: bool = True, pictures: bool = True) -> int:
    """Estimated peak memory of ``runs`` runs trained as one stack (``data``, ``model`` and ``pruning`` as
    the keyword arguments of the data module, the model and the Pruning callback; defaults filled in)."""
    from plantnseek.core import tuning
    from plantnseek.core.sampling import sample_bytes
    from plantnseek.core.planted import network_widths
    from plantnseek.core.registry import get_task

    d, m = settings("data", data), settings("model", model)
    p = settings("pruning", pruning) if pruning is not None else None
    task = get_task(d["dataset"])
    widths = network_widths(task, m["depth"], m["width"])
    params = parameters(widths)
    widest = max(widths)
    n_test = d["n_samples"] - math.ceil(d["train_fraction"] * d["n_samples"])

    def activations(rows: float) -> float:  # two live activations of the widest layer, float32
        return 2 * 4 * rows * widest

    levels = p["levels"] if p is not None else 0
    pruning_state = (INITIAL + LEVEL * levels) if p is not None else 0
    optimizer = OPTIMIZER.get(m["optimizer"], 8)
    state = runs * params * (STACK + optimizer + GRADS + pruning_state)
    state += HELPER * params if pictures and runs == 1 else 0
    checkpoint = runs * params * (STACK + TICKET + optimizer + pruning_state) if checkpoints else 0
    scoring = SCORING * params + activations(d["prune_batch_size"] * len(widths)) if p is not None else 0
    evaluation = max(runs * activations(d["test_batch_size"]),
                     runs * activations(d["train_batch_size"] * len(widths)),
                     activations(2 * n_test))  # the ticket's metric runs in float64
    figure_rows = CIRCLE_GRID if task.name == "circle" else FIGURE_CURVE if task.builtin else 0
    drawing = activations(max(figure_rows, n_test)) + FIGURES * params if pictures else 0
    data_bytes = runs * sample_bytes(task, d["n_samples"]) * (2 if runs > 1 else 1)  # a stack copies its data
    transient = max(scoring, checkpoint, evaluation, drawing)
    # Commands keep freed memory in the heap (plantnseek.core.tuning.keep_freed_memory), up to a bound: what an
    # earlier transient freed may still be resident while the next one is allocated.
    retained = min(transient, tuning.TRIM_THRESHOLD + tuning.TOP_PAD)
    peak = max(PLANT * runs * params, state + transient + retained)
    return int(BASELINE + data_bytes + peak)


def plausible(data: Mapping[str, Any], model: Mapping[str, Any], pruning: Mapping[str, Any] | None) -> bool:
    """Whether the sizes the estimate reads are in range (positive integers, a fraction in (0, 1))."""
    sizes = [model["depth"] - 2, model["width"], data["n_samples"], data["train_batch_size"], data["test_batch_size"],
             data["prune_batch_size"], *([pruning["levels"]] if pruning is not None else [])]
    fraction = data["train_fraction"]
    return (all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in sizes)
            and isinstance(fraction, (int, float)) and 0 < fraction < 1)


def check_fits(data: Mapping[str, Any], model: Mapping[str, Any], pruning: Mapping[str, Any] | None,
               name: str = "model.width", checkpoints: bool = True, pictures: bool = True) -> int | None:
    """Refuse a run that cannot fit in the available memory, before anything is allocated; its estimate.

    The data's own check comes first (its message names ``n_samples``); ``name`` is how the user set the
    width (``model.width``, ``--width``). None where the available memory is unknown.
    """
    from plantnseek.core import tuning
    from plantnseek.core.sampling import check_memory, human_bytes
    from plantnseek.core.errors import UsageError
    from plantnseek.core.registry import get_task

    d, m = settings("data", data), settings("model", model)
    if not plausible(d, m, settings("pruning", pruning) if pruning is not None else None):
        return None  # the settings' own checks refuse them, each in its own words
    check_memory(get_task(d["dataset"]), d["n_samples"])
    have = tuning.available_memory()
    if have is None:
        return None
    need = run_bytes(d, m, pruning, checkpoints=checkpoints, pictures=pictures)
    if need > have:
        raise UsageError(f"{name} {m['width']} (depth {m['depth']}): this run needs about {human_bytes(need)}, "
                         f"{human_bytes(have)} available; use a smaller width or depth")
    return need


def check_planting(task: Any, depth: int, width: int, n_samples: int, name: str = "--width") -> None:
    """Refuse planting a network that cannot fit, before it is allocated (``plantnseek ticket``: no model,
    no training; the planted float64 weights and the ticket's copy, and the data)."""
    from plantnseek.core import tuning
    from plantnseek.core.planted import network_widths
    from plantnseek.core.errors import UsageError
    from plantnseek.core.sampling import check_memory, human_bytes, sample_bytes

    check_memory(task, n_samples)
    widths = network_widths(task, depth, width)
    params = parameters(widths)
    need, have = BASELINE + PLANT * params + sample_bytes(task, n_samples), tuning.available_memory()
    if have is not None and need > have:
        raise UsageError(f"{name} {width} (depth {depth}): planting needs about {human_bytes(need)}, "
                          f"{human_bytes(have)} available; use a smaller width or depth")


def largest_stack(stack_bytes: Callable[[int], int], budget: float, most: int) -> int:
    """The most runs (at most ``most``, at least 1) a stack may hold with ``stack_bytes(runs) <= budget``."""
    low, high = 1, max(1, most)
    while low < high:  # the estimate grows with the number of runs: bisect
        mid = (low + high + 1) // 2
        if stack_bytes(mid) <= budget:
            low = mid
        else:
            high = mid - 1
    return low
