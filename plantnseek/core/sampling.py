"""Drawing a task's data, without Lightning: seeded random streams, the train/test/pruning splits, and
in-memory batches.

All samples are drawn at once, vectorised, from a generator seeded by ``seed``; they live in memory as
tensors and a batch is an index slice, so there is no per-sample ``__getitem__`` or collate on the hot
path. The data module (:mod:`plantnseek.data`) and ``plantnseek ticket`` both draw through here.
"""
from __future__ import annotations

import itertools
import math
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from plantnseek.core.errors import UsageError, check_number
from plantnseek.core.registry import CheckedTask
from plantnseek.core.tuning import available_memory

# Independent random streams derived from the one user seed.
STREAM_PLANT, STREAM_DATA, STREAM_ORDER, STREAM_PRUNE = 0, 1, 2, 3
# The reference sizes the pruning subset as ratio x number of classes, and uses 4 for every task.
PRUNE_CLASSES = 4
# The data module's defaults, also what ``plantnseek ticket`` measures the ticket on.
N_SAMPLES, TRAIN_FRACTION, PRUNE_RATIO = 10_000, 0.9, 10


def split_sizes(n_samples: int, train_fraction: float, prune_dataset_ratio: int) -> tuple[int, int]:
    """(training samples, pruning-subset samples) of ``n_samples`` drawn in all."""
    return math.ceil(train_fraction * n_samples), prune_dataset_ratio * PRUNE_CLASSES


def stream(seed: int, which: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, which]))


def torch_generator(seed: int, *keys: int) -> torch.Generator:
    """A torch generator whose seed depends on ``seed`` and ``keys`` (e.g. stream and epoch)."""
    entropy = np.random.SeedSequence([seed, *keys]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(entropy) & ((1 << 63) - 1))


