r"""Continuous-time models of the discrete iterates (docs/theory.md#continuous-models).

Every model is an `AbstractContinuousModel`: an ODE in the time $t$ of the iterates,
$t_k = k\eta$, integrated piece by piece over $[k\eta, (k+1)\eta]$.  A model states

- `order(method, beta)`: its expected global order in $\eta$ against the iterates *from rest*
  on a fixed horizon, which the tests read;
- `coefficients(method, beta, num_pieces)`: the plain float64 data it needs on each piece
  (a table with one row per piece), computed once on the host and passed traced to the solver,
  so that a sweep over $\eta$ or $\beta$ does not recompile;
  for ``method="qhm"`` both also take the keyword `nu` (ν of docs/theory.md#library-momentum);
- `initial_state`, `vector_field`, `position`: the ODE itself, on flat vectors; $g = -\nabla L$
  is passed in as a function.

Every concrete model is final.  Names used on the command line are given by `model_from_name`:
``gf``, ``rgf``, ``ks2``, ``mgf``, ``steadyN``, ``shiftedN``, ``hbfN`` ($N \ge 1$).
"""

# No `from __future__ import annotations`: equinox reads AbstractVar/AbstractClassVar from the
# evaluated annotations, and a stringified one would silently become a dataclass field.
import abc
import re
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any, ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

if TYPE_CHECKING:  # equinox's advice: type checkers see a ClassVar, equinox its abstract marker
    from typing import ClassVar as AbstractClassVar
else:
    from equinox import AbstractClassVar

from . import _tables
from ._checks import parse_nu
from ._custom_types import FlatVector, PyTree, RealScalarLike
from ._differentials import combine_differentials
from ._trees import Tree, trees_up_to
from ._validate import check_beta, check_count, check_method, check_nu

__all__ = [
    "AbstractContinuousModel",
    "AbstractFirstOrderModel",
    "GradientFlow",
    "RescaledGradientFlow",
    "KovachkiStuartODE",
    "MomentumGradientFlow",
    "SteadyStateFlow",
    "HeavyBallFlow",
    "ShiftedSteadyStateFlow",
    "model_from_name",
]


def _checked(
    method: str, beta: RealScalarLike, nu: RealScalarLike | None = None
) -> tuple[str, float, float | None]:
    method = check_method(method)
    beta = check_beta(beta, method)
    return method, beta, check_nu(nu, method)


def _nu_kw(nu: RealScalarLike | None) -> dict:
    # ν only reaches the counter terms of the method that has it.
    return {} if nu is None else {"nu": nu}


def counter_terms(order: int, method: str, **kwargs) -> Any:
    """`hbflow.counter_terms`, imported when a table is computed: a process whose tables are all
    kept (`_tables`) needs neither the counter terms nor FLINT."""
    from ._counter_terms import counter_terms

    return counter_terms(order, method, **kwargs)


def _key(alpha: int, method: str, beta: float, nu: RealScalarLike | None) -> tuple:
    """What a table depends on besides hbflow's code, exactly: β as the rational value of its
    float64, ν as the counter terms read it."""
    return (int(alpha), method, Fraction(beta), None if nu is None else parse_nu(nu, method))


def _speed(method: str, beta: float, nu: float | None) -> float:
    r"""$b_\infty(\bullet)$, the speed of the leading field $-b_\infty(\bullet)\nabla L$:
    $1/(1-\beta)$ for HB and NAG, $(c_0-c_1)/(1-\beta)$ for the library rules (1 for QHM)."""
    if method == "qhm":
        return 1.0  # c0 - c1 = 1 - beta exactly
    return 1.0 / (1.0 - beta)  # nesterov: c0 - c1 = 1


def _forcing(method: str, beta: float, nu: float | None) -> float:
    r"""$c_0 - c_1$: the weight of $\nabla L$ in the second-order models (1 unless QHM)."""
    return 1.0 - beta if method == "qhm" else 1.0


def _empty_table(num_pieces: int) -> np.ndarray:
    return np.zeros((check_count(num_pieces, "num_pieces"), 0), dtype=np.float64)


