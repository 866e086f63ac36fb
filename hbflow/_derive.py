r"""Counter terms of the heavy-ball flow: exact derivation (docs/theory.md#iterates-as-b-series).

For the family $u_{k+1} = u_k + \beta(u_k - u_{k-1}) - \eta\nabla L(u_k + a(u_k - u_{k-1}))$
(HB: $a=0$; NAG: $a=\beta$; GD: $\beta=0$) started from rest, the iterates are B-series
$u_k = B(a_k, u_0)$ with

$$e_k = (1+a)a_k - a\,a_{k-1},\qquad a_{k+1} = (1+\beta)a_k - \beta a_{k-1} + D(e_k),$$

$a_{-1} = a_0 = $ identity.  The library rules of docs/theory.md#library-momentum
(``nesterov``, ``qhm``), $u_{k+1} = u_k + \beta(u_k - u_{k-1}) - \eta[c_0\nabla L(u_k) -
c_1\nabla L(u_{k-1})]$ with the $c_1$ term absent at $k = 0$, have instead

$$a_1 = a_0 + c_0 D(a_0),\qquad
a_{k+1} = (1+\beta)a_k - \beta a_{k-1} + c_0 D(a_k) - c_1 D(a_{k-1})\quad (k \ge 1).$$

The one-step map of piece $k$ has character
$m_k = a_k^{-1}\cdot a_{k+1}$ and its modified field $b_k = \log m_k$ gives the heavy-ball flow

$$\dot u = f_k(u) = \sum_\tau \eta^{|\tau|-1} \frac{b_k(\tau)}{\sigma(\tau)} F(\tau)(u),
\qquad F(\bullet) = -\nabla L,\quad t\in[k\eta,(k+1)\eta].$$

Two constructions are provided (they share the Butcher-group algebra of `_bseries`; the
closed form is also checked without it, by a scalar Taylor oracle in the tests):

- `coefficients_at`: run the recurrence for a given integer $k$ with coefficients in
  $\mathbb{Q}(\beta)$ (or $\mathbb{Q}$ for a given rational β);
- `derive`: solve the recurrences in closed form, as exponential polynomials
  $\sum_{j,m} c_{j,m}(\beta)\,k^m\beta^{jk}$ in a symbolic $k$; the $j=0$ part is the steady state.

All arithmetic is exact.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import TYPE_CHECKING, cast

from ._bseries import Character, compose, inverse, log
from ._checks import (
    METHODS,
    check_count,
    check_method,
    check_order,
    parse_beta,
    parse_nu,
)
from ._exppoly import ExpPoly, ExpPolyRing, QBeta, beta_symbol
from ._trees import Tree, trees_up_to

__all__ = [
    "METHODS",
    "coefficients_at",
    "coefficients_up_to",
    "closed_form_characters",
    "parse_beta",
    "check_order",
]

if TYPE_CHECKING:
    import sympy


def k_symbol() -> sympy.Symbol:
    """The symbol k of the closed forms as sympy expressions (sympy imported on first use)."""
    import sympy

    return sympy.Symbol("k")


def __getattr__(name: str):
    # ``K``, the symbol k, without importing sympy with this module (see `hbflow._exppoly`).
    if name == "K":
        return k_symbol()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# The library rules u_{k+1} = u_k + beta (u_k - u_{k-1}) - eta [c0 grad_k - c1 grad_{k-1}].
_TWO_GRADIENT = ("nesterov", "qhm")


def _lookahead(method: str, beta):
    return beta if method == "nag" else beta * 0


def method_coefficients(method: str, beta, nu=None):
    r"""$(c_0, c_1)$ of the library rules (docs/theory.md#library-momentum), in the type of `beta`.

    $u_{k+1} = u_k + \beta(u_k - u_{k-1}) - \eta[c_0\nabla L(u_k) - c_1\nabla L(u_{k-1})]$:
    ``nesterov`` has $c_0 = 1+\beta$, $c_1 = \beta$; ``qhm`` has $c_0 = 1-\nu\beta$,
    $c_1 = \beta(1-\nu)$; ``hb`` and ``gd`` are $c_0 = 1$, $c_1 = 0$.  ``nag`` is not of this
    form (its gradient is taken at a look-ahead point).

    **Raises:** `ValueError` for ``nag`` or an unknown method.
    """
    # Here, in a module of the derivation version, so that changing a coefficient changes it.
    if method == "nesterov":
        return 1 + beta, beta
    if method == "qhm":
        if nu is None:
            raise ValueError("method 'qhm' needs nu")
        return 1 - nu * beta, beta * (1 - nu)
    if method in ("hb", "gd"):
        return 1 + 0 * beta, 0 * beta
    raise ValueError(f"method {method!r} has no coefficients (c0, c1)")


def _lincomb(terms, empty: int, one) -> Character:
    order = min(c.order for _, c in terms)
    values = {}
    for tree in trees_up_to(order):
        acc = one - one
        for scale, char in terms:
            acc = acc + scale * char[tree]
        values[tree] = acc
    return Character(values, order, empty, one)


def _D(c: Character) -> Character:
    r"""$D(c)(\bullet) = 1$, $D(c)([\tau_1,\dots,\tau_m]) = \prod_i c(\tau_i)$.

    With $c(\emptyset) = 1$, $\eta\, g(B(c,u)) = B(D(c),u)$."""
    one = c.one

    def value(tree: Tree):
        out = one
        for child in tree.children:
            out = out * c[child]
        return out

    return Character.from_function(value, c.order, 0, one)


def _field_and_beta(method: str, beta: Fraction | None):
    # sympy's rationals and rational functions: the second construction (per k) shares no
    # arithmetic with the closed form's FLINT (docs/theory.md#iterates-as-b-series).
    from sympy.polys.domains import QQ

    if method == "gd" or beta == 0:
        return QQ, QQ.zero
    if beta is None:
        field = QQ.frac_field(beta_symbol())
        return field, field.convert(beta_symbol())
    return QQ, QQ(beta.numerator, beta.denominator)


def _iterate_characters(
    order: int, method: str, beta: Fraction | None, k_max: int, nu: Fraction | None = None
):
    r"""Yield $(k, a_k, a_{k+1})$ for $k = 0, \dots,$ `k_max` by the recurrence of the iterates
    (docs/theory.md#iterates-as-b-series, docs/theory.md#library-momentum)."""
    field, b = _field_and_beta(method, beta)
    one = field.one
    prev = cur = Character.identity(order, one)
    if method in _TWO_GRADIENT:
        nu_value = (
            None if nu is None else field.convert(nu.numerator) / field.convert(nu.denominator)
        )
        c0, c1 = method_coefficients(method, b, nu_value)
        for k in range(k_max + 1):
            terms = [((1 + b) * one, cur), (-b * one, prev), (c0 * one, _D(cur))]
            if k >= 1:  # the buffer starts at zero: no c1 term on the first step
                terms.append((-c1 * one, _D(prev)))
            nxt = _lincomb(terms, 1, one)
            yield k, cur, nxt
            prev, cur = cur, nxt
        return
    a = _lookahead(method, b)
    for k in range(k_max + 1):
        e = _lincomb([((1 + a) * one, cur), (-a * one, prev)], 1, one)
        nxt = _lincomb([((1 + b) * one, cur), (-b * one, prev), (one, _D(e))], 1, one)
        yield k, cur, nxt
        prev, cur = cur, nxt


def coefficients_at(
    order: int, k: int, *, method: str = "hb", beta=None, nu=None, as_sympy: bool = True
) -> dict[Tree, sympy.Expr]:
    r"""$b_k(\tau)$ for one integer $k$, by running the recurrence (no closed form involved).

    **Arguments:**

    - `order`: keep the trees with $|\tau| \le$ `order`.
    - `k`: the piece, an integer $\ge 0$.
    - `method`: ``"hb"``, ``"nag"``, ``"gd"``, ``"nesterov"`` or ``"qhm"``.
    - `beta`: ``None`` for rational functions of the symbol ``beta``; or a rational value.
    - `nu`: ν of ``"qhm"`` (only there), a rational value in $[0, 1]$, read as `beta` is.

    - `as_sympy`: return factored sympy expressions (default) or `RationalFunction`s, whose
      canonical form makes exact comparison cheap.

    **Returns:** a dict from tree to an exact value.
    """
    check_count(k, "k", minimum=0)
    return coefficients_up_to(order, k, method=method, beta=beta, nu=nu, as_sympy=as_sympy)[k]


def coefficients_up_to(
    order: int, k_max: int, *, method: str = "hb", beta=None, nu=None, as_sympy: bool = True
) -> list[dict[Tree, sympy.Expr]]:
    r"""$[b_0, \dots, b_{k_{\max}}]$ by one run of the recurrence; see `coefficients_at`."""
    check_order(order)
    check_method(method)
    check_count(k_max, "k_max", minimum=0)
    value = parse_beta(beta)
    nu_value = parse_nu(nu, method)
    field = _field_and_beta(method, value)[0]
    out = []
    for _, ak, ak1 in _iterate_characters(order, method, value, k_max, nu_value):
        b = log(compose(inverse(ak), ak1))
        if as_sympy:
            import sympy

            out.append({tree: sympy.factor(field.to_sympy(c)) for tree, c in b.items()})
        else:
            out.append({tree: RationalFunction.from_frac(c) for tree, c in b.items()})
    return out


def closed_form_characters(
    order: int, method: str, report=None, *, nu=None, workers: int | None = None
) -> dict[Tree, dict[int, dict[int, QBeta]]]:
    r"""$b_k$ in closed form: for each tree, ``{(j, m): c_{j,m}}`` with
    $b_k(\tau) = \sum c_{j,m}(\beta)\,k^m \beta^{jk}$, $c_{j,m} \in \mathbb{Q}(\beta)$.

    $b_k = \log(a_k^{-1}\cdot a_{k+1})$ with $a_k$ from `closed_form_iterates`; `nu` is ν of
    ``"qhm"`` (a rational, required there and refused elsewhere).

    `report`, if given, is called with a short description of each stage as it starts.

    `workers`: processes to share the trees of the top order among (each worker derives the
    lower orders itself, then its share: the values of one tree depend only on smaller
    trees); ``None`` for the default of `hbflow._parallel.derive_workers` (one below order 9,
    else one per core).
    The result does not depend on it.
    """
    check_order(order)
    check_method(method)
    if method == "gd":
        raise ValueError("gd has no k-dependence; use coefficients_at(order, 0, method='gd')")
    nu_value = parse_nu(nu, method)
    top = [t for t in trees_up_to(order) if t.order == order]
    from ._parallel import derive_workers, start_worker

    shares = _shares(top, derive_workers(order, workers))
    if len(shares) == 1:
        return _closed_form_part(order, method, nu_value, top, report, lower=True)

    running = []
    try:
        for share in shares[1:]:
            running.append(start_worker((order, method, nu_value, share)))
        out = _closed_form_part(order, method, nu_value, shares[0], report, lower=True)
        if report is not None:
            report(f"the other {len(running)} share(s) of order {order}, in worker processes")
        for job in running:
            for seq, parts in job.result().items():
                out[Tree.from_level_sequence(seq)] = {
                    j: {m: _qbeta_of(num, den) for m, (num, den) in by_m.items()}
                    for j, by_m in parts.items()
                }
    except BaseException:
        for job in running:
            job.cancel()
        raise
    return {tree: out[tree] for tree in trees_up_to(order)}


def _shares(top: list[Tree], workers: int) -> list[list[Tree]]:
    """Split the trees of the top order into at most `workers` shares of similar cost: the
    largest first (by their number of root cuts), each to the share with the fewest cuts."""
    from ._bseries import root_cuts

    workers = max(1, min(workers, len(top)))
    shares: list[list[Tree]] = [[] for _ in range(workers)]
    load = [0] * workers
    for tree in sorted(top, key=lambda t: (-len(root_cuts(t)), t)):
        i = load.index(min(load))
        shares[i].append(tree)
        load[i] += len(root_cuts(tree)) + 1
    return [sorted(share) for share in shares if share]


def _qbeta_of(num: tuple[int, ...], den: tuple[int, ...]) -> QBeta:
    from flint import fmpz_poly

    return QBeta(fmpz_poly(list(num)), fmpz_poly(list(den)), reduced=True)


def _closed_form_part(
    order: int, method: str, nu, top: list[Tree], report=None, *, lower: bool
) -> dict[Tree, dict[int, dict[int, QBeta]]]:
    """`closed_form_characters` on the trees `top` of the top order (and on every smaller tree
    if `lower`), deriving every smaller tree on the way."""
    from ._bseries import compose_at, flow_at, inverse_at
    from ._qfactored import FExpPoly, FExpPolyRing

    ring = FExpPolyRing()
    trees = [t for t in trees_up_to(order) if t.order < order] + list(top)
    # FExpPolyRing has the interface of ExpPolyRing that the recurrences use.
    ak: dict[Tree, FExpPoly] = _iterate_values(cast(ExpPolyRing, ring), trees, method, nu, report)
    if report is not None:
        report("the one-step map a_k^-1 · a_(k+1)")
    inv: dict[Tree, FExpPoly] = {}
    step: dict[Tree, FExpPoly] = {}
    shifted: dict[Tree, FExpPoly] = {}
    for tree in trees:
        shifted[tree] = ring.shift(ak[tree], 1)
        inv[tree] = inverse_at(inv, ak, tree, ring.one)
        # Cancelling the factors common to numerator and denominator here shortens the
        # numerators of the logarithm by about a quarter.
        step[tree] = compose_at(inv, shifted, 1, tree, ring.one).reduced()
    if report is not None:
        report("its logarithm b_k")
    cs: dict[Tree, list] = {}
    field: dict[Tree, FExpPoly] = {}
    for tree in trees:
        flow_at(tree, cs, field, None, step[tree], ring.one)
    return {tree: ring.by_exponent(field[tree]) for tree in (trees if lower else top)}


def _worker_task(task) -> dict:
    """One worker's share (see `hbflow._parallel`): ``(order, method, nu, trees)`` in, the
    coefficients of those trees as plain integer tuples out."""
    order, method, nu, share = task
    values = _closed_form_part(order, method, nu, list(share), lower=False)
    return {
        tree.level_sequence: {
            j: {m: tuple(tuple(half) for half in c.coefficients()) for m, c in by_m.items()}
            for j, by_m in parts.items()
        }
        for tree, parts in values.items()
    }


def closed_form_iterates(
    E: ExpPolyRing, order: int, method: str, *, nu=None, report=None
) -> Character:
    r"""The characters $a_k$ of the iterates from rest as exponential polynomials in $k$.

    The recurrence for $a_k(\tau)$ is forced by $D(e_k)(\tau) = \prod_i e_k(\tau_i)$ (HB, NAG)
    or by $c_0 D(a_k)(\tau) - c_1 D(a_{k-1})(\tau)$ (the library rules of
    docs/theory.md#library-momentum); both involve only smaller trees, so the trees are solved
    in order of size.  Initial values are fitted at $k = 0, 1$ and the forcing is used for
    $k \ge 1$ only: the closed form of $a_{k-1}$ need not equal $a_{-1} = a_0$ at $k = 0$ (NAG),
    and the library rules have no $c_1$ term on their first step, $a_1 = a_0 + c_0 D(a_0)$,
    which is the initial value $a_1(\bullet) = c_0$.
    """
    check_order(order)
    check_method(method)
    ak = _iterate_values(E, trees_up_to(order), method, parse_nu(nu, method), report)
    return Character(ak, order, 1, E.one)


def _iterate_values(E: ExpPolyRing, trees, method: str, nu_value, report=None) -> dict:
    """`closed_form_iterates` on `trees` (each listed after its subtrees) as a dict."""
    two_gradient = method in _TWO_GRADIENT
    c0, c1 = method_coefficients(method, E.beta, nu_value) if two_gradient else (None, None)
    a = _lookahead(method, E.beta)
    ak: dict[Tree, ExpPoly] = {}
    ek: dict[Tree, ExpPoly] = {}
    for tree in trees:
        if report is not None and (not ak or tree.order > max(t.order for t in ak)):
            report(f"recurrences for the trees of order {tree.order}")
        if two_gradient:
            product = E.one
            for child in tree.children:
                product = product * ak[child]
            # c0 D(a_k) - c1 D(a_{k-1}), for k >= 1; a_1 = a_0 + c0 D(a_0) is c0 on the leaf.
            forcing = product * c0 - E.shift(product, -1) * c1 if c1 else product * c0
            a1 = c0 if not tree.children else E.field.zero
        else:
            forcing = E.one
            for child in tree.children:
                if child not in ek:
                    ek[child] = ak[child] * (1 + a) - E.shift(ak[child], -1) * a if a else ak[child]
                forcing = forcing * ek[child]
            # a_0(tree) = 0 and a_1(tree) = D(e_0)(tree) = [tree is a leaf], since e_0 = identity.
            a1 = E.field.one if not tree.children else E.field.zero
        ak[tree] = E.solve_recurrence(forcing, E.field.zero, a1)
    return ak


# --- exact coefficients as plain data --------------------------------------------------------


class RationalFunction:
    r"""An exact rational function of β, $p(\beta)/q(\beta)$, with integer coefficients.

    Stored as ascending coefficient tuples with $\gcd$ of all coefficients 1 and $q$'s leading
    coefficient positive, so equal functions compare equal after `from_frac` cancels.
    """

    __slots__ = ("num", "den")

    def __init__(self, num: tuple[int, ...], den: tuple[int, ...]):
        if not den or not any(den):
            raise ValueError("RationalFunction: zero denominator")
        self.num = tuple(int(c) for c in num) or (0,)
        self.den = tuple(int(c) for c in den)

    @classmethod
    def from_frac(cls, value) -> RationalFunction:
        """From an element of ``QQ``, ``QQ.frac_field(beta)`` or `QBeta` (in lowest terms)."""
        if hasattr(value, "coefficients") and hasattr(value, "num"):  # QBeta: integer lists
            num_list, den_list = value.coefficients()
            return cls._from_integers(num_list, den_list)
        if hasattr(value, "numer") and hasattr(value, "denom") and hasattr(value.numer, "terms"):
            num = {
                e[0]: Fraction(int(c.numerator), int(c.denominator)) for e, c in value.numer.terms()
            }
            den = {
                e[0]: Fraction(int(c.numerator), int(c.denominator)) for e, c in value.denom.terms()
            }
        else:
            num = {0: Fraction(int(value.numerator), int(value.denominator))}
            den = {0: Fraction(1)}
        num = num or {0: Fraction(0)}
        scale = 1
        for c in list(num.values()) + list(den.values()):
            scale = scale * c.denominator // math.gcd(scale, c.denominator)
        nlist = [int(num.get(i, 0) * scale) for i in range(max(num) + 1)]
        dlist = [int(den.get(i, 0) * scale) for i in range(max(den) + 1)]
        return cls._from_integers(nlist, dlist)

    @classmethod
    def _from_integers(cls, nlist: list[int], dlist: list[int]) -> RationalFunction:
        while len(nlist) > 1 and not nlist[-1]:
            nlist = nlist[:-1]
        while len(dlist) > 1 and not dlist[-1]:
            dlist = dlist[:-1]
        g = 0
        for c in nlist + dlist:
            g = math.gcd(g, c)
        sign = -1 if dlist[-1] < 0 else 1
        return cls(tuple(sign * c // g for c in nlist), tuple(sign * c // g for c in dlist))

    def __eq__(self, other) -> bool:
        return isinstance(other, RationalFunction) and (self.num, self.den) == (
            other.num,
            other.den,
        )

    def __hash__(self) -> int:
        return hash((self.num, self.den))

    def __repr__(self) -> str:
        return f"RationalFunction({self.to_sympy()})"

    def to_sympy(self, beta: sympy.Expr | None = None) -> sympy.Expr:
        import sympy

        beta = beta_symbol() if beta is None else beta
        num = sum((c * beta**i for i, c in enumerate(self.num) if c), sympy.Integer(0))
        den = sum((c * beta**i for i, c in enumerate(self.den) if c), sympy.Integer(0))
        if not isinstance(beta, sympy.Symbol):
            return num / den
        # sympy's annotations give factor() the return type Basic; of an Expr it is an Expr.
        return cast(sympy.Expr, sympy.factor(num / den))

    def __call__(self, beta):
        """Evaluate at `beta` (a ``Fraction`` gives an exact ``Fraction``; an mpf an mpf)."""
        num = _horner(self.num, beta)
        den = _horner(self.den, beta)
        if den == 0:
            raise ZeroDivisionError(f"coefficient has a pole at beta = {beta}")
        return num / den

    def to_json(self) -> list[list[str]]:
        return [[str(c) for c in self.num], [str(c) for c in self.den]]

    @classmethod
    def from_json(cls, data) -> RationalFunction:
        num, den = data
        return cls(tuple(int(c) for c in num), tuple(int(c) for c in den))


def _horner(coeffs, x):
    out = 0
    for c in reversed(coeffs):
        out = out * x + c
    return out
