r"""Helpers for your own test suites: error-order regression tests in one line.

```python
from hbflow.testing import assert_error_order

def test_hbf3_follows_my_method():
    assert_error_order(my_loss, u0, method="hb", beta=0.5, etas=[0.04, 0.02, 0.01],
                       model="hbf3", expected=3, tol=0.3)
```

The helper runs `hbflow.compare` for one model, checks that the solver error is far below the
model error (otherwise the slope would measure the solver, not the model), and that the fitted
order is within `tol` of the expected one.  When it fails, the `AssertionError` shows the error
table (step size, max error, local slopes, solver error) and the fitted slope.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from ._compare import SOLVER_MARGIN, OrderStudy, compare
from ._custom_types import Loss, PyTree, RealScalarLike
from ._models import AbstractContinuousModel, model_from_name
from ._validate import check_beta, check_method, check_nu, check_positive

__all__ = ["assert_error_order"]


def assert_error_order(
    loss: Loss,
    u0: PyTree,
    *,
    method: str = "hb",
    beta: RealScalarLike = 0.5,
    nu: RealScalarLike | None = None,
    etas: Sequence[float],
    horizon: float | None = None,
    model: str | AbstractContinuousModel = "hbf3",
    expected: int | float | None = None,
    tol: float = 0.3,
    **compare_kwargs: Any,
) -> OrderStudy:
    r"""Assert that `model` follows the iterates with global error $O(\eta^{\text{expected}})$.

    Runs `hbflow.compare(loss, u0, method=method, beta=beta, etas=etas, horizon=horizon,
    models=[model], solver_check=True, **compare_kwargs)` and checks, in this order:

    1. every run succeeded (no diverging iterates, no failed solve);
    2. the solver error (a re-solve with 100× tighter tolerances) is at least
       `SOLVER_MARGIN` (100) times below the model's error at every step size;
    3. the least-squares slope of $\log\max_k\|u(t_k)-u_k\|$ against $\log\eta$ is within
       `tol` of `expected`.

    **Arguments:**

    - `loss`, `u0`, `method`, `beta`, `nu`: the problem and the discrete method, as in
      `compare` (`nu` only for ``"qhm"``).
    - `etas`: at least two sorted step sizes, ideally a geometric sequence small against
      $(1-\beta)^2/\|\nabla^2 L\|$.
    - `horizon`: the fixed horizon $T$, a multiple of every step size.  Default: the multiple
      nearest to 1 of the least common multiple of the step sizes, each read exactly as the
      decimal it prints as (``0.03`` is $3/100$; for ``[0.03, 0.02]`` the horizon is $1.02$).
    - `model`: a model name (``"hbf3"``, ``"rgf"``, …) or a model.
    - `expected`: the expected order; default the model's stated order,
      ``model.order(method, beta)``.
    - `tol`: the largest accepted $|\text{slope} - \text{expected}|$, $> 0$.
    - `compare_kwargs`: passed on to `compare` (`rtol`, `atol`, `solver`, `max_steps`, …).

    **Returns:** the `OrderStudy`, for further checks.

    **Raises:** `AssertionError` with the error table and the fitted slope if a check fails;
    `ValueError` for bad arguments (as `compare`).
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this helper's
    for key in ("models", "solver_check", "progress", "throw"):
        if key in compare_kwargs:
            raise ValueError(f"assert_error_order sets {key} itself; do not pass {key}=")
    method = check_method(method)
    beta = check_beta(beta, method)
    nu = check_nu(nu, method)
    if isinstance(model, str):
        model = model_from_name(model)
    if not isinstance(model, AbstractContinuousModel):
        raise ValueError(f"model must be a model name (e.g. 'hbf3') or a model, got {model!r}")
    if expected is None:
        expected = model.order(method, beta, **({} if nu is None else {"nu": nu}))
    if isinstance(expected, bool) or not isinstance(expected, (int, float, np.number)):
        raise ValueError(f"expected must be a number (the expected order), got {expected!r}")
    check_positive(tol, "tol")
    if horizon is None:
        horizon = _default_horizon(etas)

    study = compare(
        loss,
        u0,
        method=method,
        beta=beta,
        nu=nu,
        etas=etas,
        horizon=horizon,
        models=[model],
        solver_check=True,
        throw=False,
        **compare_kwargs,
    )
    if study.failures:
        raise AssertionError(
            f"{model.name}: the order study did not complete:\n"
            + _table(study, model.name, expected, tol)
            + "\n"
            + "\n".join(
                f"failed: eta={f.eta:g} {f.model or 'iterates'}: {f.message}"
                for f in study.failures
            )
        )

    m = study.models[model.name]
    if m.solver_flags.any():
        bad = ", ".join(f"{e:g}" for e in study.etas[m.solver_flags])
        raise AssertionError(
            f"{model.name}: the solver error is not {SOLVER_MARGIN:g}x below the model error at "
            f"eta = {bad}, so the slope would measure the solver, not the model; tighten "
            "rtol/atol (pass them to assert_error_order) or use larger step sizes:\n"
            + _table(study, model.name, expected, tol)
        )
    if not (math.isfinite(m.slope) and abs(m.slope - expected) <= tol):
        raise AssertionError(
            f"{model.name}: fitted order {m.slope:.3f} is not within {tol:g} of the expected "
            f"{expected:g}:\n" + _table(study, model.name, expected, tol)
        )
    return study


