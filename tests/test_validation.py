"""Model and seed arguments: every bad value is one UsageError naming it and what is allowed."""
import math

import pytest

from plantnseek.core.errors import MAX_SEED, UsageError, check_number, check_seed
from plantnseek.module import validate_model_args

GOOD = dict(depth=4, width=20, seed=1, optimizer="adam", lr=1e-3, weight_decay=0.0, lr_drops=[2, 5],
            lr_drop_rate=0.1)


def test_good_arguments_pass():
    validate_model_args(**GOOD)
    validate_model_args(**{**GOOD, "seed": 0, "lr_drops": None, "lr_drop_rate": 1.0})
    validate_model_args(**{**GOOD, "seed": MAX_SEED, "lr_drops": [0]})


@pytest.mark.parametrize("key,value,message", [
    ("lr", math.inf, "lr inf is invalid; it must be a finite number"),
    ("lr", math.nan, "lr nan is invalid"),
    ("lr", 0.0, "lr 0.0 is invalid; it must be a finite number > 0"),
    ("lr", -1e-3, "lr -0.001"),
    ("weight_decay", math.nan, "weight_decay nan is invalid"),
    ("weight_decay", -math.inf, "weight_decay -inf is invalid"),
    ("weight_decay", -0.1, "weight_decay -0.1 is invalid; it must be a finite number >= 0"),
    ("lr_drop_rate", -1, "lr_drop_rate -1 is invalid; allowed: greater than 0 and at most 1"),
    ("lr_drop_rate", 0, "lr_drop_rate 0 is invalid"),
    ("lr_drop_rate", 1.5, "lr_drop_rate 1.5 is invalid"),
    ("lr_drop_rate", math.nan, "lr_drop_rate nan"),
    ("lr_drops", [-1], "lr_drops [-1] is invalid; give a list of epochs, non-negative integers"),
    ("lr_drops", [1.5], "lr_drops [1.5]"),
    ("lr_drops", [True], "lr_drops [True]"),
    ("lr_drops", 3, "lr_drops 3"),
    ("seed", -1, "seed -1 is invalid; give an integer seed from 0 to 4294967295"),
    ("seed", 2**32, f"seed {2**32} is invalid"),
    ("seed", 2**70, f"seed {2**70} is invalid"),
    ("seed", 1.0, "seed 1.0 is invalid"),
    ("seed", True, "seed True is invalid"),
    ("depth", 4.0, "depth 4.0 is invalid; it must be an integer"),
    ("width", "20", "width '20' is invalid"),
    ("optimizer", "lbfgs", "unknown optimizer 'lbfgs'; allowed: adam, sgd, momentum, rms"),
])
def test_bad_model_arguments_name_the_value(key, value, message):
    with pytest.raises(UsageError) as e:
        validate_model_args(**{**GOOD, key: value})
    assert message in str(e.value)


def test_check_number_refuses_non_finite_unless_asked():
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(UsageError, match="finite"):
            check_number("x", bad)
    check_number("x", math.inf, finite=False)
    check_number("x", None, optional=True)
    assert check_seed(0) == 0 and check_seed(MAX_SEED) == MAX_SEED
