r"""The exact shifted start of the memoryless flows (docs/theory.md#shifted-start).

The iterates from rest are $u_k = B(a_k, u_0)$ and the steady-state (memoryless) modified field
$b_\infty$ generates the flow $\exp(s\,b_\infty)$.  Apply $k$ steps of the method, then flow back
$k\eta$ along the steady field: the character

$$\psi = \lim_{k\to\infty} a_k\cdot\exp(-k\,b_\infty)$$

(convention $B(c_2, B(c_1, u)) = B(c_1\cdot c_2, u)$) is the start $u_0' = B(\psi, u_0)$ from
which the steady-state flow passes through the iterates up to the transient, which decays like
$k^m\beta^k$.

In closed form, $a_k(\tau)$ is an exponential polynomial $\sum_{j,m} c_{j,m}(\beta) k^m\beta^{jk}$
and $\exp(-k\,b_\infty)(\tau)$ is a polynomial in $k$ (the time-$s$ flow of a B-series field has
coefficients polynomial in $s$), so their product in the Butcher group is again an exponential
polynomial.  Its $j = 0$ part must be free of $k$ — a check that the steady field is the right
one — and is $\psi(\tau)$.  All arithmetic is exact, in $\mathbb{Q}(\beta)$.

Gradient descent is a one-step method: $a_k = a_1^k = \exp(k\,b_\infty)$ exactly, so there is no
transient and $\psi$ is the identity (every $\psi(\tau) = 0$).
"""

from __future__ import annotations

import functools
import hashlib
import json
import warnings
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from flint import fmpz_poly

if TYPE_CHECKING:
    import sympy

from ._bseries import Character, compose, exp
from ._checks import check_beta, check_method, check_order, parse_beta
from ._derive import RationalFunction, _iterate_characters, closed_form_iterates
from ._exppoly import ExpPoly, ExpPolyRing, QBeta
from ._files import write_atomically
from ._trees import Tree, trees_up_to

__all__ = ["ShiftedStart", "shifted_start", "SHIFT_VERSION", "SHIFT_METHODS"]

#: The methods whose shifted start is derived.  For qhm, ψ would depend on ν as well as β (a
#: derivation and a cache per ν, as its counter terms have); it is not derived.
SHIFT_METHODS = ("hb", "nag", "gd", "nesterov")


def check_shift_method(method: str) -> str:
    """`method` if its shifted start is derived, else a `ValueError` that says which are."""
    method = check_method(method)
    if method not in SHIFT_METHODS:
        raise ValueError(
            f"the shifted start is derived for the methods {', '.join(SHIFT_METHODS)}, not "
            f"{method!r} (for qhm it would depend on nu); its hbfN and steadyN models apply"
        )
    return method


def _source_hash() -> str:
    # The counter terms' version (their code without docstrings) and this module's code.
    from ._counter_terms import DERIVATION_VERSION, _code_of

    digest = hashlib.sha256(DERIVATION_VERSION.encode())
    digest.update(_code_of(Path(__file__).read_text(encoding="utf-8")).encode())
    return digest.hexdigest()[:16]


SHIFT_VERSION = _source_hash()
_FORMAT = "hbflow-shifted-start/1"


def _closed_form_iterates(order: int, method: str) -> tuple[ExpPolyRing, Character]:
    r"""$a_k$ in closed form (`hbflow._derive.closed_form_iterates`) with its ring: $\psi$ needs
    $a_k$ itself rather than the modified field $b_k$."""
    E = ExpPolyRing()
    return E, closed_form_iterates(E, order, method)


def _steady_field(order: int, method: str) -> dict[Tree, RationalFunction]:
    from ._counter_terms import counter_terms

    ct = counter_terms(order, method)
    zero = RationalFunction((0,), (1,))
    return {t: ct.exponential_terms(t).get((0, 0), zero) for t in ct.trees}


def _to_qbeta(c: RationalFunction) -> QBeta:
    return QBeta(fmpz_poly(list(c.num)), fmpz_poly(list(c.den)))


def shifted_exponential_polynomial(order: int, method: str) -> dict[Tree, ExpPoly]:
    r"""$a_k\cdot\exp(-k\,b_\infty)$ in closed form, every $\beta^{jk}$ part kept.

    **Arguments:**

    - `order`: keep the trees with $|\tau| \le$ `order`.
    - `method`: ``"hb"`` or ``"nag"`` (gradient descent has no closed form in $k$ to take).

    **Returns:** a dict from tree to an `ExpPoly` in $k$ and $B = \beta^k$.
    """
    check_order(order)
    check_method(method)
    if method == "gd":
        raise ValueError("gd has no k-dependence to solve for; use shifted_start(order, 'gd')")
    E, ak = _closed_form_iterates(order, method)
    steady = _steady_field(order, method)
    # -k b_inf(tau): a polynomial in k, so exp of it is one too (degree |tau| in k).
    back = Character(
        {
            t: ExpPoly({(1, 0): -_to_qbeta(c)}) if any(c.num) else ExpPoly({})
            for t, c in steady.items()
        },
        order,
        0,
        E.one,
    )
    return dict(compose(ak, exp(back)).items())