#: The default horizon is refused when it would need more steps than this for one step size.
_MAX_DEFAULT_STEPS = 100_000


def _default_horizon(etas: Sequence[float]) -> float:
    r"""The multiple nearest to 1 of the least common multiple of the step sizes.

    Each step size is read exactly as the decimal it prints as (its ``repr``: ``0.03`` is
    $3/100$, not the binary double next to it), so the common multiple is exact:
    $\operatorname{lcm}(p_1/q_1, p_2/q_2) = \operatorname{lcm}(p_1, p_2)/\gcd(q_1, q_2)$ for
    fractions in lowest terms.  `compare` then finds every $T/\eta$ an integer to within
    round-off.

    **Raises:** `ValueError` if a step size is not a finite number $> 0$, or if the common
    multiple needs more than `_MAX_DEFAULT_STEPS` steps of the smallest step size (step sizes
    such as ``1/3`` and ``0.02`` with no small common multiple): then pass `horizon`.
    """
    if isinstance(etas, (str, bytes)):
        raise ValueError(f"etas must be a list of step sizes > 0, got {etas!r}")
    try:
        values = [float(e) for e in etas]
    except (TypeError, ValueError):
        raise ValueError(f"etas must be a list of step sizes > 0, got {etas!r}") from None
    if not values or not all(math.isfinite(e) and e > 0 for e in values):
        raise ValueError(f"etas must be a list of step sizes > 0, got {etas!r}")
    exact = [Fraction(repr(e)) for e in values]
    numerator, denominator = exact[0].numerator, exact[0].denominator
    for f in exact[1:]:
        numerator = math.lcm(numerator, f.numerator)
        denominator = math.gcd(denominator, f.denominator)
    common = Fraction(numerator, denominator)
    if common / min(exact) > _MAX_DEFAULT_STEPS:
        raise ValueError(
            f"the step sizes {values} have no common multiple within {_MAX_DEFAULT_STEPS} steps "
            "of the smallest; pass horizon (a multiple of every step size)"
        )
    return float(common * max(1, round(1 / common)))


