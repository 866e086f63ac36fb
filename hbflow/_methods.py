r"""The discrete methods: gradient descent, Polyak's heavy ball, Nesterov, and the library rules.

One recursion covers the first three (docs/theory.md#methods):

$$u_{k+1} = u_k + \beta\,(u_k - u_{k-1}) - \eta\,\nabla L\big(u_k + a\,(u_k - u_{k-1})\big),$$

with $a = 0$ for the heavy ball (``"hb"``, also called momentum gradient descent), $a = \beta$ for
Nesterov's method (``"nag"``) and $\beta = 0$ for gradient descent (``"gd"``).  A second one
covers the momentum rules as deep-learning libraries run them, with a buffer that starts at zero
(docs/theory.md#library-momentum):

$$u_{k+1} = u_k + \beta\,(u_k - u_{k-1}) - \eta\,[c_0\nabla L(u_k) - c_1\nabla L(u_{k-1})],$$

the $c_1$ term absent at $k = 0$: ``"nesterov"`` ($c_0 = 1+\beta$, $c_1 = \beta$;
``optax.sgd(nesterov=True)``, PyTorch's ``SGD(nesterov=True)``) and ``"qhm"``, quasi-hyperbolic
momentum ($c_0 = 1-\nu\beta$, $c_1 = \beta(1-\nu)$).  The continuous time attached to iterate
$k$ is $t_k = k\eta$.

References:

```bibtex
@article{polyak1964some,
  author  = {Polyak, Boris T.},
  title   = {Some methods of speeding up the convergence of iteration methods},
  journal = {USSR Computational Mathematics and Mathematical Physics},
  volume  = {4}, number = {5}, pages = {1--17}, year = {1964}
}
@article{nesterov1983method,
  author  = {Nesterov, Yurii},
  title   = {A method for solving the convex programming problem with convergence rate
             {$O(1/k^2)$}},
  journal = {Soviet Mathematics Doklady},
  volume  = {27}, number = {2}, pages = {372--376}, year = {1983}
}
@inproceedings{ma2019quasi,
  author    = {Ma, Jerry and Yarats, Denis},
  title     = {Quasi-hyperbolic momentum and {Adam} for deep learning},
  booktitle = {ICLR}, year = {2019}
}
```
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpy.typing import ArrayLike

from . import _programs
from ._custom_types import PyTree, RealScalarLike
from ._loss_cache import PerLoss
from ._validate import (
    METHODS,
    as_float_tree,
    check_beta,
    check_count,
    check_loss_structure_once,
    check_loss_values,
    check_method,
    check_nu,
    check_positive,
    concrete,
    is_traced,
    require_float64,
)

__all__ = ["iterates", "METHODS", "DivergenceError", "stability_limit"]

# The gradient is taken at u_k + a (u_k - u_{k-1}); `a` as a multiple of beta.
_LOOKAHEAD = {"gd": 0.0, "hb": 0.0, "nag": 1.0}
# The library rules u_{k+1} = u_k + beta (u_k - u_{k-1}) - eta [c0 grad_k - c1 grad_{k-1}].
_TWO_GRADIENT = ("nesterov", "qhm")


def _check_scalar(x: Any, name: str) -> float | None:
    if x is None or isinstance(x, (str, bytes)):
        raise ValueError(f"{name} must be a real scalar, got {x!r}")
    try:
        ndim, dtype = jnp.ndim(x), jnp.result_type(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real scalar, got {x!r}") from None
    if ndim != 0:
        raise ValueError(f"{name} must be a real scalar, got an array of shape {jnp.shape(x)}")
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
        raise ValueError(f"{name} must be a real scalar, got dtype {dtype}")
    value = concrete(x)
    return None if value is None else float(value)


def _beta_argument(beta: Any, method: str) -> tuple[Any, float | None]:
    """β and its value: by the one rule of `check_beta` when concrete, as in `compare`.

    Numbers, numeric strings and fractions are accepted, bools refused; a traced β (a vmap over
    β) is only checked to be a real scalar and has no value.
    """
    if is_traced(beta):
        _check_scalar(beta, "beta")
        return beta, None
    if isinstance(beta, (list, tuple)) or (hasattr(beta, "shape") and np.ndim(beta) != 0):
        _check_scalar(beta, "beta")  # raises: not a scalar
    value = check_beta(beta, method)
    return value, value


def _as_scalar(x: Any, dtype: Any) -> Any:
    """`x` as a scalar of `dtype`: on the host when concrete (`jnp.asarray` would convert it
    with a small device program, compiled or loaded in every process), traced otherwise."""
    return jnp.asarray(x, dtype=dtype) if is_traced(x) else np.asarray(x, dtype=dtype)


def _compiled(loss: Callable, method: str, treedef: Any, avals: tuple) -> Callable:
    """The jitted iteration for one (loss, method, tree structure, leaf shapes and dtypes).

    `loss(arrays, u)` takes the loss's own arrays first (see `_loss_cache`), and so does the
    result; the cache makes the trace happen once, so sweeps over `eta` and `beta` (and over
    losses that differ only in their arrays) never retrace.
    """
    make_step = _two_gradient_step if method in _TWO_GRADIENT else _lookahead_step

    def run(
        loss_arrays: Any,
        u0: PyTree,
        v0: PyTree,
        beta: jax.Array,
        eta: jax.Array,
        nu: jax.Array,
        num_steps: int,
    ):
        grad = jax.grad(functools.partial(loss, loss_arrays))
        step = make_step(method, grad, beta, eta, nu)
        _, us = jax.lax.scan(step, (u0, v0), None, length=num_steps)
        return jax.tree_util.tree_map(lambda x0, xs: jnp.concatenate([x0[None], xs]), u0, us)

    return _programs.Stored(
        jax.jit(run, static_argnames="num_steps"),
        "iterates",
        loss,
        lambda loss_arrays, u0, *rest: (loss_arrays, u0),
        static=(method, treedef, avals),
    )


# Kept while the loss is alive, dropped with it (see _loss_cache).
_COMPILED = PerLoss(_compiled, compiled=True)


def _lookahead_step(method: str, grad: Callable, beta, eta, nu) -> Callable:
    r"""One step of hb, nag or gd on $(u_k, v_k = u_k - u_{k-1})$: the gradient at the
    look-ahead point $u_k + a v_k$, $v_{k+1} = \beta v_k - \eta\nabla L$."""
    if method == "gd":
        beta = jnp.zeros_like(beta)
    a = _LOOKAHEAD[method] * beta

    def step(carry, _):
        u, v = carry
        y = jax.tree_util.tree_map(lambda ui, vi: ui + (a * vi).astype(ui.dtype), u, v)
        g = grad(y)
        v_new = jax.tree_util.tree_map(lambda vi, gi: (beta * vi - eta * gi).astype(vi.dtype), v, g)
        u_new = jax.tree_util.tree_map(operator.add, u, v_new)
        return (u_new, v_new), u_new

    return step


def _two_gradient_step(method: str, grad: Callable, beta, eta, nu) -> Callable:
    r"""One step of the library rules on $(u_k, z_k)$ with $z_k = \beta(u_k - u_{k-1}) +
    \eta c_1\nabla L(u_{k-1})$, the part of the next step already known: then
    $u_{k+1} = u_k + z_k - \eta c_0 \nabla L(u_k)$, and $z_0 = 0$ is the buffer that starts at
    zero (no $c_1$ term at $k = 0$)."""
    if method == "nesterov":
        c0, c1 = 1 + beta, beta
    else:
        c0, c1 = 1 - nu * beta, beta * (1 - nu)

    def step(carry, _):
        u, z = carry
        g = grad(u)
        u_new = jax.tree_util.tree_map(
            lambda ui, zi, gi: ui + (zi - eta * c0 * gi).astype(ui.dtype), u, z, g
        )
        z_new = jax.tree_util.tree_map(
            lambda un, ui, gi: (beta * (un - ui) + eta * c1 * gi).astype(ui.dtype), u_new, u, g
        )
        return (u_new, z_new), u_new

    return step


def iterates(
    loss: Callable[[PyTree], jax.Array],
    u0: PyTree,
    *,
    method: str = "hb",
    beta: Any = 0.5,  # numbers, numeric strings, fractions: the one rule of check_beta
    eta: RealScalarLike,
    num_steps: int,
    v0: PyTree | None = None,
    nu: float | jax.Array | None = None,
    check_finite: bool = True,
) -> PyTree:
    r"""The iterates $u_0, u_1, \dots, u_K$ of gradient descent, heavy ball, Nesterov or QHM.

    Runs, for $k = 0, \dots, K-1$,

    $$u_{k+1} = u_k + \beta\,(u_k - u_{k-1}) - \eta\,\nabla L\big(u_k + a\,(u_k - u_{k-1})\big)$$

    with $a = 0$ for ``"hb"`` (Polyak 1964), $a = \beta$ for ``"nag"`` (Nesterov 1983), and
    $\beta = 0$ for ``"gd"``.  The start is from rest, $u_{-1} = u_0$, unless an initial velocity
    $v_0 = u_0 - u_{-1}$ is given.  Iterate $k$ belongs to the time $t_k = k\eta$.

    The library rules (docs/theory.md#library-momentum) run

    $$u_{k+1} = u_k + \beta\,(u_k - u_{k-1}) - \eta\,[c_0\nabla L(u_k) - c_1\nabla L(u_{k-1})]$$

    with the $c_1$ term absent at $k = 0$ (their momentum buffer starts at zero): ``"nesterov"``,
    $c_0 = 1+\beta$, $c_1 = \beta$, is ``optax.sgd(eta, momentum=beta, nesterov=True)`` and
    PyTorch's ``SGD(lr=eta, momentum=beta, nesterov=True)``, i.e. the look-ahead sequence of
    ``"nag"``; ``"qhm"``, $c_0 = 1-\nu\beta$, $c_1 = \beta(1-\nu)$, is quasi-hyperbolic momentum
    (Ma & Yarats 2019).  ``"hb"`` is ``optax.sgd(eta, momentum=beta)``.

    The iteration is a `jax.lax.scan`, compiled once per `(loss, method, tree structure, leaf
    shapes and dtypes, num_steps)`: `eta`, `beta`, `u0` and `v0` are traced, so a sweep over the
    step size does not recompile.  Values are only checked when they are concrete; inside
    `jax.vmap` or `jax.jit` (e.g. a vmap over `eta`) the range checks are skipped.

    **Arguments:**

    - `loss`: a JAX function of the parameters returning a real scalar $L(u)$.  The same Python
      object should be passed on every call to reuse the compiled iteration.
    - `u0`: the initial parameters, an array or any pytree of arrays (integer leaves are cast to
      float64); a list of numbers such as ``[1.0, 0.7]`` is read as one array.
    - `method`: ``"gd"``, ``"hb"`` (default), ``"nag"``, ``"nesterov"`` or ``"qhm"``.
    - `beta`: the momentum parameter, $0 \le \beta < 1$ (default 0.5).  For ``"gd"`` it must
      be 0.  The defaults are those of `compare`, so that the iterates it compares with are
      ``iterates(loss, u0, eta=eta, num_steps=K)``.
    - `eta`: the step size (learning rate), finite and $> 0$.
    - `num_steps`: the number $K \ge 1$ of steps.
    - `v0`: the initial velocity $u_0 - u_{-1}$, a pytree like `u0`; ``None`` (default) means
      from rest.  With ``"gd"`` ($\beta = 0$) it has no effect.  ``"nesterov"`` and ``"qhm"``
      refuse a non-zero `v0`: their momentum buffer starts at zero, and a velocity
      $u_0 - u_{-1}$ does not fix their first step, which would also need
      $\nabla L(u_{-1})$ (docs/theory.md#library-momentum).
    - `nu`: ν of ``"qhm"``, $0 \le \nu \le 1$ (required there, refused by the other methods).
    - `check_finite`: raise `DivergenceError` if an iterate is NaN or Inf (default).  Pass
      ``False`` to get the non-finite iterates back, e.g. to study where a method diverges.
      Skipped inside `jax.jit`/`jax.vmap`.

    **Returns:**

    A pytree like `u0` whose leaves have a leading axis of length `num_steps + 1`, holding
    $u_0, \dots, u_K$.

    **Raises:**

    `ValueError` if `method` is unknown, `beta` is outside $[0, 1)$ (or nonzero for ``"gd"``),
    `nu` is outside $[0, 1]$, missing for ``"qhm"`` or given to another method, `v0` is
    non-zero for ``"nesterov"`` or ``"qhm"``,
    `eta` is not finite and positive, `num_steps` is not a positive int, `u0` or `v0` has NaN or
    Inf, `v0` does not match `u0`, or `loss` is not a JAX function returning a real scalar that
    is finite at `u0` (with a finite gradient, and no index outside `u0`).
    `DivergenceError` (a `RuntimeError`) if an iterate is not finite, with the first bad step
    and the stability limit of the method on a quadratic.  `RuntimeError` if JAX is not in
    float64 mode.
    """
    require_float64("hbflow.iterates")
    check_method(method)

    # beta and eta may be traced (a vmap over eta): their values are checked when concrete.
    beta, beta_value = _beta_argument(beta, method)
    eta_value = _check_scalar(eta, "eta")
    if eta_value is not None:
        check_positive(eta_value, "eta")
    num_steps = check_count(num_steps, "num_steps")
    if nu is None:
        check_nu(None, method)
        nu_value = None
    else:
        nu_value = _check_scalar(nu, "nu")
        if nu_value is not None:
            check_nu(nu_value, method)
        elif method != "qhm":
            check_nu(nu, method)

    u0 = as_float_tree(u0, "u0")
    leaves, treedef = jax.tree_util.tree_flatten(u0)

    if v0 is None:
        # Host zeros where u0 is concrete: `jnp.zeros_like` would be two small device programs,
        # compiled (or loaded from JAX's cache) in every process.
        zeros = jnp.zeros_like if is_traced(u0) else lambda x: np.zeros(x.shape, x.dtype)
        v0 = jax.tree_util.tree_map(zeros, u0)
    else:
        v_leaves, v_treedef = jax.tree_util.tree_flatten(v0)
        if v_treedef != treedef:
            raise ValueError(f"v0 must have the tree structure of u0 ({treedef}), got {v_treedef}")
        try:
            v_leaves = [jnp.asarray(v, dtype=u.dtype) for v, u in zip(v_leaves, leaves)]
        except (TypeError, ValueError):
            raise ValueError(
                f"v0 must be an array (or pytree) of real numbers, got {v0!r}"
            ) from None
        for v, u in zip(v_leaves, leaves):
            if v.shape != u.shape:
                raise ValueError(
                    f"v0 must have the shapes of u0: got {v.shape}, expected {u.shape}"
                )
        v0 = as_float_tree(jax.tree_util.tree_unflatten(treedef, v_leaves), "v0")
        if method in _TWO_GRADIENT:
            _check_zero_velocity(v0, method)

    dtype = jnp.result_type(*leaves)
    avals = tuple((x.shape, x.dtype) for x in leaves)
    check_loss_structure_once(loss, treedef, avals, "u0")
    run = _COMPILED(loss, method, treedef, avals)
    if not is_traced(u0):
        check_loss_values(loss, u0, name="u0")
    us = run(
        u0,
        v0,
        _as_scalar(beta, dtype),
        _as_scalar(eta, dtype),
        _as_scalar(0.0 if nu is None else nu, dtype),
        num_steps=num_steps,
    )
    if check_finite and not is_traced(us):
        step = first_non_finite(us)
        if step is not None:
            raise DivergenceError(
                divergence_message(
                    loss, u0, method, beta_value, eta_value, step, us=us, nu=nu_value
                ),
                step=step,
            )
    return us


def _check_zero_velocity(v0: PyTree, method: str) -> None:
    values = [concrete(x) for x in jax.tree_util.tree_leaves(v0)]
    if all(v is not None and not np.any(v) for v in values):
        return
    raise ValueError(
        f"v0 must be None (or zero) for method {method!r}: its momentum buffer starts at zero, "
        "and a velocity u0 - u_(-1) does not define its first step (that would also need the "
        "gradient at u_(-1)); start from rest, or run the steps already taken"
    )


def first_non_finite(us: PyTree) -> int | None:
    """The first index $k$ of the leading axis at which some leaf of `us` is NaN or Inf."""
    bad = None
    for leaf in jax.tree_util.tree_leaves(us):
        arr = np.asarray(leaf)
        rows = ~np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1)
        if rows.any():
            k = int(np.flatnonzero(rows)[0])
            bad = k if bad is None else min(bad, k)
    return bad


class DivergenceError(RuntimeError):
    """The iterates of a method became NaN or Inf.

    `step` is the first $k$ with $u_k$ not finite (``None`` if unknown).
    """

    def __init__(self, message: str, *, step: int | None = None):
        super().__init__(message)
        self.step = step


def stability_limit(
    method: str, beta: RealScalarLike, curvature: float, nu: RealScalarLike | None = None
) -> float:
    r"""The largest stable step size of `method` on a quadratic with top Hessian eigenvalue $L$.

    On $L(u) = \tfrac12 u\cdot Hu$ the iterates decouple along the eigenvectors of $H$; along
    one with eigenvalue $\lambda > 0$, with $h = \eta\lambda$, the characteristic polynomials of
    the recursion (docs/theory.md#stability-on-quadratics) are

    - HB: $z^2 - (1+\beta-h)z + \beta$, whose roots lie in the unit disc (for
      $0 \le \beta < 1$) iff $0 < h < 2(1+\beta)$;
    - NAG: $z^2 - (1+\beta)(1-h)z + \beta(1-h)$; the Jury conditions give
      $0 < h < 2(1+\beta)/(1+2\beta)$ (the condition $|\beta(1-h)| < 1$ is weaker);
    - GD: $z - (1 - h)$, stable iff $0 < h < 2$;
    - the library rules, $c_0$ and $c_1$ of docs/theory.md#library-momentum:
      $z^2 - (1+\beta-c_0h)z + (\beta - c_1h)$.  Jury: $P(1) = (c_0-c_1)h > 0$,
      $P(-1) = 2(1+\beta) - (c_0+c_1)h > 0$ and $|\beta - c_1h| < 1$, the last one weaker
      ($h < (1+\beta)/c_1$) for $\beta < 1$.  So $0 < h < 2(1+\beta)/(c_0+c_1)$:
      $2(1+\beta)/(1+2\beta)$ for Nesterov momentum (as for NAG, whose look-ahead sequence it is)
      and $2(1+\beta)/(1+\beta-2\nu\beta)$ for QHM.

    So the iterates are stable iff $\eta < c/L$ with $c = 2(1+\beta)$ for HB,
    $2(1+\beta)/(1+2\beta)$ for NAG and Nesterov momentum, $2(1+\beta)/(1+\beta-2\nu\beta)$
    for QHM and $2$ for GD.  For a non-quadratic loss this is a local guide, with $L$ the largest
    curvature met along the path.

    **Returns:** $c/L$ (``inf`` if $L \le 0$).
    """
    beta = float(check_beta(beta, method))
    if method == "gd":
        c = 2.0
    elif method in ("nag", "nesterov"):
        c = 2.0 * (1.0 + beta) / (1.0 + 2.0 * beta)
    elif method == "qhm":
        nu_value = check_nu(nu, method)
        if nu_value is None:  # check_nu refuses a missing nu for qhm; this narrows the type
            raise ValueError("method 'qhm' needs nu")
        c = 2.0 * (1.0 + beta) / (1.0 + beta - 2.0 * nu_value * beta)
    else:
        c = 2.0 * (1.0 + beta)
    return c / curvature if curvature > 0 else math.inf


_LIMIT_FORMULA = {
    "hb": "2(1+beta)/L_max",
    "nag": "2(1+beta)/((1+2 beta) L_max)",
    "gd": "2/L_max",
    "nesterov": "2(1+beta)/((1+2 beta) L_max)",
    "qhm": "2(1+beta)/((1+beta-2 nu beta) L_max)",
}


def divergence_message(
    loss: Callable,
    u0: PyTree,
    method: str,
    beta: float | None,
    eta: float | None,
    step: int,
    *,
    us: PyTree | None = None,
    nu: RealScalarLike | None = None,
) -> str:
    """Why the iterates diverged at `step`: the loss left its domain, or the stability limit.

    With the iterates `us` (a leading time axis), a loss that is NaN or has a NaN gradient at
    the last finite iterate is reported as such; otherwise the message gives the stability
    limit from the curvature at `u0`.
    """
    where = f"u_{step} is the first iterate with NaN or Inf"
    if eta is not None:
        where += f" (t = {step * eta:.6g})"
    head = f"the {method} iterates diverge"
    if eta is not None and beta is not None:
        head += f" for eta={eta:g}, beta={beta:g}"
        if nu is not None:
            head += f", nu={nu:g}"
    message = f"{head}: {where}."
    if us is not None and step >= 1:
        nan_at = _nan_loss_step(loss, us, method, beta, step)
        if nan_at is not None:
            return message + (
                f" The loss became NaN at step {nan_at}: u_{nan_at} is finite, but the loss or "
                f"its gradient is NaN at the point where step {nan_at} evaluates it, so the "
                "iterates left the domain of the loss (a log or sqrt of a negative number, a "
                "division by zero). Start farther inside the domain, use a smaller eta, or "
                "write the loss so that it is defined along the path."
            )
    try:
        _, dominant = hessian_estimates(loss, u0, ravel_pytree(u0)[0][None])
        curvature = float(dominant[0])
    except Exception:  # noqa: BLE001 - the estimate is a hint; the divergence is the error
        curvature = math.nan
    if math.isfinite(curvature) and curvature < 0:
        return message + (
            f" At u0 the dominant Hessian eigenvalue is negative ({curvature:.4g}, power "
            "iteration): the loss curves down there and the iterates can run away along that "
            "direction for any eta; check that the loss is bounded below along the path."
        )
    if (
        beta is None
        or (method == "qhm" and nu is None)
        or not math.isfinite(curvature)
        or curvature == 0
    ):
        return message + " Use a smaller eta."
    limit = stability_limit(method, 0.0 if method == "gd" else beta, curvature, nu=nu)
    message += (
        f" At u0 the Hessian has |grad^2 L| = L_max ~ {curvature:.4g} (power iteration); on a "
        f"quadratic the {method} iterates are stable only for eta < {_LIMIT_FORMULA[method]}"
        f" = {limit:.4g} here (for other losses this is a local guide: L_max is the largest "
        "curvature along the path)."
    )
    if eta is not None and eta < limit:
        message += (
            " This eta is below that limit at u0, so the curvature grows along the path: "
            "use a smaller eta."
        )
    else:
        message += f" Use eta < {limit:.4g}."
    return message


def _nan_loss_step(
    loss: Callable, us: PyTree, method: str, beta: float | None, step: int
) -> int | None:
    """`step - 1` if the loss or its gradient is NaN where that step evaluates it."""
    k = step - 1
    try:
        u_k = jax.tree_util.tree_map(lambda x: x[k], us)
        points = [u_k]
        if method == "nag" and beta and k >= 1:  # the gradient is taken at the look-ahead
            points.append(jax.tree_util.tree_map(lambda x: x[k] + beta * (x[k] - x[k - 1]), us))
        for point in points:
            flat = ravel_pytree(point)[0]
            if not np.all(np.isfinite(np.asarray(flat))):
                return None
            value, grad = jax.value_and_grad(loss)(point)
            flat_grad = ravel_pytree(grad)[0]
            # NaN, not Inf: an overflow (a divergence) is not a loss leaving its domain.
            if np.isnan(float(value)) or np.any(np.isnan(np.asarray(flat_grad))):
                return k
    except Exception:  # noqa: BLE001 - a hint only; the divergence is the error
        return None
    return None


def _hessian_fn(loss: Callable, treedef: Any, shapes: tuple, iters: int = 40) -> Callable:
    def top_at(loss_arrays, x, v):
        # made while tracing: outside, the zeros and the ravel would be small device programs
        zeros = jax.tree_util.tree_unflatten(treedef, [jnp.zeros(s) for s in shapes])
        _, unravel = ravel_pytree(zeros)
        grad = jax.grad(lambda y: loss(loss_arrays, unravel(y)))

        def hvp(w):
            return jax.jvp(grad, (x,), (w,))[1]

        def body(_, w):
            hw = hvp(w)
            return hw / jnp.maximum(jnp.linalg.norm(hw), 1e-300)

        w = jax.lax.fori_loop(0, iters, body, v / jnp.linalg.norm(v))
        hw = hvp(w)
        return jnp.linalg.norm(hw), w @ hw  # |H| and the sign-carrying Rayleigh quotient

    def example(loss_arrays, points):
        return loss_arrays, jax.tree_util.tree_unflatten(
            treedef, [jax.ShapeDtypeStruct(s, jnp.float64) for s in shapes]
        )

    def estimates(loss_arrays, points):
        # the fixed random start of every power iteration, made inside the compiled program
        start = jax.random.normal(jax.random.key(0), points.shape, dtype=points.dtype)
        return jax.vmap(top_at, in_axes=(None, 0, 0))(loss_arrays, points, start)

    return _programs.Stored(
        jax.jit(estimates),
        "hessian_estimates",
        loss,
        example,
        static=(treedef, shapes, iters),
    )


_HESSIAN_FN = PerLoss(_hessian_fn, compiled=True)


def hessian_estimates(
    loss: Callable, u0: PyTree, points: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    r"""$\|\nabla^2 L\|$ and the dominant eigenvalue (with its sign) at flat `points`.

    Power iteration (40 steps from a fixed random start) at each row of `points`, a point of
    the raveled parameters of `u0`.  For a positive semi-definite Hessian the two agree and are
    the largest eigenvalue $L_{\max}$; a negative dominant eigenvalue means the loss curves
    down more strongly than up there.
    """
    flat_points = np.asarray(points, dtype=np.float64)
    leaves, treedef = jax.tree_util.tree_flatten(u0)
    shapes = tuple(jnp.shape(x) for x in leaves)
    fn = _HESSIAN_FN(loss, treedef, shapes)
    norms, dominant = fn(flat_points)
    return np.asarray(norms), np.asarray(dominant)
