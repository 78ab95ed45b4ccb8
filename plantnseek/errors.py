"""User-facing errors: one line, exit code 2, no traceback."""
from __future__ import annotations


class UsageError(ValueError):
    """Bad input from the user (CLI flag, config value, file). Printed as one line, exit code 2."""


class RunFailure(RuntimeError):
    """A run that started but could not go on (non-finite scores, a diverging loss)."""


def check_number(name: str, value: object, integer: bool = False, optional: bool = False) -> None:
    """Type check at the boundary, so a wrong type reads as bad input rather than a Python error."""
    if value is None and optional:
        return
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise UsageError(f"{name} {value!r} is invalid; it must be {'an integer' if integer else 'a number'}")