def _derive_shift(order: int, method: str) -> dict[Tree, RationalFunction]:
    if method == "gd":
        return _derive_shift_gd(order)
    out = {}
    for tree, p in shifted_exponential_polynomial(order, method).items():
        steady = {m: c for (m, j), c in p.terms.items() if j == 0}
        growing = sorted(m for m, c in steady.items() if m > 0 and c)
        if growing:
            raise ArithmeticError(
                f"a_k · exp(-k b_inf) on {tree.bracket()} keeps a k^{growing[-1]} part: the "
                "steady field does not match the iterates"
            )
        out[tree] = RationalFunction.from_frac(steady.get(0, QBeta.of(0)))
    return out


def _derive_shift_gd(order: int) -> dict[Tree, RationalFunction]:
    # One-step method: a_k . exp(-k b_inf) must not depend on k at all; check it on k = 1, 2, 3
    # with the iterates of the recurrence and the Euler modified field.
    from sympy.polys.domains import QQ

    steady = _steady_field(order, "gd")
    values = None
    for k, ak, _ in _iterate_characters(order, "gd", Fraction(0), 3):
        if k == 0:
            continue
        back = Character(
            {
                t: QQ(-k) * QQ(c(Fraction(0)).numerator, c(Fraction(0)).denominator)
                for t, c in steady.items()
            },
            order,
            0,
            QQ.one,
        )
        shifted = dict(compose(ak, exp(back)).items())
        if values is not None and shifted != values:
            raise ArithmeticError("gd: a_k · exp(-k b_inf) depends on k")
        values = shifted
    # values is set: the loop runs for k = 1, 2, 3 (no assert: the code is fingerprinted)
    return {t: RationalFunction.from_frac(v) for t, v in values.items()}  # pyright: ignore[reportOptionalMemberAccess]


class ShiftedStart:
    r"""The exact shifted start $\psi(\tau)$, $|\tau| \le$ `order`, of one method.

    $u_0' = B(\psi, u_0) = u_0 + \sum_\tau \frac{\eta^{|\tau|}}{\sigma(\tau)}\psi(\tau)F(\tau)(u_0)$
    with $F(\bullet) = -\nabla L$ (docs/theory.md#shifted-start).

    **Arguments:**

    - `method`: ``"hb"``, ``"nag"`` or ``"gd"``.
    - `order`: the largest $|\tau|$ kept.
    - `values`: for each tree, $\psi(\tau)$ as a `RationalFunction` of β.

    **Raises:** `ValueError` if a tree is missing.
    """

    def __init__(self, method: str, order: int, values: dict[Tree, RationalFunction]):
        self.method = check_method(method)
        self.order = check_order(order)
        self.trees = trees_up_to(order)
        missing = [t for t in self.trees if t not in values]
        if missing:
            raise ValueError(f"shifted start of order {order} lacks trees {missing[:3]}")
        self._values = {t: values[t] for t in self.trees}

    def __repr__(self) -> str:
        return f"ShiftedStart(method={self.method!r}, order={self.order})"

    def __getitem__(self, tree) -> RationalFunction:
        r"""$\psi(\tau)$ as a `RationalFunction` (a tree or its level sequence)."""
        if not isinstance(tree, Tree):
            tree = Tree.from_level_sequence(tree)
        if tree not in self._values:
            raise KeyError(
                f"tree {list(tree.level_sequence)} has order {tree.order} > {self.order}"
            )
        return self._values[tree]

    def coefficient(self, tree, beta=None) -> sympy.Expr:
        r"""$\psi(\tau)$ as a factored sympy expression in ``beta``, or its value at a given β."""
        import sympy

        value = parse_beta(beta, self.method)
        c = self[tree]
        if value is None:
            return c.to_sympy()
        exact = c(value)
        return sympy.Rational(exact.numerator, exact.denominator)

    def values(self, beta: float) -> np.ndarray:
        r"""$\psi(\tau_i)$ at the exact binary value of `beta`, each rounded once to float64."""
        exact = Fraction(check_beta(beta, self.method))
        return np.array([float(self._values[t](exact)) for t in self.trees])

    def truncate(self, order: int) -> ShiftedStart:
        """The same coefficients restricted to $|\\tau| \\le$ `order`."""
        check_order(order)
        if order > self.order:
            raise ValueError(f"order must be <= {self.order} to truncate, got {order}")
        return ShiftedStart(self.method, order, {t: self._values[t] for t in trees_up_to(order)})

    # --- serialisation ------------------------------------------------------------------------

    def to_data(self) -> dict:
        """Plain data for a cache file, with a SHA-256 checksum of its contents."""
        from ._counter_terms import _checksum

        data = {
            "format": _FORMAT,
            "derivation_version": SHIFT_VERSION,
            "method": self.method,
            "order": self.order,
            "trees": [
                {"tree": list(t.level_sequence), "psi": self._values[t].to_json()}
                for t in self.trees
            ],
        }
        data["checksum"] = _checksum(data)
        return data

    @classmethod
    def from_data(cls, data: dict) -> ShiftedStart:
        """Read `to_data`'s output back; `ValueError` for another format or version, or a
        checksum that does not match (a damaged or edited file)."""
        from ._counter_terms import check_file_data

        check_file_data(data, "shifted-start", _FORMAT, SHIFT_VERSION)
        values = {
            Tree.from_level_sequence(e["tree"]): RationalFunction.from_json(e["psi"])
            for e in data["trees"]
        }
        return cls(data["method"], int(data["order"]), values)


