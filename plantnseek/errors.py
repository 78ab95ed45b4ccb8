"""User-facing errors: one line, exit code 2, no traceback."""
from __future__ import annotations


class UsageError(ValueError):
    """Bad input from the user (CLI flag, config value, file). Printed as one line, exit code 2."""


class RunFailure(RuntimeError):
    """A run that started but could not go on (non-finite scores, a diverging loss)."""
