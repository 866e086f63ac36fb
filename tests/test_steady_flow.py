"""The steady-state flow's coefficients: exactly b_inf, and the heavy-ball flow's late pieces.

A memoryless flow from rest has order 1 whatever its higher coefficients (docs/theory.md#heavy-ball-flow), so order
studies cannot see them; these tests read them directly.
"""

from fractions import Fraction

import numpy as np
import pytest
import sympy

from hbflow import HeavyBallFlow, SteadyStateFlow, counter_terms, trees_up_to

BETA = sympy.Symbol("beta")
CASES = [("hb", 0.5), ("hb", 0.9), ("nag", 0.7), ("nag", 0.99), ("gd", 0.0)]


@pytest.mark.parametrize("method,beta", CASES)
def test_table_is_the_exact_steady_state_rounded_once(method, beta):
    alpha = 4
    table = SteadyStateFlow(alpha).coefficients(method, beta, 3)
    assert table.shape == (3, len(trees_up_to(alpha)))
    # b_inf as a sympy expression in beta, evaluated at the exact binary value of the float beta
    ct = counter_terms(alpha, method)
    exact_beta = sympy.Rational(*Fraction(beta).as_integer_ratio())
    want = np.array([float(ct.steady_state(t).subs(BETA, exact_beta)) for t in trees_up_to(alpha)])
    for row in table:
        assert (row == want).all(), (row, want)
    # the first two are known in closed form (docs/theory.md#heavy-ball-flow): 1/(1-beta), -(1+beta)/(2(1-beta)^3)
    if method == "hb":
        assert table[0, 0] == pytest.approx(1 / (1 - beta), rel=1e-15)
        assert table[0, 1] == pytest.approx(-(1 + beta) / (2 * (1 - beta) ** 3), rel=1e-14)


@pytest.mark.parametrize("method,beta", [("hb", 0.5), ("nag", 0.5), ("hb", 0.9)])
def test_table_is_the_heavy_ball_flow_at_large_k(method, beta):
    # b_k - b_inf = O(k^m beta^k): at k = 150 (beta = 0.5) or 700 (beta = 0.9) it is below 1e-15.
    num_pieces = 150 if beta == 0.5 else 700
    alpha = 4
    late = HeavyBallFlow(alpha).coefficients(method, beta, num_pieces)[-1]
    steady = SteadyStateFlow(alpha).coefficients(method, beta, 1)[0]
    np.testing.assert_allclose(steady, late, rtol=1e-12)
    early = HeavyBallFlow(alpha).coefficients(method, beta, 2)[1]
    assert np.abs(early - steady).max() > 1e-2  # the flows differ on early pieces
