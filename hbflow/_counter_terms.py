r"""The derived counter terms as plain, exact data keyed by tree — and their cache.

`counter_terms(order, method)` returns a `CounterTerms`: for every tree $\tau$ with
$|\tau| \le$ `order`, the closed form
$b_k(\tau) = \sum_{j,m} c_{j,m}(\beta)\, k^m \beta^{jk}$ with exact rational $c_{j,m}$, its value at
any $k$, the steady state $b_\infty(\tau) = c_{0,0}(\beta)$, LaTeX, and the one bridge to floating
point, `CounterTerms.coefficient_table`.

Normalisation: the field on piece $k$ is
$f_k = \sum_\tau \eta^{|\tau|-1} \frac{b_k(\tau)}{\sigma(\tau)} F(\tau)$
with $F(\bullet) = -\nabla L$.

Derivations are cached in versioned JSON files: first the files shipped in ``hbflow/_data``
(written by ``derivations/counter_terms.py``), then a user cache directory (``$HBFLOW_CACHE_DIR``,
default ``~/.cache/hbflow``).  A file written by another version of the derivation code, or a
damaged one, is ignored with a warning and the result derived again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import warnings
from fractions import Fraction
from pathlib import Path

import mpmath
import numpy as np
import sympy
from sympy.polys.domains import QQ

from . import _bseries, _derive, _exppoly, _trees
from ._derive import K, RationalFunction, _horner
from ._exppoly import BETA
from ._trees import Tree, trees_up_to
from ._validate import check_beta, check_count, check_method, check_order, parse_beta

__all__ = ["CounterTerms", "counter_terms", "DERIVATION_VERSION", "CONVENTION"]

CONVENTION = (
    "field on piece k: f_k(u) = sum over trees tau of "
    "eta^(|tau|-1) * b_k(tau)/sigma(tau) * F(tau)(u), "
    "for t in [k*eta, (k+1)*eta]; F(•) = g = -∇L, F([t1,...,tm]) = g^(m)[F(t1),...,F(tm)]; "
    "u_k = B(a_k, u_0) from rest, b_k = log(a_k^{-1} · a_{k+1})"
)


def _source_hash() -> str:
    digest = hashlib.sha256()
    for module in (_trees, _bseries, _exppoly, _derive):
        digest.update(Path(str(module.__file__)).read_bytes())
    return digest.hexdigest()[:16]


DERIVATION_VERSION = _source_hash()
_FORMAT = "hbflow-counter-terms/1"
_PACKAGE_DATA = Path(__file__).parent / "_data"


class CounterTerms:
    r"""Exact counter-term coefficients $b_k(\tau)$ of one method, keyed by tree.

    **Arguments:**

    - `method`: ``"hb"``, ``"nag"`` or ``"gd"``.
    - `order`: the largest $|\tau|$ kept.
    - `terms`: for each tree, ``{(j, m): c_jm}`` with `c_jm` a `RationalFunction` of β.

    **Raises:** `ValueError` if a tree is missing or the $j = 0$ part depends on $k$ (then
    $b_k$ would have no steady state, which contradicts MATH.md §4).
    """

    def __init__(
        self, method: str, order: int, terms: dict[Tree, dict[tuple[int, int], RationalFunction]]
    ):
        self.method = check_method(method)
        self.order = check_order(order)
        self.trees = trees_up_to(order)
        missing = [t for t in self.trees if t not in terms]
        if missing:
            raise ValueError(f"counter terms of order {order} lack trees {missing[:3]}")
        for tree in self.trees:
            growing = [m for (j, m), c in terms[tree].items() if j == 0 and m > 0 and any(c.num)]
            if growing:
                raise ValueError(
                    f"b_k({tree.bracket()}) grows like k^{max(growing)}: no steady state"
                )
        self._terms = {t: dict(sorted(terms[t].items())) for t in self.trees}

    def __repr__(self) -> str:
        return f"CounterTerms(method={self.method!r}, order={self.order}, trees={len(self.trees)})"

    # --- exact access -------------------------------------------------------------------------

    def exponential_terms(
        self, tree: Tree | tuple | list
    ) -> dict[tuple[int, int], RationalFunction]:
        r"""``{(j, m): c_{j,m}}`` with $b_k(\tau) = \sum c_{j,m}(\beta) k^m \beta^{jk}$."""
        return self._terms[self._tree(tree)]

    def closed_form(self, tree, beta=None) -> sympy.Expr:
        r"""$b_k(\tau)$ as a sympy expression in the symbols ``k`` and ``beta`` (or β given)."""
        value = parse_beta(beta)
        b = BETA if value is None else sympy.Rational(value.numerator, value.denominator)
        out = sympy.Integer(0)
        for (j, m), c in self._terms[self._tree(tree)].items():
            coeff = c.to_sympy(b)
            out += coeff * K**m * (b ** (j * K) if j else 1)
        return out

    def steady_state(self, tree, beta=None) -> sympy.Expr:
        r"""$b_\infty(\tau)$, the $\beta^{jk}$-free part of the closed form."""
        value = parse_beta(beta)
        c = self._terms[self._tree(tree)].get((0, 0))
        if c is None:
            return sympy.Integer(0)
        if value is None:
            return c.to_sympy()
        return sympy.Rational(c(value).numerator, c(value).denominator)

    def at(self, k: int, beta=None, *, as_sympy: bool = True) -> dict[Tree, sympy.Expr]:
        r"""$b_k(\tau)$ at an integer $k \ge 0$: rational in β, or a number if β is given.

        With `as_sympy` false the values are `RationalFunction`s (canonical, cheap to compare).
        """
        check_count(k, "k", minimum=0)
        value = parse_beta(beta)
        field = QQ.frac_field(BETA) if value is None else QQ
        b = field.convert(BETA) if value is None else QQ(value.numerator, value.denominator)
        out = {}
        for tree, terms in self._terms.items():
            total = field.zero
            for (j, m), c in terms.items():
                total += _horner(c.num, b) / _horner(c.den, b) * k**m * b ** (j * k)
            exact = RationalFunction.from_frac(total)
            out[tree] = exact.to_sympy() if as_sympy else exact
        return out

    def truncate(self, order: int) -> CounterTerms:
        """The same coefficients restricted to $|\\tau| \\le$ `order`."""
        check_order(order)
        if order > self.order:
            raise ValueError(f"order must be <= {self.order} to truncate, got {order}")
        return CounterTerms(self.method, order, {t: self._terms[t] for t in trees_up_to(order)})

    def _tree(self, tree) -> Tree:
        if not isinstance(tree, Tree):
            tree = Tree.from_level_sequence(tree)
        if tree not in self._terms:
            raise KeyError(
                f"tree {list(tree.level_sequence)} has order {tree.order} > {self.order}"
            )
        return tree

    # --- the bridge to float64 ----------------------------------------------------------------

    def coefficient_table(self, beta: float, num_pieces: int) -> np.ndarray:
        r"""$b_k(\tau_i)$ for $k = 0, \dots,$ `num_pieces`$-1$ as float64, each entry rounded once.

        The closed form cancels catastrophically in float64 when β is near 1 and $k$ is small:
        $c_{j,m}(\beta)$ has poles $(1-\beta)^{-(2|\tau|-1)}$ that cancel between the $j$.  Each
        entry is therefore evaluated from the exact $c_{j,m}$ at the exact binary value of `beta`
        in extended precision (enough digits for the largest term, plus 30) — in exact rationals
        where even that loses too much, as for a coefficient that is exactly zero — and rounded
        once.
        Once every transient term is below $2^{-64}$ of the steady state, the steady state is used.

        **Returns:** an array of shape ``(num_pieces, len(self.trees))``.
        """
        if isinstance(num_pieces, bool) or not isinstance(num_pieces, int) or num_pieces < 1:
            raise ValueError(f"num_pieces must be an integer >= 1, got {num_pieces!r}")
        exact_beta = self._float_beta(beta)
        if exact_beta == 0 and self.method != "gd":
            # beta = 0 makes hb and nag gradient descent; the closed form would need 0**0 = 1.
            return counter_terms(self.order, "gd").coefficient_table(0.0, num_pieces)
        table = np.empty((num_pieces, len(self.trees)))
        ks = np.arange(num_pieces, dtype=float)
        log_k = np.log(np.maximum(ks, 1.0))
        for i, tree in enumerate(self.trees):
            terms = {jm: c(exact_beta) for jm, c in self._terms[tree].items()}
            steady = terms.pop((0, 0), Fraction(0))
            transient = {jm: c for jm, c in terms.items() if c != 0}
            table[:, i] = float(steady)
            if not transient:
                continue
            # log of each transient term |c| k^m beta^(jk), to find where they stop mattering
            log_terms = np.array(
                [_log(c) + m * log_k + j * ks * _log(exact_beta) for (j, m), c in transient.items()]
            )
            log_bound = math.log(len(transient)) + log_terms.max(axis=0)
            threshold = (_log(steady) if steady else 0.0) - 64 * math.log(2)
            still_transient = np.nonzero(log_bound >= threshold)[0]
            exact_until = int(still_transient.max()) + 1 if still_transient.size else 0
            if exact_until == 0:
                continue
            digits = 30 + max(0, math.ceil(log_terms[:, :exact_until].max() / math.log(10)))
            with mpmath.workdps(digits):
                b = mpmath.mpf(exact_beta.numerator) / exact_beta.denominator
                by_j: dict[int, dict] = {}  # of mpmath numbers (mpmath has no annotations)
                for (j, m), c in transient.items():
                    by_j.setdefault(j, {})[m] = mpmath.mpf(c.numerator) / c.denominator
                step = {j: b**j for j in by_j}
                power = {j: mpmath.mpf(1) for j in by_j}
                base = mpmath.mpf(steady.numerator) / steady.denominator
                # Below this size the sum has lost more digits than the working precision
                # carries (an exact zero, e.g. b_0([•,•,•]) = 0): redo that entry in rationals.
                trust = mpmath.mpf(10) ** (20 - digits)
                for k in range(exact_until):
                    total = base
                    for j, poly in by_j.items():
                        total += _poly_at(poly, k) * power[j]
                        power[j] *= step[j]
                    if abs(total) <= trust * mpmath.exp(log_terms[:, k].max()):
                        total = steady + sum(
                            c * k**m * exact_beta ** (j * k) for (j, m), c in transient.items()
                        )
                    table[k, i] = float(total)
        return table

    def steady_state_values(self, beta: float) -> np.ndarray:
        r"""$b_\infty(\tau_i)$ at the exact binary value of `beta`, rounded once to float64."""
        exact_beta = self._float_beta(beta)
        return np.array(
            [
                float(self._terms[t].get((0, 0), RationalFunction((0,), (1,)))(exact_beta))
                for t in self.trees
            ]
        )

    def _float_beta(self, beta) -> Fraction:
        return Fraction(check_beta(beta, self.method))

    # --- serialisation ------------------------------------------------------------------------

    def to_data(self) -> dict:
        return {
            "format": _FORMAT,
            "derivation_version": DERIVATION_VERSION,
            "method": self.method,
            "order": self.order,
            "trees": [
                {
                    "tree": list(t.level_sequence),
                    "terms": [[j, m, *c.to_json()] for (j, m), c in self._terms[t].items()],
                }
                for t in self.trees
            ],
        }

    @classmethod
    def from_data(cls, data: dict) -> CounterTerms:
        if data.get("format") != _FORMAT:
            raise ValueError(f"not a counter-terms file (format {data.get('format')!r})")
        if data.get("derivation_version") != DERIVATION_VERSION:
            raise ValueError(
                f"written by derivation version {data.get('derivation_version')!r}, "
                f"this code is {DERIVATION_VERSION!r}"
            )
        terms = {}
        for entry in data["trees"]:
            tree = Tree.from_level_sequence(entry["tree"])
            terms[tree] = {
                (int(j), int(m)): RationalFunction.from_json([n, d])
                for j, m, n, d in entry["terms"]
            }
        return cls(data["method"], int(data["order"]), terms)


def _log(x: Fraction) -> float:
    """log|x| of an exact rational, also where float(x) would underflow or overflow."""
    return math.log(abs(x.numerator)) - math.log(x.denominator)


def _poly_at(poly: dict, k: int):
    out = 0
    for m, c in poly.items():
        out += c * k**m
    return out


def derive_counter_terms(order: int, method: str) -> CounterTerms:
    """Derive without any cache: the closed form for hb/nag, the Euler character for gd."""
    check_order(order)
    check_method(method)
    if method == "gd":
        values = _derive.coefficients_at(order, 0, method="gd")
        terms = {
            t: {(0, 0): RationalFunction.from_frac(sympy.QQ.convert(v))} for t, v in values.items()
        }
        return CounterTerms("gd", order, terms)
    closed = _derive.closed_form_characters(order, method)
    terms = {
        tree: {
            (j, m): RationalFunction.from_frac(c)
            for j, by_m in parts.items()
            for m, c in by_m.items()
        }
        for tree, parts in closed.items()
    }
    return CounterTerms(method, order, terms)


def cache_dirs() -> list[Path]:
    user = Path(os.environ.get("HBFLOW_CACHE_DIR", Path.home() / ".cache" / "hbflow"))
    return [_PACKAGE_DATA, user]


def cache_filename(method: str, order: int) -> str:
    return f"counter_terms_{method}_order{order}.json"


def write_cache(ct: CounterTerms, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / cache_filename(ct.method, ct.order)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(ct.to_data(), separators=(",", ":")))
    tmp.replace(path)
    return path


def _load_from_caches(order: int, method: str) -> CounterTerms | None:
    for directory in cache_dirs():
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob(f"counter_terms_{method}_order*.json")):
            try:
                stored_order = int(path.stem.rsplit("order", 1)[1])
            except ValueError:
                continue
            if stored_order < order:
                continue
            try:
                ct = CounterTerms.from_data(json.loads(path.read_text()))
                if ct.method != method or ct.order != stored_order:
                    raise ValueError("file name and contents disagree")
            except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as err:
                removed = ""
                if directory != _PACKAGE_DATA:
                    path.unlink(missing_ok=True)  # regenerated below, at the order asked for
                    removed = " (removed)"
                warnings.warn(
                    f"ignoring counter-terms cache {path}{removed}: {err}; deriving again",
                    RuntimeWarning,
                    stacklevel=4,
                )
                continue
            return ct.truncate(order) if stored_order > order else ct
    return None


def counter_terms(order: int, method: str = "hb", *, use_cache: bool = True) -> CounterTerms:
    r"""The exact counter terms $b_k(\tau)$, $|\tau| \le$ `order`, of `method`.

    **Arguments:**

    - `order`: an integer $\ge 1$; the HBF of order $\alpha$ needs `order` $= \alpha$.
    - `method`: ``"hb"`` (heavy ball), ``"nag"`` (Nesterov) or ``"gd"`` (gradient descent).
    - `use_cache`: load from and save to the cache files (see module docstring).

    **Returns:** a `CounterTerms`.

    **Raises:** `ValueError` for an order < 1 or an unknown method.
    """
    check_order(order)
    check_method(method)
    return _counter_terms(order, method, bool(use_cache))


@functools.cache
def _counter_terms(order: int, method: str, use_cache: bool) -> CounterTerms:
    if use_cache:
        ct = _load_from_caches(order, method)
        if ct is not None:
            return ct
    ct = derive_counter_terms(order, method)
    if use_cache:
        try:
            write_cache(ct, cache_dirs()[-1])
        except OSError as err:
            warnings.warn(
                f"could not write the counter-terms cache: {err}", RuntimeWarning, stacklevel=2
            )
    return ct