def shifted_start(order: int, method: str = "hb", *, use_cache: bool = True) -> ShiftedStart:
    r"""The exact shifted start $\psi = \lim_k a_k\cdot\exp(-k\,b_\infty)$ up to `order`.

    The steady-state flow of order $N$ started at $B(\psi_N, u_0)$ ($\psi$ truncated at
    $|\tau| \le N$) follows the iterates from rest to $O(\eta^N)$ outside an initial layer of
    about $\log(1/\eta)/\log(1/\beta)$ steps (docs/theory.md#shifted-start).

    **Arguments:**

    - `order`: an integer $\ge 1$.
    - `method`: ``"hb"``, ``"nag"``, ``"gd"`` or ``"nesterov"`` (`SHIFT_METHODS`).
    - `use_cache`: load from and save to the cache directories of `hbflow.counter_terms`.

    **Returns:** a `ShiftedStart`, exact coefficients rational in β.

    **Raises:** `ValueError` for an order < 1 or a method outside `SHIFT_METHODS`;
    `ArithmeticError` if the $k$-dependence of the steady part fails to cancel (a bug, never
    expected).
    """
    check_order(order)
    check_shift_method(method)
    return _shifted_start(order, method, bool(use_cache))


def cache_filename(method: str, order: int) -> str:
    return f"shifted_start_{method}_order{order}.json"


def write_shift_cache(start: ShiftedStart, directory: Path) -> Path:
    """Write `start` to `directory` atomically (a private temporary file, then a rename)."""
    path = directory / cache_filename(start.method, start.order)
    write_atomically(path, json.dumps(start.to_data(), separators=(",", ":")), mode=0o644)
    return path


def _cached_files(directory: Path, method: str) -> list[tuple[int, Path]]:
    found = []
    for path in directory.glob(f"shifted_start_{method}_order*.json"):
        try:
            found.append((int(path.stem.rsplit("order", 1)[1]), path))
        except ValueError:
            continue
    return sorted(found)


@functools.cache
def _shifted_start(order: int, method: str, use_cache: bool) -> ShiftedStart:
    from ._counter_terms import cache_dirs

    if use_cache:
        for directory in cache_dirs():
            for stored, path in _cached_files(directory, method):
                if stored < order:
                    continue
                try:
                    start = ShiftedStart.from_data(json.loads(path.read_text(encoding="utf-8")))
                    if start.method != method or start.order != stored:
                        raise ValueError("file name and contents disagree")
                except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as err:
                    removed = ""
                    if directory != cache_dirs()[0]:
                        try:
                            path.unlink(missing_ok=True)  # rewritten below, at this order
                            removed = " (removed)"
                        except OSError:
                            removed = " (could not remove it)"
                    warnings.warn(
                        f"ignoring shifted-start cache {path}{removed}: {err}; deriving again",
                        RuntimeWarning,
                        stacklevel=4,
                    )
                    continue
                return start.truncate(order) if stored > order else start
    start = ShiftedStart(method, order, _derive_shift(order, method))
    if use_cache:
        try:
            write_shift_cache(start, cache_dirs()[-1])
        except OSError as err:
            warnings.warn(
                f"could not write the shifted-start cache: {err}", RuntimeWarning, stacklevel=2
            )
    return start
