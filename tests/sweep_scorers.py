"""Scorers that stand in for a user pressing Ctrl-C during a sweep run."""

from plantnseek.callbacks import Scorer


class Interrupt(Scorer):
    """Ctrl-C at scoring time: the sweep must stop, say what it kept and how to resume."""

    uses_data = False

    def score(self, ctx):
        raise KeyboardInterrupt


class InterruptSweep(Scorer):
    """In a worker: note this process, press Ctrl-C on the sweep (the parent), wait to be stopped."""

    uses_data = False
    ignore_term = False

    def score(self, ctx):
        import os
        import signal

        if self.ignore_term:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with open(os.environ["PLANTNSEEK_TEST_PIDS"], "a") as f:
            f.write(f"{os.getpid()}\n")
        os.kill(os.getppid(), signal.SIGINT)
        signal.pause()  # the sweep must end this worker (a SIGTERM given to another thread never ends pause())


class InterruptSweepIgnoringTerm(InterruptSweep):
    """The same, in a worker that ignores SIGTERM: only a kill ends it."""

    ignore_term = True


class Terminate(Scorer):
    """`kill <sweep pid>` (SIGTERM) at scoring time, in a sweep that runs in one process."""

    uses_data = False

    def score(self, ctx):
        import os
        import signal

        os.kill(os.getpid(), signal.SIGTERM)
        return [p.detach().abs() for p in ctx.params]