class AbstractContinuousModel(eqx.Module):
    r"""A continuous-time model $\dot y = f_k(y)$ on $t \in [k\eta, (k+1)\eta]$ of the iterates.

    The state $y$ is the position $u$ (first-order models, see `AbstractFirstOrderModel`) or
    $(u, \dot u)$ (second-order models), always on flat vectors; $u(t_k)$ is compared with the
    iterate $u_k$.  Every method is abstract and every concrete model is final (equinox's
    abstract/final pattern): a model implements each method once, and no concrete method is
    overridden.
    """

    #: The model's name on the command line (``hbf3``, ``rgf``, …).
    name: AbstractClassVar[str]

    @abc.abstractmethod
    def order(self, method: str, beta: RealScalarLike, *, nu: RealScalarLike | None = None) -> int:
        r"""Expected global order $p$: $\max_{k\le T/\eta}\|u(t_k) - u_k\| = O(\eta^p)$ against
        the iterates from rest of `method` with momentum `beta` (and `nu` for ``"qhm"``), on a
        fixed horizon."""

    @abc.abstractmethod
    def coefficients(
        self,
        method: str,
        beta: RealScalarLike,
        num_pieces: int,
        *,
        nu: RealScalarLike | None = None,
    ) -> Float[np.ndarray, "k m"]:
        """Float64 table ``(num_pieces, m)``; row $k$ parametrises the field on piece $k$."""

    @abc.abstractmethod
    def initial_state(
        self,
        g: Callable,
        u0: FlatVector,
        eta: RealScalarLike | None = None,
        beta: RealScalarLike | None = None,
        row: Float[Array, " m"] | None = None,
    ) -> PyTree:
        """The state at $t = 0$ for the iterates' start $u_0$ (from rest); `eta`, `beta` and
        `row` (the first row of `coefficients`) are needed by a model whose start is shifted."""

    @abc.abstractmethod
    def vector_field(
        self,
        g: Callable,
        t: RealScalarLike,
        y: PyTree,
        eta: RealScalarLike,
        beta: RealScalarLike,
        row: Float[Array, " m"],
    ) -> PyTree:
        r"""$f_k(y)$ with `row` the `k`-th row of `coefficients`; `eta`, `beta` traced scalars."""

    @abc.abstractmethod
    def position(self, y: PyTree) -> FlatVector:
        """The position $u$ in the state $y$."""


class AbstractFirstOrderModel(AbstractContinuousModel):
    r"""A first-order model $\dot u = f_k(u)$: the state is the position itself."""

    def initial_state(self, g, u0, eta=None, beta=None, row=None) -> FlatVector:
        return u0

    def position(self, y: FlatVector) -> FlatVector:
        return y


class GradientFlow(AbstractFirstOrderModel):
    r"""Gradient flow $\dot u = -\nabla L(u)$.

    The $\beta = 0$, order-1 model: gradient descent is its explicit Euler method, so its global
    error against gradient-descent iterates is $O(\eta)$.  Against momentum iterates it is not
    consistent (it runs at the wrong speed, $1$ instead of $1/(1-\beta)$): order 0.  QHM
    runs at speed $b_\infty(\bullet) = 1$ for every β and ν (docs/theory.md#library-momentum),
    so gradient flow is its rescaled gradient flow: order 1.
    """

    name: ClassVar[str] = "gf"

    def order(self, method: str, beta: RealScalarLike, *, nu: RealScalarLike | None = None) -> int:
        method, beta, nu = _checked(method, beta, nu)
        return 1 if beta == 0 or method == "qhm" else 0

    def coefficients(self, method, beta, num_pieces, *, nu=None):
        _checked(method, beta, nu)
        return _empty_table(num_pieces)

    def vector_field(self, g, t, y, eta, beta, row):
        return g(y)


