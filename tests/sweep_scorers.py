"""Scorers that stand in for a user pressing Ctrl-C during a sweep run."""

from plantnseek.callbacks import Scorer


class Interrupt(Scorer):
    """Ctrl-C at scoring time: the sweep must stop, say what it kept and how to resume."""

    uses_data = False

    def score(self, ctx):
        raise KeyboardInterrupt
