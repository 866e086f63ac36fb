"""The Monte Carlo weak-error comparator: its numbers agree with the exact oracle within their
standard errors, and it flags what the Monte Carlo cannot resolve."""

import json

import numpy as np

import hbflow
from hbflow._stochastic._compare import MC_MARGIN

LS = hbflow.get_stochastic_problem("least-squares")
# The settings (K = 8, B = 2, phis, model) of the SDE run in test_stochastic_oracle, so the
# compiled solve is shared.
COMMON = dict(
    method="hb",
    beta=0.5,
    etas=[0.2, 0.1],
    horizon=0.8,
    batch_size=2,
    models=["sme-hbf2-gamma"],
    phis=["mean", "second-moment"],
)


def test_monte_carlo_study_agrees_with_the_oracle_and_flags_noise():
    exact = hbflow.compare_weak(LS, paths="exact", **COMMON)
    mc = hbflow.compare_weak(LS, paths=2000, key=4, chunk_size=2000, **COMMON)
    for phi in COMMON["phis"]:
        e, m = exact.by_phi[phi]["sme-hbf2-gamma"], mc.by_phi[phi]["sme-hbf2-gamma"]
        for k_exact, k_mc, se in zip(e.errors, m.errors, m.errors_stderr):
            # |E_mc| - |E| is bounded by the noise vector's norm, whose scale is se
            assert np.all(np.abs(k_mc - k_exact) <= 4 * se + 1e-12), phi
        assert np.all(m.max_errors_stderr > 0) and np.isfinite(m.slope_mc_stderr)
        assert np.array_equal(m.mc_flags, m.max_errors_stderr * MC_MARGIN > m.max_errors)
        assert np.all(m.solver_bounds >= m.solver_errors)
    # 2000 paths do not resolve the mean error of the second-order model: it is flagged.
    assert mc.models["sme-hbf2-gamma"].mc_flags.any()
    text = mc.to_text()
    flagged = any(m.mc_flags.any() for ms in mc.by_phi.values() for m in ms.values())
    assert ("!" in text) == flagged
    assert any("Monte Carlo standard error" in w for w in mc.warnings) == flagged
    data = json.loads(json.dumps(mc.to_json()))
    entry = data["models"]["sme-hbf2-gamma"]
    for field in ("max_errors", "max_errors_stderr", "slope", "slope_mc_stderr", "solver_error"):
        assert field in entry
    assert data["paths"] == 2000 and data["phi"] == "mean"
    assert set(data["by_phi"]) == {"mean", "second-moment"}