class RescaledGradientFlow(AbstractFirstOrderModel):
    r"""Rescaled gradient flow $\dot u = -\nabla L(u)/(1-\beta)$.

    The first result of Kovachki & Stuart (2021, reference under `KovachkiStuartODE`): heavy ball
    (and Nesterov) iterates follow it with $O(\eta)$ global error.  It is memoryless, so started
    at $u_0$ it misses the transient of the iterates from rest; its order stays 1.  For the
    library rules of docs/theory.md#library-momentum the speed is
    $b_\infty(\bullet) = (c_0-c_1)/(1-\beta)$: $1/(1-\beta)$ for Nesterov momentum, $1$ for QHM
    (whose flow is then gradient flow); the coefficient table holds that speed.
    """

    name: ClassVar[str] = "rgf"

    def order(self, method: str, beta: RealScalarLike, *, nu: RealScalarLike | None = None) -> int:
        _checked(method, beta, nu)
        return 1

    def coefficients(self, method, beta, num_pieces, *, nu=None):
        method, beta, nu = _checked(method, beta, nu)
        num_pieces = check_count(num_pieces, "num_pieces")
        return np.full((num_pieces, 1), _speed(method, beta, nu), dtype=np.float64)

    def vector_field(self, g, t, y, eta, beta, row):
        return g(y) * row[0]


def _kovachki_stuart_mass(method: str, beta: float, nu: float | None = None) -> float:
    r"""$\alpha_m$: $(1+\beta)/2$ for HB, $(1-\beta+2\beta^2)/2$ for NAG, and for the library
    rules $\alpha_m = (1-\beta)/2 + 1 - c_0(1-\beta)/(c_0-c_1)$ (docs/theory.md#library-momentum):
    $(1-\beta+2\beta^2)/2$ for Nesterov momentum, $(1-\beta+2\nu\beta)/2$ for QHM."""
    if method in ("nag", "nesterov"):
        return (1 - beta + 2 * beta**2) / 2
    if method == "qhm":
        if nu is None:
            raise ValueError("method 'qhm' needs nu")
        return (1 - beta + 2 * nu * beta) / 2
    return (1 + beta) / 2  # hb; gd is beta = 0 for both formulas


class _AbstractSecondOrder(AbstractContinuousModel):
    r"""$\eta\,\mu\,\ddot u + (1-\beta)\dot u + c\,\nabla L(u) = 0$ from rest, with the mass
    factor $\mu$ and the weight $c = c_0 - c_1$ of the gradient (1 except for QHM, where it is
    $1-\beta$) in the coefficient table; state $(u, \dot u)$."""

    def initial_state(self, g, u0, eta=None, beta=None, row=None):
        return (u0, jnp.zeros_like(u0))

    def vector_field(self, g, t, y, eta, beta, row):
        u, v = y
        return (v, (row[1] * g(u) - (1 - beta) * v) / (eta * row[0]))

    def position(self, y):
        return y[0]

    def order(self, method: str, beta: RealScalarLike, *, nu: RealScalarLike | None = None) -> int:
        _checked(method, beta, nu)
        return 1


class KovachkiStuartODE(_AbstractSecondOrder):
    r"""The second-order ODE of Kovachki & Stuart (2021), in the time $t = k\eta$:

    $$\eta\,\alpha_m\,\ddot u + (1-\beta)\,\dot u + \nabla L(u) = 0,\qquad
    \alpha_m = \tfrac{1+\beta}{2}\ (\text{HB}),\quad \tfrac{1-\beta+2\beta^2}{2}\ (\text{NAG}).$$

    Initial velocity $\dot u(0) = 0$.  The iterates start from rest ($u_{-1} = u_0$), and the ODE's
    fast mode, $e^{-(1-\beta)t/(\eta\alpha_m)}$, is its image of the discrete transient
    $\beta^k$: starting the ODE at rest lets it carry (approximately) the same transient.  Starting
    it on its slow manifold, $\dot u(0) = -\nabla L(u_0)/(1-\beta)$, would drop the transient and
    make an $O(\eta)$ error with a large constant.  Since the two decay rates per step,
    $e^{-(1-\beta)/\alpha_m}$ and $\beta$, differ, the transient is only imitated and the global
    order against iterates from rest is 1; the slow manifold of the ODE is correct to $O(\eta)$
    (it reproduces the first counter term of the steady-state flow, which a different mass would
    not), so the $O(\eta)$ constant is small, of the order of the rate mismatch times the
    transient.  For $\beta = 0$ it is the second-order modified equation of gradient descent, with
    order 1 as well (its next term is missing).

    For the library rules (docs/theory.md#library-momentum) the same requirement fixes the mass:
    $\eta\alpha_m\ddot u + (1-\beta)\dot u + (c_0-c_1)\nabla L = 0$ with
    $\alpha_m = (1-\beta)/2 + 1 - c_0(1-\beta)/(c_0-c_1)$, i.e. $(1-\beta+2\beta^2)/2$ for
    Nesterov momentum (NAG's mass: the look-ahead sequence has the same slow manifold to this
    order) and $(1-\beta+2\nu\beta)/2$ for QHM, whose gradient weight is $c_0-c_1 = 1-\beta$.

    ```bibtex
    @article{kovachki2021continuous,
      author  = {Kovachki, Nikola B. and Stuart, Andrew M.},
      title   = {Continuous Time Analysis of Momentum Methods},
      journal = {Journal of Machine Learning Research},
      volume  = {22}, number = {17}, pages = {1--40}, year = {2021}
    }
    ```
    """

    name: ClassVar[str] = "ks2"

    def coefficients(self, method, beta, num_pieces, *, nu=None):
        method, beta, nu = _checked(method, beta, nu)
        num_pieces = check_count(num_pieces, "num_pieces")
        row = [_kovachki_stuart_mass(method, beta, nu), _forcing(method, beta, nu)]
        return np.tile(np.array(row, dtype=np.float64), (num_pieces, 1))


