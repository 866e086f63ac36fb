r"""Named test problems, each with the paper or book it comes from.

Every problem is a `Problem`: a JAX scalar loss $L$, a float64 starting point `u0` (an array or a
pytree of arrays) and its source.  Look problems up by name with `get_problem`; the ones with
sizes and seeds (the diagonal and deep linear networks) also have factories.  Problems are built
once and cached, so the same name (or the same factory arguments) gives the same `loss` object
and `hbflow.iterates` does not recompile.

| name | $L$ | $x_0$ |
| --- | --- | --- |
| ``ks-quadratic-{5,10,20}`` | $\tfrac12 u\cdot\mathrm{diag}(1,\kappa)u$ | $(1, 1)$ |
| ``himmelblau-scaled`` (default) | $\tfrac1{100}[(x^2+y-11)^2 + (x+y^2-7)^2]$ | $(1, 0.7)$ |
| ``rosenbrock-soft`` | $\tfrac12(1-x)^2 + \tfrac12(y-x^2)^2$ | $(-1.2, 1)$ |
| ``double-well`` | $\tfrac14(x^2-1)^2 + \tfrac12 y^2 + \tfrac12 x^2y^2$ | $(0.05, 1)$ |
| ``diagonal-linear-network`` | $\frac1{2n}\sum_i((u^2 - v^2)\cdot x_i - y_i)^2$ | $u=v=c$ |
| ``deep-linear-network`` | $\frac1{2n}\lVert W_N\cdots W_1X - Y\rVert_F^2$ | random |
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._custom_types import PyTree
from ._validate import check_count, check_positive

__all__ = [
    "Problem",
    "get_problem",
    "problem_names",
    "DEFAULT_PROBLEM",
    "diagonal_linear_network",
    "deep_linear_network",
]


_KS_SOURCE = (
    "N. B. Kovachki and A. M. Stuart, 'Continuous time analysis of momentum methods', "
    "Journal of Machine Learning Research 22(17):1-40, 2021 (the quadratic of their figures)."
)
_LYU = (
    "B. Lyu, X. Zhang, F. Zheng, H. Wang, Z. Wang and Z. Zhu, 'Heavy-Ball Momentum Method in "
    "Continuous Time and Discretization Error Analysis', arXiv:2506.14806, 2025"
)


@dataclasses.dataclass(frozen=True, eq=False)
class Problem:
    r"""A named test problem: a scalar loss, a starting point and where it comes from.

    **Arguments:**

    - `name`: the name `get_problem` knows it by.
    - `loss`: a JAX function of parameters shaped like `u0`, returning a real scalar.
    - `u0`: the starting point, a float64 array or a pytree of float64 arrays.
    - `description`: the formula and the conventions, in words.
    - `source`: the paper or book the problem comes from (and what was changed, if anything).
    - `data`: read-only extra arrays (e.g. the design matrix and the planted solution).
    - `data_loss`, `loss_data`: optionally, the same loss with its data as an argument,
      ``loss(params) == data_loss(params, loss_data)``, `loss_data` a pytree of arrays.  A solver
      compiled for `data_loss` takes the data traced instead of as constants of the program, so
      one compilation serves every data set of the same shapes (e.g. other seeds; see
      `hbflow.sweep`).  Both or neither.

    **Raises:** `ValueError` if `name` is empty, `loss` is not callable, or only one of
    `data_loss` and `loss_data` is given (or `data_loss` is not callable).

    Problems compare by identity: they hold functions and arrays.
    """

    name: str
    loss: Callable[[PyTree], jax.Array]
    u0: PyTree
    description: str
    source: str
    data: Mapping[str, Any] = dataclasses.field(default_factory=lambda: types.MappingProxyType({}))
    data_loss: Callable[[PyTree, PyTree], jax.Array] | None = None
    loss_data: PyTree | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Problem name must be a non-empty string, got {self.name!r}")
        if not callable(self.loss):
            raise ValueError(f"Problem {self.name!r}: loss must be callable")
        if (self.data_loss is None) != (self.loss_data is None):
            raise ValueError(
                f"Problem {self.name!r}: give both data_loss and loss_data, or neither"
            )
        if self.data_loss is not None and not callable(self.data_loss):
            raise ValueError(f"Problem {self.name!r}: data_loss must be callable")
        object.__setattr__(self, "data", types.MappingProxyType(dict(self.data)))

    @property
    def x0(self) -> PyTree:
        """The starting point under its former name; use `u0`."""
        return self.u0


def _f64(x: Any) -> jax.Array:
    # A transfer, not a conversion on the device (which would compile a program, in a new process)
    return jax.device_put(np.asarray(x, dtype=np.float64))


# --- quadratics --------------------------------------------------------------------------------


def _ks_quadratic(kappa: int) -> Problem:
    q = _f64([1.0, float(kappa)])

    def loss(u):
        return 0.5 * jnp.sum(q * u * u)

    return Problem(
        name=f"ks-quadratic-{kappa}",
        loss=loss,
        u0=_f64([1.0, 1.0]),
        description=(
            rf"L(u) = 1/2 u.Qu with Q = diag(1, {kappa}), u0 = (1, 1). Kovachki & Stuart run "
            "beta = 0.9 on the horizon T = 2. Exact oracle: every model is linear here."
        ),
        source=_KS_SOURCE,
        data={"Q": jnp.diag(q), "kappa": kappa},
    )


# --- two-dimensional non-convex losses ----------------------------------------------------------


def _himmelblau_scaled() -> Problem:
    def loss(u):
        x, y = u[0], u[1]
        return ((x**2 + y - 11.0) ** 2 + (x + y**2 - 7.0) ** 2) / 100.0

    return Problem(
        name="himmelblau-scaled",
        loss=loss,
        u0=_f64([1.0, 0.7]),
        description=(
            "Himmelblau's function divided by 100: L = [(x^2 + y - 11)^2 + (x + y^2 - 7)^2]/100, "
            "four minima (one at (3, 2)), a local maximum and four saddles. From u0 = (1, 0.7) "
            "the path starts where the Hessian has a negative eigenvalue (about -0.3) and bends "
            "towards (3, 2); along HB's path with beta = 0.5 on t in [0, 2], ||H|| <= 0.66, so "
            "lambda ||H|| = eta/(1-beta)^2 ||H|| <= 0.11 for eta <= 0.04. The 1/100 keeps "
            "lambda ||H|| small; it is the same as dividing eta by 100."
        ),
        source=(
            "D. M. Himmelblau, Applied Nonlinear Programming, McGraw-Hill, 1972 (the function); "
            "the scaling by 1/100 and the starting point are hbflow's choice. A smooth 2-D "
            f"non-convex model in the role of the 2-D examples of {_LYU}."
        ),
    )


def _rosenbrock_soft() -> Problem:
    def loss(u):
        x, y = u[0], u[1]
        return 0.5 * (1.0 - x) ** 2 + 0.5 * (y - x**2) ** 2

    return Problem(
        name="rosenbrock-soft",
        loss=loss,
        u0=_f64([-1.2, 1.0]),
        description=(
            "A Rosenbrock-type curved valley with a soft wall: L = (1 - x)^2/2 + (y - x^2)^2/2, "
            "minimum at (1, 1), started at Rosenbrock's (-1.2, 1). Non-convex: the Hessian is "
            "indefinite where y > x^2 + 1/2, which HB's path crosses. ||H|| is about 8.4 at u0, "
            "so lambda ||H|| is about 1.3 at eta = 0.04, beta = 0.5: harder than the default."
        ),
        source=(
            "H. H. Rosenbrock, 'An automatic method for finding the greatest or least value of a "
            "function', The Computer Journal 3(3):175-184, 1960; the valley wall is lowered from "
            "100 to 1 (and the whole halved) by hbflow."
        ),
    )


def _double_well() -> Problem:
    def loss(u):
        x, y = u[0], u[1]
        return 0.25 * (x**2 - 1.0) ** 2 + 0.5 * y**2 + 0.5 * x**2 * y**2

    return Problem(
        name="double-well",
        loss=loss,
        u0=_f64([0.05, 1.0]),
        description=(
            "A coupled quartic double well: L = (x^2 - 1)^2/4 + y^2/2 + x^2 y^2/2, minima at "
            "(+-1, 0) with Hessian 2I, a strict saddle at the origin with Hessian diag(-1, 1). "
            "From (0.05, 1) the path falls towards the saddle and then escapes along x, which "
            "tests how a continuous model follows an unstable direction."
        ),
        source=(
            "A standard double-well / strict-saddle model, written for hbflow (no single "
            "source); it plays the role of the 2-D non-convex examples of " + _LYU + "."
        ),
    )


# --- networks ------------------------------------------------------------------------------------


# Module-level, so that every data set (seed, size) shares one function object: one compilation.
def _diagonal_network_theta(params):
    return params["u"] ** 2 - params["v"] ** 2


def _diagonal_network_loss(params, data):
    residual = data["X"] @ _diagonal_network_theta(params) - data["y"]
    return 0.5 * jnp.mean(residual**2)


def _end_to_end(weights):
    product = weights[0]
    for w in weights[1:]:
        product = w @ product
    return product


def _deep_network_loss(weights, data):
    residual = _end_to_end(weights) @ data["X"] - data["Y"]
    return 0.5 * jnp.sum(residual**2) / data["X"].shape[1]


@functools.lru_cache(maxsize=32)
def diagonal_linear_network(
    n: int = 40, d: int = 100, sparsity: int = 5, init_scale: float = 0.1, seed: int = 0
) -> Problem:
    r"""The diagonal linear network regression of Woodworth et al. (2020).

    $$f(x; u, v) = (u\odot u - v\odot v)\cdot x, \qquad
    L(u, v) = \frac1{2n}\sum_{i=1}^n \big(f(x_i; u, v) - y_i\big)^2,$$

    with $x_i \sim \mathcal N(0, I_d)$, $y_i = \theta^*\cdot x_i$ and $\theta^*$ supported on
    `sparsity` coordinates drawn at random, its entries $\pm 1$ with random signs.  The
    parameters are the pytree ``{"u": u, "v": v}`` (two arrays of shape ``(d,)``), started at
    $u(0) = v(0) = c\mathbf 1$, so that the regression vector $\theta = u\odot u - v\odot v$
    starts at 0 and the network is balanced.  Everything is drawn from
    ``jax.random.PRNGKey(seed)``.  The result is cached: equal arguments give the same object.

    **Arguments:**

    - `n`: number of samples (40 in Papazov et al.'s and Lyu et al.'s experiments).
    - `d`: dimension (100 by default; 1000 or 10000 also work).
    - `sparsity`: number of nonzero entries of $\theta^*$, at most `d`.
    - `init_scale`: $c > 0$; a smaller $c$ biases the solution towards sparsity.
    - `seed`: seed of the data, the support and the signs.

    **Returns:**

    A `Problem` named ``"diagonal-linear-network"`` whose `data` holds ``X`` (shape
    ``(n, d)``), ``y`` (``(n,)``), ``theta_star`` (``(d,)``) and the function ``theta`` that maps
    ``{"u", "v"}`` to $u\odot u - v\odot v$; its `data_loss` is the loss with the data
    ``{"X", "y"}`` (its `loss_data`) as an argument, the same function for every seed and size.

    **Raises:** `ValueError` if a size is not a positive int, `sparsity > d`, or `init_scale` is
    not finite and positive.

    References:

    ```bibtex
    @inproceedings{woodworth2020kernel,
      author    = {Woodworth, Blake and Gunasekar, Suriya and Lee, Jason D. and Moroshko, Edward
                   and Savarese, Pedro and Golan, Itay and Soudry, Daniel and Srebro, Nathan},
      title     = {Kernel and Rich Regimes in Overparametrized Models},
      booktitle = {Conference on Learning Theory (COLT)}, year = {2020}
    }
    @inproceedings{papazov2024leveraging,
      author    = {Papazov, Hristo and Pesme, Scott and Flammarion, Nicolas},
      title     = {Leveraging Continuous Time to Understand Momentum When Training Diagonal
                   Linear Networks},
      booktitle = {International Conference on Artificial Intelligence and Statistics
                   (AISTATS)}, year = {2024}
    }
    ```
    """
    n = check_count(n, "n")
    d = check_count(d, "d")
    sparsity = check_count(sparsity, "sparsity")
    if sparsity > d:
        raise ValueError(f"sparsity must be at most d = {d}, got {sparsity}")
    init_scale = check_positive(init_scale, "init_scale")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")

    X, theta_star = _diagonal_network_data(jax.random.PRNGKey(seed), n, d, sparsity)
    y = X @ theta_star

    loss_data = {"X": X, "y": y}

    def loss(params):
        return _diagonal_network_loss(params, loss_data)

    u0 = {"u": jnp.full(d, init_scale, jnp.float64), "v": jnp.full(d, init_scale, jnp.float64)}
    return Problem(
        name="diagonal-linear-network",
        loss=loss,
        u0=u0,
        description=(
            f"Diagonal linear network, n = {n}, d = {d}, {sparsity}-sparse theta* with entries "
            f"+-1, x_i ~ N(0, I), y_i = theta*.x_i, u(0) = v(0) = {init_scale} * 1, seed {seed}. "
            "Parameters {'u': (d,), 'v': (d,)}; L = (1/2n) sum_i ((u*u - v*v).x_i - y_i)^2. "
            "Settings in this line of work: eta = 0.01, beta = 0.9 (lambda = 1)."
        ),
        source=(
            "B. Woodworth et al., 'Kernel and Rich Regimes in Overparametrized Models', COLT 2020; "
            "H. Papazov, S. Pesme and N. Flammarion, 'Leveraging Continuous Time to Understand "
            "Momentum When Training Diagonal Linear Networks', AISTATS 2024; also the diagonal "
            f"linear network experiments of {_LYU}."
        ),
        data={"X": X, "y": y, "theta_star": theta_star, "theta": _diagonal_network_theta},
        data_loss=_diagonal_network_loss,
        loss_data=loss_data,
    )


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _diagonal_network_data(key, n: int, d: int, sparsity: int):
    """X and theta* of `diagonal_linear_network`, drawn from `key` in one compiled program:
    drawn op by op, the same numbers cost about 20 small compilations in a new process (0.5 s)."""
    key_x, key_support, key_sign = jax.random.split(key, 3)
    X = jax.random.normal(key_x, (n, d), dtype=jnp.float64)
    support = jax.random.permutation(key_support, d)[:sparsity]
    signs = jnp.where(jax.random.bernoulli(key_sign, 0.5, (sparsity,)), 1.0, -1.0)
    theta_star = jnp.zeros(d, dtype=jnp.float64).at[support].set(signs)
    return X, theta_star


@functools.lru_cache(maxsize=32)
def deep_linear_network(
    depth: int = 3,
    width: int = 10,
    input_dim: int = 5,
    output_dim: int = 5,
    n: int = 50,
    init_scale: float = 1.0,
    seed: int = 0,
) -> Problem:
    r"""A deep linear network regression: $L = \frac1{2n}\lVert W_N\cdots W_1 X - Y\rVert_F^2$.

    The data are $X \in \mathbb R^{d_{\rm in}\times n}$ with i.i.d. $\mathcal N(0,1)$ entries
    and $Y = \Phi X$ for a target $\Phi$ with i.i.d. $\mathcal N(0, 1/d_{\rm in})$ entries.  The
    parameters are the tuple $(W_1, \dots, W_N)$, $N$ = `depth`, with
    $W_1 \in \mathbb R^{w\times d_{\rm in}}$, $W_j \in \mathbb R^{w\times w}$ and
    $W_N \in \mathbb R^{d_{\rm out}\times w}$, started at
    $W_j = c\,G_j/\sqrt{\text{fan-in}_j}$ with standard Gaussian $G_j$ (a smaller $c$ gives the
    saddle-to-saddle plateaus of Saxe et al.).  Everything is drawn from
    ``jax.random.PRNGKey(seed)``; the result is cached.

    **Arguments:**

    - `depth`: number of layers $N \ge 1$.
    - `width`: hidden width $w$.
    - `input_dim`, `output_dim`: $d_{\rm in}$, $d_{\rm out}$.
    - `n`: number of samples.
    - `init_scale`: $c > 0$.
    - `seed`: seed of the data, the target and the initialisation.

    **Returns:**

    A `Problem` named ``"deep-linear-network"`` whose `data` holds ``X``, ``Y``, ``Phi`` and
    the function ``end_to_end`` that maps the tuple of weights to $W_N\cdots W_1$; its
    `data_loss` is the loss with the data ``{"X", "Y"}`` (its `loss_data`) as an argument.

    **Raises:** `ValueError` if a size is not a positive int or `init_scale` is not finite
    and positive.

    References:

    ```bibtex
    @inproceedings{saxe2014exact,
      author    = {Saxe, Andrew M. and McClelland, James L. and Ganguli, Surya},
      title     = {Exact solutions to the nonlinear dynamics of learning in deep linear neural
                   networks},
      booktitle = {International Conference on Learning Representations (ICLR)}, year = {2014}
    }
    @inproceedings{arora2018optimization,
      author    = {Arora, Sanjeev and Cohen, Nadav and Hazan, Elad},
      title     = {On the Optimization of Deep Networks: Implicit Acceleration by
                   Overparameterization},
      booktitle = {International Conference on Machine Learning (ICML)}, year = {2018}
    }
    @inproceedings{arora2019convergence,
      author    = {Arora, Sanjeev and Cohen, Nadav and Golowich, Noah and Hu, Wei},
      title     = {A Convergence Analysis of Gradient Descent for Deep Linear Neural Networks},
      booktitle = {International Conference on Learning Representations (ICLR)}, year = {2019}
    }
    ```
    """
    depth = check_count(depth, "depth")
    width = check_count(width, "width")
    input_dim = check_count(input_dim, "input_dim")
    output_dim = check_count(output_dim, "output_dim")
    n = check_count(n, "n")
    init_scale = check_positive(init_scale, "init_scale")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")

    dims = [input_dim] + [width] * (depth - 1) + [output_dim]
    key_x, key_phi, *keys_w = jax.random.split(jax.random.PRNGKey(seed), depth + 2)
    X = jax.random.normal(key_x, (input_dim, n), dtype=jnp.float64)
    Phi = jax.random.normal(key_phi, (output_dim, input_dim), dtype=jnp.float64)
    Phi = Phi / math.sqrt(input_dim)
    Y = Phi @ X
    u0 = tuple(
        init_scale * jax.random.normal(k, (d_out, d_in), dtype=jnp.float64) / math.sqrt(d_in)
        for k, d_in, d_out in zip(keys_w, dims[:-1], dims[1:])
    )

    loss_data = {"X": X, "Y": Y}

    def loss(weights):
        return _deep_network_loss(weights, loss_data)

    return Problem(
        name="deep-linear-network",
        loss=loss,
        u0=u0,
        description=(
            f"Deep linear network of depth {depth}, width {width}, {input_dim} -> {output_dim}, "
            f"n = {n} Gaussian samples, Y = Phi X, init scale {init_scale}, seed {seed}. "
            "Parameters: tuple (W_1, ..., W_N); L = ||W_N...W_1 X - Y||_F^2 / (2n)."
        ),
        source=(
            "A. M. Saxe, J. L. McClelland and S. Ganguli, ICLR 2014; S. Arora, N. Cohen and "
            "E. Hazan, ICML 2018; S. Arora, N. Cohen, N. Golowich and W. Hu, ICLR 2019. Wang, "
            "Lin & Abernethy (ICML 2021) show HB's acceleration on this model."
        ),
        data={"X": X, "Y": Y, "Phi": Phi, "end_to_end": _end_to_end},
        data_loss=_deep_network_loss,
        loss_data=loss_data,
    )


# --- registry ------------------------------------------------------------------------------------

_REGISTRY: dict[str, Callable[[], Problem]] = {
    "ks-quadratic-5": functools.partial(_ks_quadratic, 5),
    "ks-quadratic-10": functools.partial(_ks_quadratic, 10),
    "ks-quadratic-20": functools.partial(_ks_quadratic, 20),
    "himmelblau-scaled": _himmelblau_scaled,
    "rosenbrock-soft": _rosenbrock_soft,
    "double-well": _double_well,
    "diagonal-linear-network": diagonal_linear_network,
    "deep-linear-network": deep_linear_network,
}

DEFAULT_PROBLEM: str = "himmelblau-scaled"
"""The built-in 2-D non-convex problem of an order study (see its description)."""


def problem_names() -> list[str]:
    """The names `get_problem` accepts, in a fixed order."""
    return list(_REGISTRY)


def get_problem(name: str) -> Problem:
    """The named test problem (with default sizes and seed for the networks).

    **Arguments:**

    - `name`: one of `problem_names()`.

    **Returns:** the `Problem`; the same object on every call, so its `loss` compiles once.

    **Raises:** `ValueError` listing the valid names if `name` is unknown.
    """
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"unknown problem {name!r}; valid names: {', '.join(_REGISTRY)}")
    return _build(name)


@functools.cache
def _build(name: str) -> Problem:
    return _REGISTRY[name]()
