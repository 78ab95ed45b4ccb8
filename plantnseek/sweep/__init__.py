"""Sweeps: a grid of runs from one config, checked up front, run in worker processes, stored so that a
re-run skips what is done, and reported (``plantnseek sweep``, ``plantnseek report``)."""