class MomentumGradientFlow(_AbstractSecondOrder):
    r"""Momentum gradient flow in the scaling of Papazov, Pesme & Flammarion (2024):

    $$\lambda\,x''(s) + x'(s) + \nabla L(x(s)) = 0,\qquad s = \frac{k\eta}{1-\beta},\quad
    \lambda = \frac{\eta}{(1-\beta)^2},$$

    which depends on $\eta$ and $\beta$ through $\lambda$ alone.  In the iterates' time
    $t = k\eta = (1-\beta)s$ it reads $\eta\,\ddot u + (1-\beta)\,\dot u + \nabla L(u) = 0$,
    which is integrated here.  The Kovachki–Stuart ODE in the time $s$ is
    $\lambda\,\alpha_m\,x'' + x' + \nabla L = 0$: the same equation with mass $\lambda\alpha_m$,
    $\alpha_m = (1+\beta)/2$ for HB, instead of $\lambda$.  The two agree as $\beta \to 1$; for
    $\beta < 1$ the mass $\lambda$ misplaces the slow manifold at $O(\eta)$ (the steady-state
    first counter term needs $\lambda(1+\beta)/2$), so this model also has order 1 against the
    iterates from rest, with a larger constant than `KovachkiStuartODE`.  Initial velocity 0
    (from rest), as in the paper.  The paper treats momentum gradient descent; for the library
    rules (docs/theory.md#library-momentum) the gradient gets the weight $c_0 - c_1$ of their
    leading field, $\eta\ddot u + (1-\beta)\dot u + (c_0-c_1)\nabla L = 0$: for QHM at
    $\nu = 1$, heavy ball with step $\eta(1-\beta)$, this is the paper's flow of that heavy ball.

    ```bibtex
    @inproceedings{papazov2024leveraging,
      author    = {Papazov, Hristo and Pesme, Scott and Flammarion, Nicolas},
      title     = {Leveraging Continuous Time to Understand Momentum When Training Diagonal
                   Linear Networks},
      booktitle = {AISTATS}, year = {2024}
    }
    ```
    """

    name: ClassVar[str] = "mgf"

    def coefficients(self, method, beta, num_pieces, *, nu=None):
        method, beta, nu = _checked(method, beta, nu)
        row = [1.0, _forcing(method, beta, nu)]
        return np.tile(np.array(row, dtype=np.float64), (check_count(num_pieces, "num_pieces"), 1))


class _AbstractBSeriesFlow(AbstractFirstOrderModel):
    r"""$f(u) = \sum_{|\tau|\le\alpha} \eta^{|\tau|-1}\, c(\tau)/\sigma(\tau)\, F(\tau)(u)$ with the
    characters $c$ in the rows of the coefficient table."""

    alpha: eqx.AbstractVar[int]
    prefix: AbstractClassVar[str]

    def __check_init__(self):
        check_count(self.alpha, "alpha")

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{self.prefix}{self.alpha}"

    @property
    def trees(self) -> tuple[Tree, ...]:
        return trees_up_to(int(self.alpha))

    def vector_field(self, g, t, y, eta, beta, row):
        trees = self.trees
        powers = np.array([t.order - 1 for t in trees], dtype=np.float64)
        sigmas = np.array([t.sigma for t in trees], dtype=np.float64)
        weights = jnp.power(eta, powers) * row / sigmas
        return combine_differentials(g, trees, weights, y)


