"""Process settings that make these small-tensor workloads fast on a CPU, set once per process.

Threads: one intra-op thread unless ``OMP_NUM_THREADS`` says otherwise (:func:`one_thread_by_default`).

Memory: training makes thousands of steps whose tensors are a few MB each. glibc's default malloc
hands such blocks back to the kernel on free (mmap/trim thresholds) and takes fresh zeroed pages on
the next allocation: page faults that cost about a fifth of a stacked training step. Keeping freed
memory in the heap (:func:`keep_freed_memory`) removes them; the numbers do not change, only where
tensors live.
"""
from __future__ import annotations

import ctypes
import os
import sys

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
