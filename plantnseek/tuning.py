"""Process settings that make these small-tensor workloads fast on a CPU, set once per process.

Threads: one intra-op thread unless ``OMP_NUM_THREADS`` says otherwise (:func:`one_thread_by_default`).

Imports: the command line loads Lightning without torch's compiler stack (:func:`lean_lightning_import`).

Memory: training makes thousands of steps whose tensors are a few MB each. glibc's default malloc
hands such blocks back to the kernel on free (mmap/trim thresholds) and takes fresh zeroed pages on
the next allocation: page faults that cost about a fifth of a stacked training step. Keeping freed
memory in the heap (:func:`keep_freed_memory`) removes them; the numbers do not change, only where
tensors live.
"""
from __future__ import annotations

import ctypes
import importlib
import os
import sys
import types
from typing import Any

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest allowed value: blocks below it come from the heap
TRIM_THRESHOLD = 256 * 2**20  # free heap kept before returning memory to the kernel
TOP_PAD = 64 * 2**20

_done = False


def keep_freed_memory() -> bool:
    """Tell glibc to reuse freed blocks instead of returning them to the kernel; False if not glibc."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
        return False
    _done = all(mallopt(option, value) == 1 for option, value in (
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD)))
    return _done


def one_thread_by_default() -> bool:
    """One intra-op thread unless ``OMP_NUM_THREADS`` is set; True if this call chose it.

    These networks are tiny: a d5 w50 step is far too small to split across threads, and with two
    or more threads each op waits for the others, which on a busy machine (a sweep, a test run, a
    second job) turns a 6 s run into a minute (``benchmarks/seed_example.py --threads 1`` measures it).
    Set ``OMP_NUM_THREADS`` to use more threads, e.g. for wide networks.
    """
    if "OMP_NUM_THREADS" in os.environ:
        return False
    os.environ["OMP_NUM_THREADS"] = "1"  # read when torch starts; children (the pictures helper) inherit it
    torch = sys.modules.get("torch")
    if torch is not None:  # already started (plantnseek used as a library): set it directly
        torch.set_num_threads(1)
    return True



def available_memory() -> int | None:
    """Bytes this machine can still give (MemAvailable in /proc/meminfo); None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


LIGHTNING_PACKAGES = ("pytorch_lightning", "lightning_fabric", "torchmetrics", "lightning_utilities")
COMPILER = "torch._dynamo"


class _Compiler(types.ModuleType):
    """Stands in for ``torch._dynamo`` until something needs more than its idle names.

    ``disable(fn)`` returns ``fn`` and ``graph_break()`` does nothing, as both do where nothing
    compiles; ``OptimizedModule`` (what ``torch.compile`` returns) matches nothing. Any other name loads
    the real module in the stand-in's place and answers from it, so compiling still works if asked
    for. Its ``__path__`` is the real package's: ``import torch._dynamo.config`` loads that submodule
    once, and the real package, when it loads, finds and keeps it.
    """

    class OptimizedModule:
        pass

    def __init__(self) -> None:
        super().__init__(COMPILER, "stand-in for torch._dynamo until it is needed")

    @staticmethod
    def disable(fn: Any = None, recursive: bool = True, **kwargs: Any) -> Any:
        return fn if fn is not None else (lambda f: f)

    @staticmethod
    def graph_break(msg: str = "") -> None:  # torch's optimizers call it around every step
        return None

    def __getattr__(self, name: str) -> Any:
        if name == "__path__":  # where ``import torch._dynamo.<sub>`` finds its submodules
            import torch

            return [os.path.join(os.path.dirname(torch.__file__), "_dynamo")]
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(_load_real_compiler(self), name)


def _load_real_compiler(stand_in: types.ModuleType) -> types.ModuleType:
    import torch

    if sys.modules.get(COMPILER) is stand_in:
        del sys.modules[COMPILER]
    if torch.__dict__.get("_dynamo") is stand_in:
        del torch._dynamo
    return importlib.import_module(COMPILER)


def lean_lightning_import(stand_in: types.ModuleType | None = None) -> bool:
    """Import pytorch_lightning without torch's compiler stack; True if it was imported that way.

    Importing ``torch._dynamo`` takes about 1.7 s, a quarter of a whole small run, and neither the
    commands nor Lightning use it: Lightning names ``OptimizedModule`` for isinstance checks and wraps
    methods in ``torch.compiler.disable``; torch's optimizers wrap theirs in a lazy disable and call
    ``graph_break()`` around each step. The
    commands never compile a model, so :class:`_Compiler` stands in for it for the whole process
    (anything beyond those names loads the real module). If Lightning fails to import with the
    stand-in (another version), what that left is dropped and it is imported as usual. Only the
    command line calls this, never a library import of plantnseek.
    """
    if "pytorch_lightning" in sys.modules or COMPILER in sys.modules:
        return False
    import torch  # noqa: F401 - before the stand-in: torch's own import must see the real world

    before = set(sys.modules)
    stand_in = stand_in if stand_in is not None else _Compiler()
    sys.modules[COMPILER] = stand_in
    try:
        import pytorch_lightning  # noqa: F401
        return True
    except Exception:  # noqa: BLE001 - fall back to the usual import below
        for name in set(sys.modules) - before:
            if name == COMPILER or name.split(".")[0] in LIGHTNING_PACKAGES:
                del sys.modules[name]
        if torch.__dict__.get("_dynamo") is stand_in:
            del torch._dynamo
        import pytorch_lightning  # noqa: F401,F811
        return False
