"""``hbflow.testing.assert_error_order``: passes on a good case, fails with a useful message."""

import re

import diffrax
import jax.numpy as jnp
import pytest

from hbflow import get_problem
from hbflow.testing import _default_horizon, assert_error_order

PROBLEM = get_problem("himmelblau-scaled")  # lambda*|H| <= 0.11 for these step sizes at β = 0.5
ETAS = [0.04, 0.02, 0.01]


def test_passes_and_returns_the_study():
    study = assert_error_order(
        PROBLEM.loss,
        PROBLEM.u0,
        method="hb",
        beta=0.5,
        etas=ETAS,
        model="hbf2",
        expected=2,
        tol=0.3,
    )
    assert study.horizon == pytest.approx(1.0)  # default: the multiple of 0.04 nearest to 1
    assert abs(study.models["hbf2"].slope - 2) <= 0.3
    # expected defaults to the model's stated order
    assert_error_order(PROBLEM.loss, PROBLEM.u0, etas=ETAS, model="hbf2")


def test_wrong_expected_order_fails_with_the_table():
    with pytest.raises(AssertionError) as info:
        assert_error_order(
            PROBLEM.loss,
            PROBLEM.u0,
            method="hb",
            beta=0.5,
            etas=ETAS,
            model="hbf2",
            expected=3,
            tol=0.3,
        )
    message = str(info.value)
    assert re.search(r"hbf2: fitted order 1\.\d+|hbf2: fitted order 2\.\d+", message), message
    assert "is not within 0.3 of the expected 3" in message
    lines = message.splitlines()
    header = next(line for line in lines if "max error" in line)
    assert header.split() == ["eta", "max", "error", "local", "slope", "solver", "error"]
    for eta in ("0.04", "0.02", "0.01"):
        row = next(line for line in lines if line.split()[0] == eta)
        assert len(row.split()) == 4  # eta, max error, local slope (or -), solver error
    assert re.search(r"fitted slope \d\.\d{3} \+- \d\.\d{3}; expected 3 \+- 0\.3", message)


def test_loose_solver_fails_the_solver_check():
    # A second-order solver at rtol = atol = 1e-4 has errors within 100x of hbf2's (the default
    # Tsit5 is so accurate on these short pieces that loose tolerances barely show): the slope
    # would measure the solver, so the helper fails even though the slope looks right.
    with pytest.raises(
        AssertionError,
        match=r"hbf2: the solver error is not 100x below the "
        r"model error at eta = 0\.04, 0\.02, 0\.01.*tighten rtol/atol",
    ):
        assert_error_order(
            PROBLEM.loss,
            PROBLEM.u0,
            etas=ETAS,
            model="hbf2",
            expected=2,
            solver=diffrax.Heun(),
            rtol=1e-4,
            atol=1e-4,
        )


def test_failed_run_fails_with_the_failures():
    def quartic(u):
        return 0.25 * jnp.sum(u**4) + 0.5 * jnp.sum(u**2)

    with pytest.raises(
        AssertionError,
        match=r"(?s)rgf: the order study did not complete.*"
        r"failed: eta=0\.5 iterates: the hb iterates diverge",
    ):
        assert_error_order(quartic, jnp.array([2.0]), etas=[0.5, 0.01], horizon=5.0, model="rgf")


@pytest.mark.parametrize(
    "etas,horizon",
    [([0.03, 0.02], 1.02), ([0.04, 0.02, 0.01], 1.0), ([0.3, 0.2, 0.1], 1.2), ([0.5, 0.2], 1.0)],
)
def test_default_horizon_is_a_multiple_of_every_step_size(etas, horizon):
    # The least common multiple of 3/100 and 1/50 is 3/50; its multiple nearest to 1 is 1.02.
    h = _default_horizon(etas)
    assert h == pytest.approx(horizon, rel=1e-15)
    for eta in etas:
        assert abs(h / eta - round(h / eta)) < 1e-9


def test_default_horizon_without_a_small_common_multiple_asks_for_one():
    with pytest.raises(ValueError, match=r"no common multiple.*pass horizon"):
        _default_horizon([1 / 3, 0.02])


def test_default_horizon_is_accepted_by_compare_for_unrelated_step_sizes():
    # gd against gradient flow: order 1; 0.03 and 0.02 are not multiples of one another.
    study = assert_error_order(
        PROBLEM.loss, PROBLEM.u0, method="gd", beta=0.0, etas=[0.03, 0.02], model="gf"
    )
    assert study.horizon == pytest.approx(1.02) and study.num_steps == (34, 51)
