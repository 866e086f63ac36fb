"""Weak orders of the stochastic modified equations, measured exactly on the least-squares
oracle (no Monte Carlo error): the stated orders, and what was measured for beta > 0."""

import numpy as np
import pytest

import hbflow
from hbflow.testing import assert_weak_order

PROBLEM = hbflow.get_stochastic_problem("least-squares")
# lambda |H| <= 0.05 at beta = 0.5 (|H| about 1.3): the asymptotic regime.
SWEEP = dict(etas=[0.01, 0.005, 0.0025], horizon=1.0, batch_size=4, paths="exact")
PHIS = ("mean", "second-moment", "loss")
MODELS = ("sme1", "sme-steady2", "sme-hbf2", "sme-hbf2-gamma")
_STUDIES = {}


def study(method, beta):
    if (method, beta) not in _STUDIES:
        _STUDIES[method, beta] = hbflow.compare_weak(
            PROBLEM, method=method, beta=beta, models=MODELS, phis=PHIS, **SWEEP
        )
    return _STUDIES[method, beta]


def slopes(s, model):
    return {phi: s.by_phi[phi][model].slope for phi in PHIS}


@pytest.mark.parametrize("method,beta", [("hb", 0.5), ("nag", 0.5), ("gd", 0.0)])
def test_first_order_sme_has_weak_order_one(method, beta):
    s = study(method, beta)
    for phi, slope in slopes(s, "sme1").items():
        assert abs(slope - 1) <= 0.3, (method, phi, slope)
        assert s.by_phi[phi]["sme1"].expected_order == 1


def test_second_order_sme_of_li_tai_e_has_weak_order_two_for_gd():
    s = study("gd", 0.0)
    for model in ("sme-steady2", "sme-hbf2"):
        assert s.models[model].expected_order == 2
        for phi, slope in slopes(s, model).items():
            assert abs(slope - 2) <= 0.3, (model, phi, slope)


@pytest.mark.parametrize("method", ["hb", "nag"])
def test_steady_drift_stays_first_order_with_momentum(method):
    # Started at u_0 the memoryless drift misses the transient of the iterates from rest.
    s = study(method, 0.5)
    assert s.models["sme-steady2"].expected_order == 1
    for phi, slope in slopes(s, "sme-steady2").items():
        assert abs(slope - 1) <= 0.3, (phi, slope)


@pytest.mark.parametrize("method", ["hb", "nag"])
def test_measured_piecewise_hbf2_drift_reaches_weak_order_two_at_beta_half(method):
    # Measured, not claimed by the model (its expected order is None): with the piecewise
    # HBF2 drift and the diffusion sqrt(eta Sigma_B)/(1 - beta) (or scaled like b_k(•)) the
    # exact weak errors fall like eta^2 for the mean, the second moment and the loss.
    s = study(method, 0.5)
    for model in ("sme-hbf2", "sme-hbf2-gamma"):
        assert s.models[model].expected_order is None
        for phi, slope in slopes(s, model).items():
            assert abs(slope - 2) <= 0.3, (model, phi, slope)
        # an order more than sme1, by two orders of magnitude at the smallest step
        assert s.models[model].max_errors[-1] < 1e-2 * s.models["sme1"].max_errors[-1]


def test_oracle_study_is_exact():
    s = study("hb", 0.5)
    for models in s.by_phi.values():
        for m in models.values():
            assert np.all(m.max_errors_stderr == 0) and np.all(m.solver_errors == 0)
            assert not m.mc_flags.any() and not m.solver_flags.any()
    assert "exact" in s.to_text() and "!" not in s.to_text()


def test_assert_weak_order_passes_and_fails():
    assert_weak_order(PROBLEM, method="gd", beta=0.0, model="sme-steady2", phi="loss", **SWEEP)
    with pytest.raises(AssertionError, match="fitted weak order"):
        assert_weak_order(PROBLEM, method="hb", model="sme1", expected=2, **SWEEP)
    with pytest.raises(ValueError, match="measured, not claimed"):
        assert_weak_order(PROBLEM, method="hb", model="sme-hbf2", **SWEEP)
