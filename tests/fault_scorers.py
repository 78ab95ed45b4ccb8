"""Test-only scorers that end or stall the worker process that trains them (tests/test_faults.py).

Given to a sweep by class path, each misbehaves in exactly the runs that name it, so a test knows which
runs must fail and which must complete.
"""
import os
import signal

from plantnseek.callbacks import Scorer


class Segfault(Scorer):
    """A crash in native code as the sweep sees it: the worker dies of SIGSEGV while scoring."""

    uses_data = False

    def score(self, ctx):
        signal.signal(signal.SIGSEGV, signal.SIG_DFL)  # no faulthandler report, just the death
        os.kill(os.getpid(), signal.SIGSEGV)


class Exit3(Scorer):
    """A worker that leaves by itself with code 3 (os._exit: no handler, no clean-up runs)."""

    uses_data = False

    def score(self, ctx):
        os._exit(3)


class Hang(Scorer):
    """Writes this worker's pid to $PLANTNSEEK_FAULT_PIDS, then waits forever, deaf to SIGTERM: only the
    sweep's stop path (SIGKILL) can end it."""

    uses_data = False

    def score(self, ctx):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with open(os.environ["PLANTNSEEK_FAULT_PIDS"], "a") as f:
            f.write(f"{os.getpid()}\n")
        while True:
            signal.pause()
