"""The horizon suggestion: a common multiple of every step size, or step sizes that nest."""

import re
from fractions import Fraction

import pytest
from hypothesis import given, settings, strategies as st

from hbflow._compare import _check_etas
from hbflow._validate import common_multiple, horizon_hint


def _suggestion(etas, horizon):
    """The step sizes and horizons the error of `_check_etas` suggests."""
    with pytest.raises(ValueError) as info:
        _check_etas(etas, horizon)
    message = str(info.value)
    horizons = [float(h) for h in re.findall(r"horizon=([0-9.e+-]+)", message)]
    nested = re.search(r"etas=([0-9.,e+-]+)", message)
    new_etas = [float(e) for e in nested.group(1).split(",")] if nested else list(etas)
    return message, new_etas, horizons


def test_suggests_the_common_multiples_next_to_the_horizon():
    # 0.03 and 0.02: least common multiple 0.06; 0.1 lies between 0.06 and 0.12.
    message, _, horizons = _suggestion([0.03, 0.02], 0.1)
    assert horizons == [0.06, 0.12]
    assert "least common multiple" in message
    for h in horizons:
        _check_etas([0.03, 0.02], h)  # following the suggestion works


def test_no_common_multiple_near_the_horizon_suggests_nested_step_sizes():
    # lcm(0.03, 0.007) = 0.21, more than twice the horizon 0.1.
    message, etas, horizons = _suggestion([0.03, 0.007], 0.1)
    assert "no common multiple near 0.1" in message and "0.21" in message
    assert etas == [0.03, 0.015]
    assert horizons == [0.09, 0.12]
    for h in horizons:
        _check_etas(etas, h)


def test_common_multiple_is_exact_in_the_decimals():
    # Independent: the smallest T = n * eta_i for all i, by search over multiples of 0.03.
    etas = [Fraction(3, 100), Fraction(2, 100), Fraction(7, 1000)]
    first = next(
        m * etas[0] for m in range(1, 1000) if all((m * etas[0] / e).denominator == 1 for e in etas)
    )
    assert common_multiple([0.03, 0.02, 0.007]) == first
    assert common_multiple(["0.03", "0.02"]) == Fraction(6, 100)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(1, 400), min_size=2, max_size=4, unique=True),
    st.integers(1, 5000),
)
def test_every_suggestion_is_accepted(thousandths, horizon_thousandths):
    etas = sorted((n / 1000 for n in thousandths), reverse=True)
    horizon = horizon_thousandths / 1000
    try:
        _check_etas(etas, horizon)
        return  # already a common multiple
    except ValueError:
        pass
    _, new_etas, horizons = _suggestion(etas, horizon)
    assert horizons
    for h in horizons:
        assert 0 < h
        _check_etas(new_etas, h)
    assert horizon_hint(etas, horizon)  # the same text, reachable directly
