"""User-facing errors: one line, exit code 2, no traceback."""
from __future__ import annotations

import math


class UsageError(ValueError):
    """Bad input from the user (CLI flag, config value, file). Printed as one line, exit code 2."""


class RunFailure(RuntimeError):
    """A run that started but could not go on (non-finite scores, a diverging loss)."""


# numpy's legacy seeding, torch.manual_seed and Lightning's seed_everything all take 32-bit unsigned seeds.
MAX_SEED = 2**32 - 1


def check_number(name: str, value: object, integer: bool = False, optional: bool = False,
                 finite: bool = True) -> None:
    """Type check at the boundary, so a wrong type reads as bad input rather than a Python error.

    NaN and infinities are refused unless ``finite=False``: no setting of this program means anything
    at NaN, and an infinite one silently turns every number of the run into NaN.
    """
    if value is None and optional:
        return
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise UsageError(f"{name} {value!r} is invalid; it must be {'an integer' if integer else 'a number'}")
    if finite and not integer and not math.isfinite(value):
        raise UsageError(f"{name} {value} is invalid; it must be a finite number")


def check_seed(value: object, name: str = "seed") -> int:
    """A seed every random generator of the run honours: an integer in [0, 2**32 - 1]."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise UsageError(f"{name} {value!r} is invalid; give an integer seed from 0 to {MAX_SEED} "
                         "(it fixes ticket, data and masks)")
    return value


class Interrupted(Exception):
    """A run stopped by Ctrl-C after saving what it could; the message says what and how to resume (exit 130)."""


def find_cause(error: BaseException, kind: type) -> BaseException | None:
    """``error`` itself or the first exception of ``kind`` in its cause/context chain."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kind):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def lightning_refusal(error: BaseException) -> bool:
    """A trainer setting Lightning refuses: its MisconfigurationException, or a ValueError raised inside
    Lightning itself (e.g. a ``val_check_interval`` longer than an epoch) -- bad input, not a crash."""
    if type(error).__name__ == "MisconfigurationException":
        return True
    if not isinstance(error, ValueError) or error.__traceback__ is None:
        return False
    tb = error.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    return any(part in tb.tb_frame.f_code.co_filename for part in ("/pytorch_lightning/", "/lightning_fabric/"))
