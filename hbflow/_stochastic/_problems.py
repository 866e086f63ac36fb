r"""Finite-sum problems: a per-sample loss, the data, and the mini-batch noise it makes.

A `FiniteSumProblem` holds a loss ``loss(u, batch)`` that returns the *mean* of the per-sample
losses $\ell_i(u)$ over the samples in ``batch`` (a pytree of arrays whose leading axis indexes
samples), the full data (the same pytree with $n$ samples) and a start $u_0$.  From it:

- $L(u) = \frac1n\sum_i \ell_i(u)$ and $\nabla L$;
- the per-sample gradients $\nabla\ell_i(u)$;
- the noise covariance of one mini-batch gradient of size $B$ drawn with replacement,
  $\Sigma_B(u) = \frac1B\,\frac1n\sum_i(\nabla\ell_i - \nabla L)(\nabla\ell_i - \nabla L)^\top$,
  and a factor $G(u) \in \mathbb R^{d\times n}$ with $G G^\top = \Sigma_B$, which lets an SDE be
  driven by an $n$-dimensional Brownian motion without a matrix square root.

All of these work on the flat parameter vector (`ravel_pytree` of $u_0$); `unravel` maps back.

Built-in problems: ``least-squares`` (the exact moment oracle applies), ``logistic-regression``
and ``diagonal-linear-network-sgd``; see `get_stochastic_problem`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .._custom_types import PyTree
from .._problems import Problem, diagonal_linear_network
from .._validate import as_float_tree, check_count, require_float64

__all__ = [
    "FiniteSumProblem",
    "least_squares_problem",
    "logistic_regression_problem",
    "diagonal_linear_network_sgd",
    "get_stochastic_problem",
    "stochastic_problem_names",
]


def _check_two_arguments(loss: Callable) -> None:
    if not callable(loss):
        raise ValueError(f"loss must be a callable loss(u, batch), got {loss!r}")
    try:
        signature = inspect.signature(loss)
    except (TypeError, ValueError):  # a builtin or C function: let tracing decide
        return
    try:
        signature.bind(None, None)
    except TypeError:
        raise ValueError(
            f"loss must take two arguments, loss(u, batch): the parameters and a mini-batch "
            f"(the data with a leading sample axis); {getattr(loss, '__name__', loss)!r} has "
            f"signature {signature}"
        ) from None


def _data_size(data: PyTree) -> int:
    leaves_with_path = jax.tree_util.tree_flatten_with_path(data)[0]
    if not leaves_with_path:
        raise ValueError("data must hold at least one array of samples, got an empty pytree")
    sizes = {}
    for path, leaf in leaves_with_path:
        where = "data" + jax.tree_util.keystr(path)
        if np.ndim(leaf) == 0:
            raise ValueError(
                f"{where} must be an array whose leading axis indexes samples, got a scalar"
            )
        sizes[where] = int(np.shape(leaf)[0])
    if len(set(sizes.values())) != 1:
        listed = ", ".join(f"{k}: {v}" for k, v in sizes.items())
        raise ValueError(
            f"data arrays must have the same number of samples (leading axis); got {listed}"
        )
    n = next(iter(sizes.values()))
    if n < 1:
        raise ValueError("data must hold at least one sample, got leading axis of length 0")
    return n


@dataclasses.dataclass(frozen=True, eq=False)
class FiniteSumProblem:
    r"""A finite-sum problem $L(u) = \frac1n\sum_{i=1}^n \ell_i(u)$ for stochastic methods.

    **Arguments:**

    - `name`: a non-empty name.
    - `loss`: ``loss(u, batch)``, the mean of $\ell_i(u)$ over the samples of ``batch``, a pytree
      shaped like `data` with any number $\ge 1$ of samples on the leading axis; written with
      ``jax.numpy``.  Duplicated samples count as often as they appear (sampling with
      replacement).
    - `data`: a pytree of arrays, all with the same leading length $n$ (the samples).
    - `x0`: the start $u_0$, an array or a pytree of arrays (float64).
    - `description`, `source`: the formula and where the problem comes from.
    - `least_squares`: ``(X, y)`` when $\ell_i(u) = \frac12(x_i\cdot u - y_i)^2$ on flat
      parameters; only then does the exact moment oracle apply.  Set by
      `least_squares_problem`.

    **Raises:** `ValueError` if `loss` does not take ``(u, batch)``, the data arrays do not agree
    on $n$, `x0` is not finite, ``loss(x0, batch)`` is not a real scalar, or ``loss(x0, data)``
    is not the mean of the per-sample losses (for example a sum).

    Problems compare by identity: compiled functions are cached per problem.
    """

    name: str
    loss: Callable[[PyTree, PyTree], jax.Array]
    data: PyTree
    x0: PyTree
    description: str = ""
    source: str = ""
    least_squares: tuple[np.ndarray, np.ndarray] | None = None

    if TYPE_CHECKING:
        # Derived in __post_init__; declared for the type checker only, so that they stay out of
        # the dataclass fields (init, repr, replace) at run time.
        _flat_x0: jax.Array = dataclasses.field(init=False)
        _unravel: Callable[[jax.Array], PyTree] = dataclasses.field(init=False)
        _n: int = dataclasses.field(init=False)

    def __post_init__(self):
        require_float64("a FiniteSumProblem")
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")
        _check_two_arguments(self.loss)
        data = as_float_tree(self.data, "data")
        n = _data_size(data)
        x0 = as_float_tree(self.x0, "x0", float64=True)
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "x0", x0)
        flat, unravel = ravel_pytree(x0)
        object.__setattr__(self, "_flat_x0", flat)
        object.__setattr__(self, "_unravel", unravel)
        object.__setattr__(self, "_n", n)
        one = jax.tree_util.tree_map(lambda a: a[:1], data)
        try:
            out = jax.eval_shape(self.loss, x0, one)
        except Exception as err:  # noqa: BLE001 - any failure here is a bad loss, data or start
            raise ValueError(
                f"loss(x0, batch) fails for a batch of one sample: {type(err).__name__}: "
                f"{str(err).strip().splitlines()[0] if str(err).strip() else ''}; check that "
                "loss takes (u, batch) with batch a pytree shaped like data, and x0 the shape "
                "loss expects"
            ) from None
        if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != ():
            raise ValueError(
                f"loss(u, batch) must return a real scalar (the mean over the batch), got {out!r}"
            )
        full = float(self.full_loss(flat))
        mean = float(jnp.mean(self.sample_losses(flat)))
        if not (math.isfinite(full) and math.isfinite(mean)):
            raise ValueError(f"loss must be finite at x0, got {full}")
        if abs(full - mean) > 1e-9 * max(1.0, abs(mean)):
            raise ValueError(
                "loss(u, batch) must be the mean of the per-sample losses over the batch: at x0, "
                f"loss(x0, data) = {full:.6g} but the mean of the n = {n} one-sample losses is "
                f"{mean:.6g} (a sum instead of a mean?)"
            )
        if self.least_squares is not None:
            X, y = (np.asarray(a, dtype=np.float64) for a in self.least_squares)
            if X.shape != (n, flat.size) or y.shape != (n,):
                raise ValueError(
                    f"least_squares must be (X, y) with X of shape ({n}, {flat.size}) and y of "
                    f"shape ({n},), got {X.shape} and {y.shape}"
                )
            object.__setattr__(self, "least_squares", (X, y))

    # --- sizes and flattening ----------------------------------------------------------------

    @property
    def n(self) -> int:
        """The number of samples."""
        return self._n

    @property
    def dim(self) -> int:
        """The number of parameters $d$ (flattened)."""
        return int(self._flat_x0.size)

    @property
    def flat_x0(self) -> jax.Array:
        """$u_0$ as a flat float64 vector."""
        return self._flat_x0

    def unravel(self, x: jax.Array) -> PyTree:
        """The parameters pytree of the flat vector `x`."""
        return self._unravel(x)

    # --- losses and gradients on flat vectors ------------------------------------------------

    def batch_loss(self, x: jax.Array, batch: PyTree) -> jax.Array:
        """The loss on `batch` at the flat point `x`."""
        return self.loss(self._unravel(x), batch)

    def full_loss(self, x: jax.Array) -> jax.Array:
        r"""$L(x) = \frac1n\sum_i\ell_i(x)$."""
        return self.batch_loss(x, self.data)

    def grad(self, x: jax.Array) -> jax.Array:
        r"""$\nabla L(x)$, flat."""
        return jax.grad(self.full_loss)(x)

    def batch_grad(self, x: jax.Array, indices: jax.Array) -> jax.Array:
        r"""The mini-batch gradient $\frac1B\sum_{i\in I}\nabla\ell_i(x)$ for the indices $I$."""
        batch = jax.tree_util.tree_map(lambda a: a[indices], self.data)
        return jax.grad(self.batch_loss)(x, batch)

    def sample_losses(self, x: jax.Array) -> jax.Array:
        r"""$(\ell_1(x), \dots, \ell_n(x))$."""
        single = jax.tree_util.tree_map(lambda a: a[:, None], self.data)
        return jax.vmap(lambda b: self.batch_loss(x, b))(single)

    def sample_grads(self, x: jax.Array) -> jax.Array:
        r"""The per-sample gradients $\nabla\ell_i(x)$, shape ``(n, d)``."""
        single = jax.tree_util.tree_map(lambda a: a[:, None], self.data)
        return jax.vmap(lambda b: jax.grad(self.batch_loss)(x, b))(single)

    def noise_factor(self, x: jax.Array, batch_size: int) -> jax.Array:
        r"""$G(x) = (\nabla\ell_i - \nabla L)_{i}^\top/\sqrt{Bn}$, shape ``(d, n)``:
        $G G^\top = \Sigma_B(x)$."""
        grads = self.sample_grads(x)
        centred = grads - jnp.mean(grads, axis=0)
        return centred.T / jnp.sqrt(batch_size * self._n)

    def noise_apply(self, x: jax.Array, w: jax.Array, batch_size: int) -> jax.Array:
        r"""$G(x)\,w$ without forming $G$: the gradient of
        $\sum_i (w_i - \bar w)\,\ell_i(x)/\sqrt{Bn}$ (one reverse pass instead of $n$)."""
        centred = (w - jnp.mean(w)) / jnp.sqrt(batch_size * self._n)
        return jax.grad(lambda y: jnp.sum(centred * self.sample_losses(y)))(x)

    def noise_covariance(self, x: jax.Array, batch_size: int) -> jax.Array:
        r"""$\Sigma_B(x) = \frac1{Bn}\sum_i(\nabla\ell_i-\nabla L)(\nabla\ell_i-\nabla L)^\top$."""
        g = self.noise_factor(x, batch_size)
        return g @ g.T

    def as_problem(self) -> Problem:
        """The full-batch problem $L$ with the same start, for the deterministic comparator."""
        return _as_problem(self)


@functools.lru_cache(maxsize=32)
def _as_problem(p: FiniteSumProblem) -> Problem:
    def loss(u):
        return p.loss(u, p.data)

    return Problem(p.name, loss, p.x0, p.description, p.source)


def check_batch_size(batch_size, n: int) -> int:
    """`batch_size` as an int in ``[1, n]``, else a `ValueError`."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise ValueError(f"batch_size must be an integer in [1, n = {n}], got {batch_size!r}")
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be in [1, n = {n}] (n samples), got {batch_size}")
    return int(batch_size)