class TensorBatches:
    """Iterable of ``(x, y)`` index-slice batches over in-memory tensors, for one run or a stack of runs.

    One run: ``x`` is ``[n, ...]`` and ``seed`` an int. A stack: ``x`` is ``[R, n, ...]`` and ``seed`` a
    list of R seeds; each run is shuffled in its own order, exactly the order it would see alone, and
    batches are ``[R, B, ...]``. With ``shuffle``, each pass uses the permutation of (seed, epoch);
    ``epoch`` comes from ``epoch_fn`` (the trainer's epoch) or, standalone, from a pass counter. With
    ``group=K``, each item is a list of K consecutive batches (the last list may be shorter): one Lightning
    step then makes K optimizer steps, which removes most of Lightning's per-step overhead on these tiny
    networks.
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        batch_size: int,
        shuffle: bool = False,
        seed: int | list[int] = 0,
        epoch_fn: Callable[[], int] | None = None,
        group: int | None = None,
    ) -> None:
        self.x, self.y, self.batch_size, self.shuffle, self.seed = x, y, batch_size, shuffle, seed
        self.stacked = isinstance(seed, list)
        self.group = group
        self.epoch_fn = epoch_fn
        self._passes = 0
        self._epoch = 0
        self._yielded = 0  # batches handed out in the current pass
        self._skip = 0  # batches to skip on the next pass (resuming mid-epoch)

    @property
    def n(self) -> int:
        return self.x.shape[1] if self.stacked else self.x.shape[0]

    def __len__(self) -> int:
        n = math.ceil(self.n / self.batch_size)
        return math.ceil(n / self.group) if self.group else n

    def __iter__(self) -> Iterator[Any]:
        if not self.group:
            yield from self._batches()
            return
        batches = iter(self._batches())
        while chunk := list(itertools.islice(batches, self.group)):
            yield chunk

    def _order(self, seed: int, epoch: int) -> Tensor:
        return torch.randperm(self.n, generator=torch_generator(seed, STREAM_ORDER, epoch))

    def _batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch = self.epoch_fn() if self.epoch_fn is not None else self._passes
        self._passes += 1
        self._epoch, skip, self._skip = epoch, self._skip, 0
        x, y = self.x, self.y
        if self.shuffle and self.stacked:
            order = torch.stack([self._order(s, epoch) for s in self.seed])
            runs = torch.arange(len(self.seed))[:, None]
            x, y = x[runs, order], y[runs, order]
        elif self.shuffle:
            order = self._order(self.seed, epoch)
            x, y = x[order], y[order]
        self._yielded = skip
        for start in range(skip * self.batch_size, self.n, self.batch_size):
            self._yielded += 1
            window = slice(start, start + self.batch_size)
            yield (x[:, window], y[:, window]) if self.stacked else (x[window], y[window])

    # Lightning saves and restores this with the checkpoint, so a run resumed mid-epoch sees exactly the
    # batches an uninterrupted run would. Counted in single batches (optimizer steps), not groups: a
    # resumed fit may group them otherwise (:func:`steps_observed`).
    def state_dict(self) -> dict[str, int]:
        return {"epoch": self._epoch, "steps": self._yielded}

    def load_state_dict(self, state: dict[str, int]) -> None:
        steps = state["steps"] if "steps" in state else state["batches"] * (self.group or 1)  # older checkpoints
        self._skip = steps if steps < math.ceil(self.n / self.batch_size) else 0


def sample_bytes(task: CheckedTask, n_samples: int) -> int:
    """A generous estimate of the peak memory of drawing ``n_samples`` and holding them as tensors:
    float64 draws and the sampler's intermediates, the float32/int64 tensors, and one epoch's shuffled copy."""
    return n_samples * (32 * (task.d_in + task.d_out) + 64)


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} TB"


def check_memory(task: CheckedTask, n_samples: int) -> None:
    """Refuse data that cannot fit, before drawing it (a MemoryError mid-run leaves a half-made run)."""
    need, have = sample_bytes(task, n_samples), available_memory()
    if have is not None and need > have:
        raise UsageError(f"n_samples {n_samples} needs about {human_bytes(need)} of memory for {task.name}; this machine "
                         f"has {human_bytes(have)} available; lower n_samples")


def validate_data_args(task: CheckedTask, noise: float, n_samples: int, train_fraction: float, train_batch_size: int,
                       test_batch_size: int, prune_dataset_ratio: int, prune_batch_size: int) -> None:
    check_number("noise", noise)
    check_number("train_fraction", train_fraction)
    for name, value in (("n_samples", n_samples), ("train_batch_size", train_batch_size),
                        ("test_batch_size", test_batch_size), ("prune_dataset_ratio", prune_dataset_ratio),
                        ("prune_batch_size", prune_batch_size)):
        check_number(name, value, integer=True)
    if not noise >= 0 or (task.max_noise is not None and noise > task.max_noise):
        allowed = f"between 0 and {task.max_noise}" if task.max_noise is not None else ">= 0"
        raise UsageError(f"noise {noise} is invalid for {task.name}; allowed: {allowed}")
    for name, value in (("train_batch_size", train_batch_size), ("test_batch_size", test_batch_size),
                        ("prune_batch_size", prune_batch_size), ("prune_dataset_ratio", prune_dataset_ratio)):
        if value < 1:
            raise UsageError(f"{name} {value} is invalid; it must be at least 1")
    if not 0 < train_fraction < 1:
        raise UsageError(f"train_fraction {train_fraction} is invalid; allowed: strictly between 0 and 1")
    check_memory(task, n_samples)
    n_train, n_prune = split_sizes(n_samples, train_fraction, prune_dataset_ratio)
    if n_samples < 2 or n_train >= n_samples:
        raise UsageError(f"n_samples {n_samples} is too few to split into train and test at {train_fraction}")
    if n_prune > n_train:
        raise UsageError(
            f"the pruning subset ({prune_dataset_ratio} x {PRUNE_CLASSES} samples) is larger than the "
            f"{n_train} training samples; lower prune_dataset_ratio or raise n_samples"
        )


def make_splits(task: CheckedTask, n_samples: int, n_train: int, n_prune: int, noise: float,
                seed: int) -> dict[str, tuple[Tensor, Tensor]]:
    x, y = task.sample(stream(seed, STREAM_DATA), n_samples, noise)
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.long if task.classification else torch.float32)
    subset = torch.as_tensor(stream(seed, STREAM_PRUNE).permutation(n_train)[:n_prune])
    return {
        "train": (xt[:n_train], yt[:n_train]),
        "test": (xt[n_train:], yt[n_train:]),
        "prune": (xt[subset], yt[subset]),
    }