def _check_table(table: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    table = np.asarray(table, dtype=np.float64)
    if table.shape != shape:
        raise ValueError(f"{what}: expected a table of shape {shape}, got {table.shape}")
    if not np.all(np.isfinite(table)):
        raise ValueError(f"{what}: the coefficient table has non-finite entries")
    return table


class SteadyStateFlow(_AbstractBSeriesFlow):
    r"""The steady-state (memoryless) modified flow of order $\alpha$,

    $$\dot u = \sum_{|\tau|\le\alpha}
        \eta^{|\tau|-1}\frac{b_\infty(\tau)}{\sigma(\tau)}F(\tau)(u),$$

    with $b_\infty = \lim_{k\to\infty} b_k$ the modified field of the method on its attractive
    invariant manifold.  At first order, $\dot u = -\nabla\tilde L/(1-\beta)$ with
    $\tilde L = L + \eta(1+\beta)/(4(1-\beta)^2)\|\nabla L\|^2$ (Ghosh et al. 2023; Cattaneo &
    Shigida 2025 give the low orders).  Started at $u_0$ it misses the transient of the iterates
    from rest, so its global order against them is 1 whatever $\alpha$
    (docs/theory.md#shifted-start); for gradient
    descent ($\beta = 0$) there is no transient and the order is $\alpha$.

    ```bibtex
    @inproceedings{ghosh2023implicit,
      author    = {Ghosh, Avrajit and Lyu, He and Zhang, Xitong and Wang, Rongrong},
      title     = {Implicit Regularization in Heavy-ball Momentum Accelerated Stochastic
                   Gradient Descent},
      booktitle = {ICLR}, year = {2023}
    }
    ```
    """

    alpha: int
    prefix: ClassVar[str] = "steady"

    def order(self, method: str, beta: RealScalarLike, *, nu: RealScalarLike | None = None) -> int:
        method, beta, nu = _checked(method, beta, nu)
        # QHM at nu = 0 is gradient descent for every beta: no transient either.
        return int(self.alpha) if beta == 0 or (method == "qhm" and nu == 0) else 1

    def coefficients(self, method, beta, num_pieces, *, nu=None):
        method, beta, _ = _checked(method, beta, nu)
        num_pieces = check_count(num_pieces, "num_pieces")

        def compute():
            ct = counter_terms(int(self.alpha), method, **_nu_kw(nu))  # nu as given: exact
            return ct.steady_state_values(beta)

        shape = (len(self.trees),)
        values = _tables.kept("steady", _key(self.alpha, method, beta, nu), shape, compute)
        values = _check_table(values, shape, f"{self.name} steady-state values")
        return np.broadcast_to(values, (num_pieces, len(values))).copy()


class HeavyBallFlow(_AbstractBSeriesFlow):
    r"""The heavy-ball flow (HBF) of order $\alpha$: on $t \in [k\eta, (k+1)\eta]$,

    $$\dot u = f_k(u) = \sum_{|\tau|\le\alpha}
        \eta^{|\tau|-1}\frac{b_k(\tau)}{\sigma(\tau)}F(\tau)(u),$$

    with $b_k = \log(a_k^{-1}\cdot a_{k+1})$ the modified field of the $k$-th one-step map of the
    iterates from rest (docs/theory.md#heavy-ball-flow), evaluated at the actual $\beta$ and $k$
    on each piece.
    The field changes at every grid time; $u$ is continuous.  Global order $\alpha$ against the
    iterates from rest on a fixed horizon, for $\eta$ small against $(1-\beta)^2/\|\nabla^2L\|$.
    The same construction serves Nesterov's method, the library rules of
    docs/theory.md#library-momentum and gradient descent (for which $b_k$ is the modified
    equation of explicit Euler, Miyagawa 2022).

    ```bibtex
    @inproceedings{lyu2025heavyball,
      author    = {Lyu, Bochen and others},
      title     = {Heavy-Ball Momentum Method in Continuous Time and Discretization Error
                   Analysis},
      booktitle = {NeurIPS}, year = {2025}, note = {arXiv:2506.14806}
    }
    @inproceedings{miyagawa2022toward,
      author    = {Miyagawa, Taiki},
      title     = {Toward Equation of Motion for Deep Neural Networks: Continuous-time Gradient
                   Descent and Discretization Error Analysis},
      booktitle = {NeurIPS}, year = {2022}
    }
    ```
    """

    alpha: int
    prefix: ClassVar[str] = "hbf"

    def order(self, method: str, beta: RealScalarLike, *, nu: RealScalarLike | None = None) -> int:
        _checked(method, beta, nu)
        return int(self.alpha)

    def coefficients(self, method, beta, num_pieces, *, nu=None):
        method, beta, _ = _checked(method, beta, nu)
        num_pieces = check_count(num_pieces, "num_pieces")

        def compute():
            ct = counter_terms(int(self.alpha), method, **_nu_kw(nu))  # nu as given: exact
            return ct.coefficient_table(beta, num_pieces)

        shape = (num_pieces, len(self.trees))
        key = (*_key(self.alpha, method, beta, nu), num_pieces)
        table = _tables.kept("hbf", key, shape, compute)
        return _check_table(table, shape, f"{self.name} b_k table")


class ShiftedSteadyStateFlow(AbstractContinuousModel):
    r"""The steady-state flow of order $\alpha$ started at the exact shifted point
    $u_0' = B(\psi_\alpha, u_0)$,

    $$u(0) = u_0 + \sum_{|\tau|\le\alpha}\frac{\eta^{|\tau|}}{\sigma(\tau)}\psi(\tau)
        F(\tau)(u_0),\qquad
      \dot u = \sum_{|\tau|\le\alpha}\eta^{|\tau|-1}\frac{b_\infty(\tau)}{\sigma(\tau)}F(\tau)(u),$$

    with $\psi = \lim_k a_k\cdot\exp(-k\,b_\infty)$ (`hbflow.shifted_start`), the elementary
    differentials taken at $u_0$.  Its order is $\alpha$ *outside the initial layer*: the error
    against the iterates from rest is $O(\eta^\alpha)$ on $[t_0, T]$ for a fixed $t_0 > 0$
    (measure it with ``compare(..., after=t0)``), and $O(\eta)$ over the first
    $\approx\log(1/\eta)/\log(1/\beta)$ steps, where the transient $O(k^m\beta^k)$ of the
    iterates lives (docs/theory.md#initial-layer).  For gradient descent $\psi = 0$ and it is the
    steady-state flow, of order $\alpha$ from $t = 0$.

    The coefficient table holds $b_\infty$ in its first $m$ columns and $\psi$ in the next $m$.
    """

    alpha: int

    def __check_init__(self):
        check_count(self.alpha, "alpha")

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"shifted{self.alpha}"

    @property
    def trees(self) -> tuple[Tree, ...]:
        return trees_up_to(int(self.alpha))

    def order(self, method: str, beta: RealScalarLike, *, nu: RealScalarLike | None = None) -> int:
        from ._shift import check_shift_method

        method, _, _ = _checked(method, beta, nu)
        check_shift_method(method)
        return int(self.alpha)

    def coefficients(self, method, beta, num_pieces, *, nu=None):
        from ._shift import shifted_start

        method, beta, _ = _checked(method, beta, nu)
        num_pieces = check_count(num_pieces, "num_pieces")
        m = len(self.trees)

        def compute():
            # shifted_start first: it names the methods it is derived for (qhm's needs nu).
            psi = shifted_start(int(self.alpha), method).values(beta)
            steady = counter_terms(int(self.alpha), method).steady_state_values(beta)
            return np.concatenate([steady, psi])

        values = _tables.kept("shifted", _key(self.alpha, method, beta, None), (2 * m,), compute)
        values = _check_table(values, (2 * m,), f"shifted{self.alpha} coefficients")
        return np.broadcast_to(values, (num_pieces, 2 * m)).copy()

    def initial_state(self, g, u0, eta=None, beta=None, row=None):
        if eta is None or row is None:
            raise ValueError(
                f"shifted{self.alpha}: the shifted start needs eta and the first row of the "
                "coefficient table (initial_state(g, u0, eta, beta, row))"
            )
        trees = self.trees
        powers = np.array([t.order for t in trees], dtype=np.float64)
        sigmas = np.array([t.sigma for t in trees], dtype=np.float64)
        weights = jnp.asarray(eta**powers * row[len(trees) :] / sigmas)
        return u0 + combine_differentials(g, trees, weights, u0)

    def vector_field(self, g, t, y, eta, beta, row):
        trees = self.trees
        powers = np.array([t.order - 1 for t in trees], dtype=np.float64)
        sigmas = np.array([t.sigma for t in trees], dtype=np.float64)
        weights = jnp.asarray(eta**powers * row[: len(trees)] / sigmas)
        return combine_differentials(g, trees, weights, y)

    def position(self, y):
        return y


_FIXED = {
    "gf": GradientFlow,
    "rgf": RescaledGradientFlow,
    "ks2": KovachkiStuartODE,
    "mgf": MomentumGradientFlow,
}


def model_from_name(name: str) -> AbstractContinuousModel:
    """The model called `name`: ``gf``, ``rgf``, ``ks2``, ``mgf``, ``hbfN``, ``steadyN``,
    ``shiftedN`` ($N\\ge1$).

    **Raises:** `ValueError` listing the valid names if `name` is unknown.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key in _FIXED:
        return _FIXED[key]()
    match = re.fullmatch(r"(hbf|steady|shifted)(\d+)", key) if isinstance(key, str) else None
    if match and int(match.group(2)) >= 1:
        cls = {"hbf": HeavyBallFlow, "steady": SteadyStateFlow, "shifted": ShiftedSteadyStateFlow}
        return cls[match.group(1)](int(match.group(2)))
    raise ValueError(
        f"unknown model {name!r}; valid models are hbfN and steadyN (N >= 1, e.g. hbf2, "
        f"steady3), shiftedN (N >= 1, the steady-state flow from the shifted start), "
        f"{', '.join(_FIXED)}"
    )


def series_table(
    model: AbstractContinuousModel,
    method: str,
    beta: float,
    num_pieces: int,
    *,
    nu: float | None = None,
) -> np.ndarray:
    """`model.coefficients`, and for ``gf`` its field as the one-tree B-series (``rgf``'s
    table is already its speed on the one tree)."""
    if isinstance(model, GradientFlow):
        return np.ones((num_pieces, 1))
    return model.coefficients(method, beta, num_pieces, **({} if nu is None else {"nu": nu}))


def shared_solves(
    models: Sequence[AbstractContinuousModel],
) -> list[tuple[AbstractContinuousModel, list[AbstractContinuousModel]]]:
    r"""The models that can share one compiled solve, each group with the model that solves it.

    Every first-order model that is a B-series field (``hbfN``, ``steadyN``, and ``gf``,
    ``rgf`` with the one-tree tables of `series_table`) runs with the
    field of the highest order among them and its own table padded by zero columns (trees are
    ordered by order, so a lower order's trees are a prefix): one compilation for all of them,
    and the same numbers, since a zero weight adds an exact zero.  Every other model is solved
    on its own.
    """
    series: list[AbstractContinuousModel] = [m for m in models if isinstance(m, _SERIES)]
    groups: list[tuple[AbstractContinuousModel, list[AbstractContinuousModel]]] = []
    if series:
        alpha = max(int(getattr(m, "alpha", 1)) for m in series)
        groups.append((HeavyBallFlow(alpha), series))
    groups += [(m, [m]) for m in models if not isinstance(m, _SERIES)]
    return groups


_SERIES = (_AbstractBSeriesFlow, GradientFlow, RescaledGradientFlow)


def as_models(
    models: Any, *, empty: str = "models must name at least one model"
) -> list[AbstractContinuousModel]:
    """`models` (a name, a model, or a sequence of them) as a list of distinct models.

    **Raises:** `ValueError` for an empty list, something that is not a model, or a model
    named twice.
    """
    if isinstance(models, (str, AbstractContinuousModel)):
        models = [models]
    out = [model_from_name(m) if isinstance(m, str) else m for m in models]
    if not out:
        raise ValueError(empty)
    for m in out:
        if not isinstance(m, AbstractContinuousModel):
            raise ValueError(f"models: {m!r} is neither a model name nor a continuous model")
    names = [m.name for m in out]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"models: {sorted(dup)} requested more than once")
    return out
