"""One resolver from a dataset string to a checked task: ``circle``, ``module.Class`` or ``run:<path>``.

The dataset string is what flows everywhere (configs, checkpoints, sweeps, summaries); everything that
needs a task calls :func:`get_task`. Built-in, user and ``run:`` tasks go through the same checks, once
per process (members and types, one small sample), and every ``sample``/``ticket`` result is checked
again, so a bad user task is one line naming what is wrong, never a shape error deep inside a run.
:func:`task_sources` and :func:`scorer_sources` name the user files a run's numbers come from (a sweep
digests them into each run's identity).
"""
from __future__ import annotations

import importlib
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from plantnseek.core.errors import UsageError
from plantnseek.core.runtask import PREFIX, RunTask, checkpoint_path, fingerprint, read_checkpoint
from plantnseek.core.tickets import BUILTIN_TASKS, MIN_DEPTH, Layer

ALLOWED = (f"{', '.join(BUILTIN_TASKS)}, a module.Class task (installed, on PYTHONPATH or in the current "
           f"directory) or run:<run directory or checkpoint>")
MEMBERS = ("d_in", "d_out", "classification", "sample", "ticket")
PROBE_SAMPLES = 8


@dataclass
class CheckedTask:
    """A task as plantnseek uses it: checked members, and ``sample``/``ticket`` whose results are checked.

    ``name`` is the dataset string it was looked up by; ``impl`` is the task object itself.
    """

    name: str
    impl: Any
    d_in: int
    d_out: int
    classification: bool
    max_noise: float | None
    title: str
    _tickets: dict[int, list[Layer]] = field(default_factory=dict, repr=False)

    @property
    def metric_name(self) -> str:
        return "accuracy" if self.classification else "mse"

    @property
    def builtin(self) -> bool:
        return self.name in BUILTIN_TASKS

    def sample(self, rng: np.random.Generator, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
        """``n`` inputs ``[n, d_in]`` (float64) and labels (int64 ``[n]`` or float64 ``[n, d_out]``)."""
        try:
            result = self.impl.sample(rng, n, noise)
        except UsageError:
            raise
        except Exception as e:
            raise self._error(f"sample(rng, {n}, {noise}) failed: {type(e).__name__}: {e}") from None
        return self._check_sample(result, n)

    def ticket(self, depth: int) -> list[Layer]:
        """The checked ticket with ``depth`` layers (float64, read-only; built once per depth)."""
        if depth < MIN_DEPTH:
            raise UsageError(f"depth {depth} is too small; the minimum depth is {MIN_DEPTH} (input, hidden, output)")
        if depth not in self._tickets:
            try:
                layers = self.impl.ticket(depth)
            except UsageError:
                raise
            except Exception as e:
                raise self._error(f"ticket({depth}) failed: {type(e).__name__}: {e}") from None
            self._tickets[depth] = self._check_ticket(layers, depth)
        return self._tickets[depth]

    def fingerprint(self, depth: int) -> str:
        """A short hash of the ticket's values, recorded in summaries: a changed user task or ``run:``
        source shows as a different fingerprint instead of silently mixing results."""
        return fingerprint(self.ticket(depth))

    def _error(self, message: str) -> UsageError:
        return UsageError(f"task {self.name}: {message}")

    def _check_sample(self, result: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise self._error(f"sample() must return (inputs, labels), got {type(result).__name__}")
        x, y = (np.asarray(a) for a in result)
        if not _real(x) or x.shape != (n, self.d_in):
            raise self._error(f"sample() inputs are {_describe(x)}; expected float [{n}, {self.d_in}] = [n, d_in]")
        if not np.isfinite(x).all():
            raise self._error("sample() inputs contain non-finite values")
        if self.classification:
            if not np.issubdtype(y.dtype, np.integer) or y.shape != (n,):
                raise self._error(f"sample() labels are {_describe(y)}; expected int classes [{n}] = [n]")
            if n and (y.min() < 0 or y.max() >= self.d_out):
                bad = y.min() if y.min() < 0 else y.max()
                raise self._error(f"sample() label {bad} is out of range; classes are 0..{self.d_out - 1}")
            return x.astype(np.float64, copy=False), y.astype(np.int64, copy=False)
        if not _real(y) or y.shape != (n, self.d_out):
            raise self._error(f"sample() labels are {_describe(y)}; expected float [{n}, {self.d_out}] = [n, d_out]")
        if not np.isfinite(y).all():
            raise self._error("sample() labels contain non-finite values")
        return x.astype(np.float64, copy=False), y.astype(np.float64, copy=False)

    def _check_ticket(self, layers: Any, depth: int) -> list[Layer]:
        if not isinstance(layers, (list, tuple)) or len(layers) != depth - 1:
            got = f"{len(layers)} layers" if isinstance(layers, (list, tuple)) else type(layers).__name__
            raise self._error(f"ticket({depth}) gave {got}; depth {depth} needs {depth - 1} (weight, bias) pairs")
        out: list[Layer] = []
        fan_in = self.d_in
        for l, pair in enumerate(layers):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise self._error(f"ticket({depth}) layer {l} is not a (weight, bias) pair")
            w, b = (np.array(a) for a in pair)
            if not _real(w) or w.ndim != 2 or w.shape[1] != fan_in or w.shape[0] < 1:
                source = "d_in" if l == 0 else f"layer {l - 1}'s output size"
                raise self._error(f"ticket({depth}) layer {l} weight is {_describe(w)}; expected [out, {fan_in}] "
                                  f"(its input size is {source} {fan_in})")
            if not _real(b) or b.shape != (w.shape[0],):
                raise self._error(f"ticket({depth}) layer {l} bias is {_describe(b)}; expected [{w.shape[0]}] = [out]")
            if not (np.isfinite(w).all() and np.isfinite(b).all()):
                raise self._error(f"ticket({depth}) layer {l} contains non-finite values")
            if not (w != 0).any():
                raise self._error(f"ticket({depth}) layer {l} has no non-zero weight; a ticket must connect "
                                  f"inputs to outputs")
            w, b = w.astype(np.float64), b.astype(np.float64)
            w.flags.writeable = b.flags.writeable = False
            out.append((w, b))
            fan_in = w.shape[0]
        if fan_in != self.d_out:
            raise self._error(f"ticket({depth}) outputs {fan_in} values; expected d_out {self.d_out}")
        return out


def _real(a: np.ndarray) -> bool:
    return a.dtype != bool and (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer))


def _describe(a: np.ndarray) -> str:
    return f"{a.dtype} {list(a.shape)}"


_CACHE: dict[Any, CheckedTask] = {}
_RESOLVING: set[str] = set()


def get_task(name: Any) -> CheckedTask:
    """The checked task of a dataset string (cached per process; ``run:`` also per checkpoint version)."""
    if not isinstance(name, str) or not name:
        raise UsageError(f"dataset {name!r} is invalid; allowed: {ALLOWED}")
    key: Any = name
    if name.startswith(PREFIX):
        path = checkpoint_path(name[len(PREFIX):])
        stat = os.stat(path)
        key = (os.path.realpath(path), stat.st_mtime_ns, stat.st_size)
    if key not in _CACHE:
        if name in _RESOLVING:
            raise UsageError(f"dataset {name} refers to itself")
        _RESOLVING.add(name)
        try:
            _CACHE[key] = _check(name, _construct(name))
        finally:
            _RESOLVING.discard(name)
    task = _CACHE[key]
    return task if task.name == name else CheckedTask(name, task.impl, task.d_in, task.d_out, task.classification,
                                                      task.max_noise, task.title, task._tickets)


def user_source(cls: type) -> tuple[str, str] | None:
    """The file of the module that defines a user class, with a short name for messages (``pkg/tasks.py``);
    None for plantnseek's own classes, which the package itself (and a sweep's identity format) covers."""
    module = cls.__module__
    if module.partition(".")[0] == "plantnseek":
        return None
    path = getattr(sys.modules.get(module), "__file__", None)
    if not path:
        raise UsageError(f"{module}.{cls.__qualname__} has no source file; define it in a module file so a "
                         f"sweep can tell when it changes")
    base, parts = os.path.basename(path), module.split(".")
    return "/".join((parts if base.startswith("__init__.") else parts[:-1]) + [base]), path


def task_sources(name: str) -> list[tuple[str, str]]:
    """The files outside plantnseek a task's numbers come from, as (what, path): the module defining a user
    task's class; for ``run:`` the checkpoint it plants from and, in turn, the sources of that run's task."""
    impl = get_task(name).impl
    if isinstance(impl, RunTask):
        return [(f"checkpoint of {name}", impl.source.path), *task_sources(impl.source.dataset)]
    found = user_source(type(impl))
    return [(f"task source {found[0]}", found[1])] if found else []


def scorer_sources(pruner: Any) -> list[tuple[str, str]]:
    """The module defining a user scorer (``module.Class`` or ``{class_path: ...}``), as (what, path)."""
    import pydoc

    from plantnseek.core.pruners import SCORERS

    path = pruner.get("class_path") if isinstance(pruner, dict) else pruner
    if not isinstance(path, str) or path in SCORERS:
        return []
    try:
        cls = pydoc.locate(path)
    except pydoc.ErrorDuringImport:
        cls = None  # the run itself says why it cannot use this scorer
    found = user_source(cls) if isinstance(cls, type) else None
    return [(f"scorer source {found[0]}", found[1])] if found else []


def _construct(name: str) -> Any:
    if name in BUILTIN_TASKS:
        return BUILTIN_TASKS[name]()
    if name.startswith(PREFIX):
        source = read_checkpoint(checkpoint_path(name[len(PREFIX):]))
        return RunTask(source, get_task(source.dataset), name)
    if "." not in name:
        raise UsageError(f"unknown dataset {name!r}; allowed: {ALLOWED}")
    module_name, _, cls_name = name.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UsageError(f"cannot import dataset {name!r}: {e}; allowed: {ALLOWED}") from None
    except Exception as e:
        raise UsageError(f"importing dataset {name!r} failed: {type(e).__name__}: {e}") from None
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise UsageError(f"cannot import dataset {name!r}: module {module_name!r} has no {cls_name!r}")
    if not isinstance(cls, type):
        raise UsageError(f"dataset {name!r} is not a class (it is a {type(cls).__name__})")
    try:
        return cls()
    except Exception as e:
        raise UsageError(f"task {name} cannot be constructed without arguments: {type(e).__name__}: {e}") from None


def _check(name: str, impl: Any) -> CheckedTask:
    """Members, their types, and one small sample; the ticket is checked per depth when first built."""
    missing = [m for m in MEMBERS if not hasattr(impl, m)]
    if missing:
        raise UsageError(f"task {name} lacks {', '.join(missing)}; a task needs d_in, d_out, classification, "
                         f"sample(rng, n, noise) and ticket(depth)")
    for member in ("d_in", "d_out"):
        value = getattr(impl, member)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise UsageError(f"task {name}: {member} {value!r} is invalid; it must be a positive integer")
    if not isinstance(impl.classification, (bool, np.bool_)):
        raise UsageError(f"task {name}: classification {impl.classification!r} is invalid; it must be True or False")
    for member in ("sample", "ticket"):
        if not callable(getattr(impl, member)):
            raise UsageError(f"task {name}: {member} is not a method")
    if impl.classification and impl.d_out < 2:
        raise UsageError(f"task {name}: a classification task needs d_out >= 2 classes, got {impl.d_out}")
    max_noise = getattr(impl, "max_noise", None)
    if max_noise is not None and (isinstance(max_noise, bool) or not isinstance(max_noise, (int, float))
                                  or not max_noise >= 0 or math.isinf(max_noise)):
        raise UsageError(f"task {name}: max_noise {max_noise!r} is invalid; it must be None or a number >= 0")
    title = getattr(impl, "name", None)
    task = CheckedTask(name, impl, int(impl.d_in), int(impl.d_out), bool(impl.classification), max_noise,
                       title if isinstance(title, str) and title else name)
    task.sample(np.random.default_rng(0), PROBE_SAMPLES, 0.0)
    return task