# --- built-in problems -----------------------------------------------------------------------


def _least_squares_loss(u, batch):
    residual = batch["x"] @ u - batch["y"]
    return 0.5 * jnp.mean(residual**2)


def least_squares_problem(X, y, x0, *, name: str = "least-squares") -> FiniteSumProblem:
    r"""Least squares $\ell_i(u) = \frac12(x_i\cdot u - y_i)^2$ with data `X` (``(n, d)``), `y`.

    The mini-batch gradient is affine in $u$ and $\Sigma_B(u)$ quadratic, so the moments of the
    iterates and of linear-drift SDEs are exact (the oracle of ``hbflow._stochastic._oracle``).

    **Raises:** `ValueError` if the shapes of `X`, `y` and `x0` disagree.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x0 = np.asarray(x0, dtype=np.float64)
    if X.ndim != 2 or y.shape != (X.shape[0],) or x0.shape != (X.shape[1],):
        raise ValueError(
            f"least squares needs X of shape (n, d), y of shape (n,) and x0 of shape (d,); got "
            f"X {X.shape}, y {y.shape}, x0 {x0.shape}"
        )
    return FiniteSumProblem(
        name=name,
        loss=_least_squares_loss,
        data={"x": jnp.asarray(X), "y": jnp.asarray(y)},
        x0=jnp.asarray(x0),
        description=(
            f"Least squares l_i(u) = (x_i.u - y_i)^2/2, n = {X.shape[0]}, d = {X.shape[1]}: "
            "exact moment oracle."
        ),
        source="Li, Tai & E, 'Stochastic modified equations', JMLR 20(40), 2019 (their "
        "quadratic examples).",
        least_squares=(X, y),
    )


@functools.lru_cache(maxsize=8)
def _least_squares(n: int = 32, d: int = 3, noise: float = 0.5, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    theta = np.array([1.0, -0.5, 0.25, 0.75, -1.0, 0.5][:d] + [0.0] * max(0, d - 6))
    y = X @ theta + noise * rng.standard_normal(n)
    x0 = np.array([0.5, 1.5, -1.0, 0.0, 0.0, 0.0][:d] + [0.0] * max(0, d - 6))
    p = least_squares_problem(X, y, x0)
    return dataclasses.replace(
        p,
        description=(
            f"Least squares l_i(u) = (x_i.u - y_i)^2/2, n = {n} Gaussian samples in d = {d}, "
            f"y_i = theta*.x_i + {noise} N(0,1) (so the noise does not vanish at the minimum), "
            f"u0 = {x0.tolist()}, NumPy seed {seed}. Hessian ~ I: ||H|| about 1.8. "
            "Exact moment oracle."
        ),
    )


def _logistic_loss(u, batch):
    margins = batch["y"] * (batch["x"] @ u)
    return jnp.mean(jax.nn.softplus(-margins)) + 0.005 * jnp.sum(u * u)


@functools.lru_cache(maxsize=8)
def logistic_regression_problem(n: int = 64, d: int = 4, seed: int = 0) -> FiniteSumProblem:
    r"""Logistic regression $\ell_i(u) = \log(1 + e^{-y_i x_i\cdot u}) + 0.005\|u\|^2$.

    $x_i \sim \mathcal N(0, I_d)$, labels $y_i = \pm1$ drawn from the logistic model with
    $w^* = (2, -1, 1, 0, \dots)$ (NumPy seed `seed`), start $u_0 = 0$.  The small ridge keeps a
    finite minimiser.

    **Raises:** `ValueError` if a size is not a positive integer.
    """
    n = check_count(n, "n")
    d = check_count(d, "d")
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    w = np.zeros(d)
    w[: min(d, 3)] = [2.0, -1.0, 1.0][: min(d, 3)]
    p_plus = 1.0 / (1.0 + np.exp(-X @ w))
    y = np.where(rng.random(n) < p_plus, 1.0, -1.0)
    return FiniteSumProblem(
        name="logistic-regression",
        loss=_logistic_loss,
        data={"x": jnp.asarray(X), "y": jnp.asarray(y)},
        x0=jnp.zeros(d),
        description=(
            f"Logistic regression l_i(u) = log(1 + exp(-y_i x_i.u)) + 0.005|u|^2, n = {n}, "
            f"d = {d}, x_i ~ N(0, I), y_i = +-1 from the logistic model with w* = (2, -1, 1, "
            f"0, ...), u0 = 0, NumPy seed {seed}."
        ),
        source="A standard convex finite sum for stochastic modified equations; see Li, Tai & "
        "E, JMLR 20(40), 2019, section 5.",
    )


def _dln_loss(params, batch):
    theta = params["u"] ** 2 - params["v"] ** 2
    residual = batch["x"] @ theta - batch["y"]
    return 0.5 * jnp.mean(residual**2)


@functools.lru_cache(maxsize=16)
def diagonal_linear_network_sgd(
    n: int = 40, d: int = 100, sparsity: int = 5, init_scale: float = 0.1, seed: int = 0
) -> FiniteSumProblem:
    r"""The diagonal linear network of `hbflow.diagonal_linear_network` as a finite sum.

    $\ell_i(u, v) = \frac12((u\odot u - v\odot v)\cdot x_i - y_i)^2$ with the same data, start
    and arguments; $L$ is the deterministic problem's loss.

    **Raises:** `ValueError` as `hbflow.diagonal_linear_network`.
    """
    base = diagonal_linear_network(n, d, sparsity, init_scale, seed)
    return FiniteSumProblem(
        name="diagonal-linear-network-sgd",
        loss=_dln_loss,
        data={"x": base.data["X"], "y": base.data["y"]},
        x0=base.x0,
        description=base.description + " Per-sample losses for mini-batch methods.",
        source=base.source,
    )


_REGISTRY: dict[str, Callable[[], FiniteSumProblem]] = {
    "least-squares": _least_squares,
    "logistic-regression": logistic_regression_problem,
    "diagonal-linear-network-sgd": diagonal_linear_network_sgd,
}


def stochastic_problem_names() -> list[str]:
    """The names `get_stochastic_problem` accepts."""
    return list(_REGISTRY)


def get_stochastic_problem(name: str) -> FiniteSumProblem:
    """The named finite-sum problem (default sizes and seed); the same object on every call.

    **Raises:** `ValueError` listing the valid names if `name` is unknown.
    """
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(
            f"unknown stochastic problem {name!r}; valid names: {', '.join(_REGISTRY)}"
        )
    return _REGISTRY[name]()