def _table(study: OrderStudy, name: str, expected: int | float, tol: float) -> str:
    m = study.models[name]
    local = [math.nan, *np.asarray(m.local_slopes).tolist()]
    rows = [("eta", "max error", "local slope", "solver error")]
    for eta, err, slope, solver in zip(study.etas, m.max_errors, local, m.solver_errors):
        rows.append(
            (
                f"{eta:.6g}",
                f"{err:.4e}" if math.isfinite(err) else "failed",
                f"{slope:.3f}" if math.isfinite(slope) else "-",
                f"{solver:.2e}" if math.isfinite(solver) else "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  " + "  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    stderr = f" +- {m.slope_stderr:.3f}" if math.isfinite(m.slope_stderr) else ""
    slope = f"{m.slope:.3f}{stderr}" if math.isfinite(m.slope) else "undefined"
    lines.append(
        f"  fitted slope {slope}; expected {expected:g} +- {tol:g} "
        f"(method={study.method}, beta={study.beta:g}, horizon={study.horizon:g})"
    )
    lines.extend(f"  warning: {w}" for w in study.warnings)
    return "\n".join(lines)


# --- stochastic: weak order ---

from ._stochastic._compare import MC_MARGIN, WeakOrderStudy, compare_weak  # noqa: E402
from ._stochastic._sde import sde_model_from_name  # noqa: E402

__all__ += ["assert_weak_order"]


def assert_weak_order(
    problem: Any,
    *,
    method: str = "hb",
    beta: RealScalarLike = 0.5,
    etas: Sequence[float],
    horizon: float,
    batch_size: int,
    model: Any = "sme1",
    phi: Any = "mean",
    expected: int | float | None = None,
    tol: float = 0.3,
    paths: int | str = "exact",
    **compare_kwargs: Any,
) -> WeakOrderStudy:
    r"""Assert that the SDE `model` has weak error $O(\eta^{\text{expected}})$ for `phi`.

    Runs `hbflow.compare_weak` for one model and one test function and checks, in this order:

    1. the SDE solver error is `SOLVER_MARGIN` (100) times below the weak error at every step
       size (Monte Carlo only; the oracle is exact);
    2. the Monte Carlo standard error of the max weak error is `MC_MARGIN` (5) times below it
       at every step size (Monte Carlo only);
    3. the fitted slope of $\log\max_k|\mathbb E\varphi(u_k) - \mathbb E\varphi(u(t_k))|$
       against $\log\eta$ is within `tol` of `expected`.

    **Arguments:**

    - `problem`, `method`, `beta`, `etas`, `horizon`, `batch_size`, `paths`: as in
      `compare_weak` (`paths` defaults to ``"exact"``, the least-squares oracle).
    - `model`: an SDE model name (``"sme1"``, ``"sme-steady2"``, …) or model.
    - `phi`: one test function (a name or a callable).
    - `expected`: the expected weak order; default the model's stated order.  Required where
      the model's order is measured, not claimed.
    - `tol`: the largest accepted $|\text{slope} - \text{expected}|$, $> 0$.
    - `compare_kwargs`: passed on to `compare_weak` (`key`, `sampling`, `substeps`, …).

    **Returns:** the `WeakOrderStudy`.

    **Raises:** `AssertionError` with the error table if a check fails; `ValueError` for bad
    arguments.
    """
    __tracebackhide__ = True
    for key in ("models", "phis"):
        if key in compare_kwargs:
            raise ValueError(f"assert_weak_order sets {key} itself; do not pass {key}=")
    method = check_method(method)
    beta = check_beta(beta, method)
    sde = sde_model_from_name(model)
    if expected is None:
        expected = sde.order(method, beta)
        if expected is None:
            raise ValueError(
                f"{sde.name} states no weak order for method={method}, beta={beta:g} (it is "
                "measured, not claimed); pass expected="
            )
    if isinstance(expected, bool) or not isinstance(expected, (int, float, np.number)):
        raise ValueError(f"expected must be a number (the expected order), got {expected!r}")
    check_positive(tol, "tol")
    study = compare_weak(
        problem,
        method=method,
        beta=beta,
        etas=etas,
        horizon=horizon,
        batch_size=batch_size,
        models=[sde],
        phis=[phi],
        paths=paths,
        **compare_kwargs,
    )
    m = study.models[sde.name]
    if m.solver_flags.any():
        raise AssertionError(
            f"{sde.name}: the SDE solver error is not {SOLVER_MARGIN:g}x below the weak error; "
            "pass more substeps=:\n" + study.to_text()
        )
    if m.mc_flags.any():
        raise AssertionError(
            f"{sde.name}: the Monte Carlo standard error is not {MC_MARGIN:g}x below the weak "
            "error; use more paths or larger step sizes:\n" + study.to_text()
        )
    if not (math.isfinite(m.slope) and abs(m.slope - expected) <= tol):
        raise AssertionError(
            f"{sde.name}: fitted weak order {m.slope:.3f} for phi = {m.phi} is not within "
            f"{tol:g} of the expected {expected:g}:\n" + study.to_text()
        )
    return study
