"""A user's own pruner, living outside plantnseek: keeps the weights closest to zero, plus a spy."""

from plantnseek.callbacks import Scorer


class SmallestMagnitude(Scorer):
    uses_data = False

    def score(self, ctx):
        return [-p.detach().abs() for p in ctx.params]


class Spy(Scorer):
    """Records what it was given; scores like magnitude."""

    uses_data = True
    calls: list = []

    def score(self, ctx):
        Spy.calls.append({"masks": [m.clone() for m in ctx.masks],
                          "n_samples": sum(len(x) for x, _ in ctx.batches)})
        return [p.detach().abs() for p in ctx.params]


class Broken(Scorer):
    """Fails at scoring time: a sweep must record the failure and go on."""

    uses_data = False

    def score(self, ctx):
        raise RuntimeError("broken scorer")


class CompiledMagnitude(Scorer):
    """|θ| through a function compiled with torch.compile (eager backend): a user's scorer may compile."""

    uses_data = False

    def score(self, ctx):
        import torch

        magnitude = torch.compile(lambda p: p.detach().abs() + 0.0, backend="eager")
        return [magnitude(p) for p in ctx.params]
