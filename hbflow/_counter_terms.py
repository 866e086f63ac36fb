r"""The derived counter terms as plain, exact data keyed by tree — and their cache.

`counter_terms(order, method)` returns a `CounterTerms`: for every tree $\tau$ with
$|\tau| \le$ `order`, the closed form
$b_k(\tau) = \sum_{j,m} c_{j,m}(\beta)\, k^m \beta^{jk}$ with exact rational $c_{j,m}$, its value at
any $k$, the steady state $b_\infty(\tau) = c_{0,0}(\beta)$, LaTeX, and the one bridge to floating
point, `CounterTerms.coefficient_table`.

Normalisation: the field on piece $k$ is
$f_k = \sum_\tau \eta^{|\tau|-1} \frac{b_k(\tau)}{\sigma(\tau)} F(\tau)$
with $F(\bullet) = -\nabla L$.

Derivations are cached in versioned JSON files (plain or gzip-compressed): first the files
shipped in ``hbflow/_data`` (written by ``derivations/counter_terms.py``), then a user cache
directory (``$HBFLOW_CACHE_DIR``; unset or empty, ``~/.cache/hbflow``).  Each file carries the
version of the derivation code that wrote it and a SHA-256 checksum of its contents.  A file of
another version, a damaged or edited one (any changed digit), or one of the wrong shape is ignored
with a warning and the result derived again — in memory only, when the cache directory cannot be
written.
"""

from __future__ import annotations

import ast
import functools
import gzip
import hashlib
import json
import math
import re
import sys
import time
import warnings
from collections import OrderedDict
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from flint import arb, arb_mat, ctx, fmpq, fmpz_poly

from . import _bseries, _derive, _exppoly, _parallel, _qfactored, _trees
from ._checks import check_beta, check_count, check_method, check_order, parse_beta, parse_nu
from ._derive import RationalFunction, _horner, k_symbol
from ._exppoly import beta_symbol
from ._files import user_cache, write_atomically
from ._trees import Tree, trees_up_to

if TYPE_CHECKING:
    import sympy

__all__ = ["CounterTerms", "counter_terms", "DERIVATION_VERSION", "CONVENTION"]

CONVENTION = (
    "field on piece k: f_k(u) = sum over trees tau of "
    "eta^(|tau|-1) * b_k(tau)/sigma(tau) * F(tau)(u), "
    "for t in [k*eta, (k+1)*eta]; F(•) = g = -∇L, F([t1,...,tm]) = g^(m)[F(t1),...,F(tm)]; "
    "u_k = B(a_k, u_0) from rest, b_k = log(a_k^{-1} · a_{k+1})"
)


def _code_of(source: str) -> str:
    """The syntax tree of a module without its docstrings: what the derivation computes.

    Comments and docstrings do not change the derivation, so editing them must not invalidate
    the cache (and the shipped files); any change to the code does.
    """
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
    return ast.dump(tree, include_attributes=False)


_VERSION = re.compile(r"[0-9a-f]{16}")


def code_version(paths: list[Path], salt: str = "") -> str:
    """16 hex digits of SHA-256 over `salt` and the code of the files `paths` (`_code_of`).

    Parsing the files takes about 0.1 s, once per process: the result is remembered in the user
    cache (``code_versions.json``), keyed by the SHA-256 of the files' bytes, so files that have
    not changed are not parsed again.  A missing, damaged or unwritable memo is only slower.
    """
    sources = [path.read_bytes() for path in paths]
    raw = hashlib.sha256(salt.encode())
    for source in sources:
        raw.update(len(source).to_bytes(8, "little"))
        raw.update(source)
    key = raw.hexdigest()
    memo_path = user_cache() / "code_versions.json"
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        memo = {}
    if not isinstance(memo, dict):
        memo = {}
    known = memo.get(key)
    if isinstance(known, str) and _VERSION.fullmatch(known):
        return known
    digest = hashlib.sha256(salt.encode())
    for source in sources:
        digest.update(_code_of(source.decode("utf-8")).encode())
    version = digest.hexdigest()[:16]
    kept = {k: v for k, v in memo.items() if isinstance(v, str) and _VERSION.fullmatch(v)}
    kept = dict(list(kept.items())[-15:]) | {key: version}
    try:
        write_atomically(memo_path, json.dumps(kept), mode=0o644)
    except OSError:
        pass
    return version


def _module_paths(*modules) -> list[Path]:
    paths = []
    for module in modules:
        assert module.__file__ is not None  # package modules are loaded from files
        paths.append(Path(module.__file__))
    return paths


# The derivation: trees, B-series, its arithmetic, the recurrences and the worker processes.
DERIVATION_VERSION = code_version(
    _module_paths(_trees, _bseries, _exppoly, _derive, _qfactored, _parallel)
)
_FORMAT = "hbflow-counter-terms/2"
_PACKAGE_DATA = Path(__file__).parent / "_data"


class CounterTerms:
    r"""Exact counter-term coefficients $b_k(\tau)$ of one method, keyed by tree.

    **Arguments:**

    - `method`: ``"hb"``, ``"nag"``, ``"gd"``, ``"nesterov"`` or ``"qhm"``.
    - `order`: the largest $|\tau|$ kept.
    - `terms`: for each tree, ``{(j, m): c_jm}`` with `c_jm` a `RationalFunction` of β.
    - `nu`: for ``"qhm"``, the rational ν the coefficients were derived for (required there).

    **Raises:** `ValueError` if a tree is missing or the $j = 0$ part depends on $k$ (then
    $b_k$ would have no steady state, which contradicts
    docs/theory.md#closed-form-and-steady-state).
    """

    def __init__(
        self,
        method: str,
        order: int,
        terms: dict[Tree, dict[tuple[int, int], RationalFunction]],
        *,
        nu=None,
    ):
        self.method = check_method(method)
        self.order = check_order(order)
        #: ν of ``"qhm"`` as an exact ``Fraction`` (``None`` for the other methods).
        self.nu = parse_nu(nu, self.method)
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
        # coefficient_table's recent results, by (exact β, num_pieces): a study and a sweep ask
        # again for the tables of the β they already used.
        self._tables: OrderedDict[tuple[Fraction, int], np.ndarray] = OrderedDict()

    def __repr__(self) -> str:
        nu = "" if self.nu is None else f", nu={str(self.nu)!r}"
        trees = len(self.trees)
        return f"CounterTerms(method={self.method!r}{nu}, order={self.order}, trees={trees})"

    # --- exact access -------------------------------------------------------------------------

    def exponential_terms(
        self, tree: Tree | tuple | list
    ) -> dict[tuple[int, int], RationalFunction]:
        r"""``{(j, m): c_{j,m}}`` with $b_k(\tau) = \sum c_{j,m}(\beta) k^m \beta^{jk}$."""
        return self._terms[self._tree(tree)]

    def closed_form(self, tree, beta=None) -> sympy.Expr:
        r"""$b_k(\tau)$ as a sympy expression in the symbols ``k`` and ``beta`` (or β given)."""
        import sympy

        value = parse_beta(beta)
        b = beta_symbol() if value is None else sympy.Rational(value.numerator, value.denominator)
        k = k_symbol()
        out = sympy.Integer(0)
        for (j, m), c in self._terms[self._tree(tree)].items():
            coeff = c.to_sympy(b)
            out += coeff * k**m * (b ** (j * k) if j else 1)
        return out

    def steady_state(self, tree, beta=None) -> sympy.Expr:
        r"""$b_\infty(\tau)$, the $\beta^{jk}$-free part of the closed form."""
        import sympy

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
        from sympy.polys.domains import QQ

        check_count(k, "k", minimum=0)
        value = parse_beta(beta)
        field = QQ.frac_field(beta_symbol()) if value is None else QQ
        b = (
            field.convert(beta_symbol())
            if value is None
            else QQ(value.numerator, value.denominator)
        )
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
        kept = {t: self._terms[t] for t in trees_up_to(order)}
        return CounterTerms(self.method, order, kept, nu=self.nu)

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
        in ball arithmetic (Arb, through python-flint: every result is an interval certain to
        hold the exact value), and rounded once: an entry whose ball lies inside the rounding
        interval of one float64 is that float64, with certainty; an entry the ball cannot decide
        (an exact zero, such as $b_0([\bullet,\bullet,\bullet]) = 0$, or a value next to a tie)
        is computed in exact rationals and rounded.  Beyond the piece $K$ where every transient
        term is below $2^{-64}$ of the steady state, the entries are the steady state rounded
        once, after checking with a rigorous bound on the whole tail $k \ge K$ that it rounds
        to the same float64.  The table therefore equals the correctly rounded exact values.

        **Returns:** an array of shape ``(num_pieces, len(self.trees))``.

        **Raises:** `ValueError` for `num_pieces` < 1 or β outside the method's range.
        """
        if isinstance(num_pieces, bool) or not isinstance(num_pieces, int) or num_pieces < 1:
            raise ValueError(f"num_pieces must be an integer >= 1, got {num_pieces!r}")
        exact_beta = self._float_beta(beta)
        if exact_beta == 0 and self.method != "gd":
            # beta = 0 makes hb and nag gradient descent; the closed form would need 0**0 = 1.
            return counter_terms(self.order, "gd").coefficient_table(0.0, num_pieces)
        key = (exact_beta, num_pieces)
        table = self._tables.get(key)
        if table is None:
            table = _certified_table(self._terms, self.trees, exact_beta, num_pieces)
            self._tables[key] = table
            if len(self._tables) > 64:
                self._tables.popitem(last=False)
        return table.copy()  # the caller's own: a kept table is never handed out

    def steady_state_values(self, beta: float) -> np.ndarray:
        r"""$b_\infty(\tau_i)$ at the exact binary value of `beta`, rounded once to float64."""
        exact_beta = fmpq(*Fraction(self._float_beta(beta)).as_integer_ratio())
        return np.array(
            [
                _to_float(_value_at(self._terms[t][(0, 0)], exact_beta))
                if (0, 0) in self._terms[t]
                else 0.0
                for t in self.trees
            ]
        )

    def _float_beta(self, beta) -> Fraction:
        return Fraction(check_beta(beta, self.method))

    # --- serialisation ------------------------------------------------------------------------

    def to_data(self) -> dict:
        """The JSON object of a cache file, with the SHA-256 `checksum` of its contents."""
        data = {
            "format": _FORMAT,
            "derivation_version": DERIVATION_VERSION,
            "method": self.method,
            **({} if self.nu is None else {"nu": str(self.nu)}),
            "order": self.order,
            "trees": [
                {
                    "tree": list(t.level_sequence),
                    "terms": [[j, m, *c.to_json()] for (j, m), c in self._terms[t].items()],
                }
                for t in self.trees
            ],
        }
        data["checksum"] = _checksum(data)
        return data

    @classmethod
    def from_data(cls, data: dict, order: int | None = None) -> CounterTerms:
        """Rebuild from `to_data`'s object after checking format, version and checksum.

        With `order`, only the trees up to that order are read (the same as `truncate`).

        **Raises:** `ValueError` for anything else, including a single edited number.
        """
        check_file_data(data, "counter-terms", _FORMAT, DERIVATION_VERSION)
        return cls._from_checked(data, order)

    @classmethod
    def _from_checked(cls, data: dict, order: int | None) -> CounterTerms:
        stored = int(data["order"])
        if order is None:
            order = stored
        elif not 1 <= order <= stored:
            raise ValueError(f"order must be between 1 and {stored} to read this file, got {order}")
        terms = {}
        for entry in data["trees"]:
            if len(entry["tree"]) > order:  # a tree's order is its number of nodes
                continue
            tree = Tree.from_level_sequence(entry["tree"])
            terms[tree] = {
                (int(j), int(m)): RationalFunction.from_json([n, d])
                for j, m, n, d in entry["terms"]
            }
        return cls(data["method"], order, terms, nu=data.get("nu"))


def _value_at(c: RationalFunction, beta: fmpq) -> fmpq:
    """The exact value of `c` at a rational β (FLINT evaluates both polynomials exactly)."""
    return fmpz_poly(list(c.num))(beta) / fmpz_poly(list(c.den))(beta)


def _to_float(x: fmpq) -> float:
    """The float64 nearest to an exact rational (round half to even, as ``float(Fraction)``)."""
    return float(Fraction(int(x.p), int(x.q)))


def _log_abs(x: fmpq) -> float:
    """log|x| of a nonzero exact rational, also where float(x) would underflow or overflow."""
    return math.log(abs(int(x.p))) - math.log(int(x.q))


def _decides(ball: arb) -> float | None:
    """The float64 every point of `ball` rounds to, or ``None`` if they do not all agree.

    ``float`` of an exact arb is round-to-nearest, which is monotone: if both ends of the ball
    round to the same float64, so does every point between them (comparing signs too: a ball
    around 0 may round to -0.0 at one end and 0.0 at the other)."""
    low, high = float(ball.lower()), float(ball.upper())
    if low == high and math.copysign(1, low) == math.copysign(1, high) and math.isfinite(low):
        return low
    return None


def _certified_table(terms, trees, exact_beta: Fraction, num_pieces: int) -> np.ndarray:
    r"""The correctly rounded $b_k(\tau)$, $0 \le k <$ `num_pieces`; see `coefficient_table`."""
    beta_q = fmpq(exact_beta.numerator, exact_beta.denominator)
    log_beta = _log_abs(beta_q) if exact_beta else -math.inf
    table = np.empty((num_pieces, len(trees)))
    columns = []  # (tree index, steady, {(j, m): c}) of the trees with a transient
    for i, tree in enumerate(trees):
        values = {jm: _value_at(c, beta_q) for jm, c in terms[tree].items()}
        steady = values.pop((0, 0), fmpq(0))
        transient = {jm: c for jm, c in values.items() if c != 0}
        table[:, i] = _to_float(steady)
        if transient:
            columns.append((i, steady, transient))
    if not columns:
        return table
    rows = _transient_rows(columns, beta_q, log_beta, num_pieces)
    pairs = sorted({jm for _, _, transient in columns for jm in transient} | {(0, 0)})
    # Working precision: a bound on the largest term |c| k^m beta^(jk) <= |c| k^m (the
    # cancellation to undo) plus 128 bits.
    log_terms = [
        _log_abs(c) + m * math.log(max(rows - 1, 1))
        for _, _, transient in columns
        for (_, m), c in transient.items()
    ]
    prec = 128 + max(0, math.ceil(max(log_terms) / math.log(2)))
    old_prec = ctx.prec
    ctx.prec = prec
    try:
        b = arb(beta_q)
        step = {j: b**j for j in {j for j, _ in pairs}}
        power = dict.fromkeys(step, arb(1))
        basis = []  # basis[k][p] = k^m beta^(jk) for pairs[p] = (j, m)
        for k in range(rows):
            basis.append([power[j] * k**m if m else power[j] for j, m in pairs])
            for j in power:
                power[j] = power[j] * step[j]
        coeffs = [
            [arb(steady) if jm == (0, 0) else arb(t.get(jm, 0)) for _, steady, t in columns]
            for jm in pairs
        ]
        values = (arb_mat(basis) * arb_mat(coeffs)).entries()
        width = len(columns)
        for col, (i, steady, transient) in enumerate(columns):
            for k in range(rows):
                value = _decides(values[k * width + col])
                if value is None:  # an exact zero or a near-tie: decide in exact rationals
                    exact = steady + sum(
                        c * k**m * beta_q ** (j * k) for (j, m), c in transient.items()
                    )
                    value = _to_float(exact)
                table[k, i] = value
    finally:
        ctx.prec = old_prec
    return table


def _transient_rows(columns, beta: fmpq, log_beta: float, num_pieces: int) -> int:
    r"""The number $K$ of pieces computed term by term; from $K$ on the steady state is exact.

    $K$ is the first piece where every transient term $|c_{j,m}| k^m \beta^{jk}$ is below
    $2^{-64}$ of the steady state and decreasing in $k$ (for $k > m / (j \log(1/\beta))$).  The
    tail is then checked rigorously: the sum of the terms at $K$ bounds it for all $k \ge K$, and
    the steady state plus or minus that bound must round to one float64; if not, $K$ doubles.
    """
    if log_beta == -math.inf:
        return 1  # beta = 0: beta^(jk) = 0 for k >= 1, so from k = 1 on only the steady state
    monotone = max(m / (j * -log_beta) for _, _, t in columns for (j, m) in t)
    threshold = [
        (_log_abs(steady) if steady else 0.0) - 64 * math.log(2) - math.log(len(t))
        for _, steady, t in columns
    ]

    def small_at(k: int) -> bool:
        return all(
            _log_abs(c) + m * math.log(max(k, 1)) + j * k * log_beta < limit
            for (_, _, t), limit in zip(columns, threshold)
            for (j, m), c in t.items()
        )

    rows = max(1, math.ceil(monotone) + 1)
    while rows < num_pieces and not small_at(rows):
        rows *= 2
    if rows >= num_pieces:
        return num_pieces
    low, high = max(1, rows // 2, math.ceil(monotone) + 1), rows
    while low < high:
        mid = (low + high) // 2
        if small_at(mid):
            high = mid
        else:
            low = mid + 1
    rows = low
    while rows < num_pieces and not _tail_rounds_to_steady(columns, beta, rows):
        rows *= 2
    return min(rows, num_pieces)


def _tail_rounds_to_steady(columns, beta: fmpq, k: int) -> bool:
    """Whether steady ± (sum of the transient terms at `k`) rounds to float(steady) in every
    column; with the terms decreasing from `k` on, that covers every later piece."""
    old_prec = ctx.prec
    ctx.prec = 128
    try:
        b = arb(beta)
        for _, steady, transient in columns:
            bound = arb(0)
            for (j, m), c in transient.items():
                bound += abs(arb(c)) * arb(k) ** m * b ** (j * k)
            ball = arb(steady) + arb(0, bound.abs_upper())
            if _decides(ball) != _to_float(steady):
                return False
        return True
    finally:
        ctx.prec = old_prec


def derive_counter_terms(
    order: int, method: str, *, nu=None, progress=None, workers: int | None = None
) -> CounterTerms:
    """Derive without any cache: the closed form (hb, nag, nesterov, qhm at `nu`), Euler's for gd.

    `progress`: report each stage on stderr once the derivation has run for a second (``True``),
    never (``False``), or when stderr is a terminal (``None``).

    `workers`: processes sharing the trees of the top order; ``None`` for the default of
    `hbflow._parallel.derive_workers` (``$HBFLOW_DERIVE_WORKERS``, else one per core from
    order 9 on).  The result does not depend on it.
    """
    check_order(order)
    check_method(method)
    nu = parse_nu(nu, method)
    report = _DeriveProgress(method if nu is None else f"{method} nu={nu}", order, progress)
    if method == "gd":
        values = _derive.coefficients_at(order, 0, method="gd", as_sympy=False)
        terms = {t: {(0, 0): cast(RationalFunction, v)} for t, v in values.items()}
        return CounterTerms("gd", order, terms)
    closed = _derive.closed_form_characters(order, method, report, nu=nu, workers=workers)
    report("exact coefficients")
    terms = {
        tree: {
            (j, m): RationalFunction.from_frac(c)
            for j, by_m in parts.items()
            for m, c in by_m.items()
        }
        for tree, parts in closed.items()
    }
    report.done()
    return CounterTerms(method, order, terms, nu=nu)


#: Progress lines start once a derivation or a rendering has run this long (seconds).
PROGRESS_AFTER_S = 1.0


class _DeriveProgress:
    """Stage lines on stderr, ``hbflow: deriving hb order 9: … (12.3 s)``, once a derivation has
    taken more than a second; silent for quick ones and when not enabled."""

    def __init__(self, method: str, order: int, enabled):
        self.name = f"{method} order {order}"
        self.enabled = _stderr_is_terminal() if enabled is None else bool(enabled)
        self.start = time.perf_counter()
        self.shown = False

    def __call__(self, stage: str) -> None:
        self._print(stage)

    def done(self) -> None:
        if self.shown:
            self._print("done")

    def _print(self, stage: str) -> None:
        elapsed = time.perf_counter() - self.start
        if self.enabled and elapsed >= PROGRESS_AFTER_S:
            self.shown = True
            print(
                f"hbflow: deriving {self.name}: {stage} ({elapsed:.1f} s)",
                file=sys.stderr,
                flush=True,
            )


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def cache_dirs() -> list[Path]:
    """The directories searched for cache files: the shipped data, then the user cache.

    ``$HBFLOW_CACHE_DIR`` names the user cache; unset or empty, it is ``~/.cache/hbflow``.
    """
    return [_PACKAGE_DATA, user_cache()]


def _cache_stem(method: str, nu: Fraction | None = None) -> str:
    # One file per rational nu for qhm: counter_terms_qhm_nu7-10_order8.json is nu = 7/10.
    if nu is None:
        return f"counter_terms_{method}"
    return f"counter_terms_{method}_nu{nu.numerator}-{nu.denominator}"


def cache_filename(
    method: str, order: int, nu: Fraction | None = None, *, compressed: bool = False
) -> str:
    return f"{_cache_stem(method, nu)}_order{order}.json" + (".gz" if compressed else "")


def check_file_data(data: Any, kind: str, format: str, version: str) -> None:
    """Check a cache file's object: its format, the derivation version and the checksum.

    **Raises:** `ValueError` saying what does not match, including a single edited number.
    """
    if not isinstance(data, dict):
        raise ValueError(f"not a {kind} file (a JSON {type(data).__name__})")
    if data.get("format") != format:
        raise ValueError(f"not a {kind} file (format {data.get('format')!r})")
    if data.get("derivation_version") != version:
        raise ValueError(
            f"written by derivation version {data.get('derivation_version')!r}, "
            f"this code is {version!r}"
        )
    if data.get("checksum") != _checksum(data):
        raise ValueError("checksum mismatch: the file was edited or damaged")


def _checksum(data: dict) -> str:
    """SHA-256 of the canonical JSON of everything in a cache file but the checksum itself."""
    payload = {key: value for key, value in data.items() if key != "checksum"}
    text = json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def write_cache(ct: CounterTerms, directory: Path, *, compressed: bool = False) -> Path:
    """Write `ct` to `directory` (gzip-compressed if asked), atomically.

    Each writer writes its own temporary file and renames it over the target, so concurrent
    writers never see or clobber one another's partial files.
    """
    path = directory / cache_filename(ct.method, ct.order, ct.nu, compressed=compressed)
    raw = json.dumps(ct.to_data(), separators=(",", ":")).encode()
    if compressed:
        raw = gzip.compress(raw, compresslevel=9, mtime=0)
    write_atomically(path, raw, mode=0o644)  # a cache file is ordinary data
    return path


def read_cache(
    path: Path, order: int | None = None, *, file_order: int | None = None
) -> CounterTerms:
    """Load one cache file, verifying its format, derivation version and checksum.

    With `order`, only the trees up to that order are built (the file is checked whole);
    with `file_order`, the file must hold exactly that order (its name says so).

    **Raises:** `ValueError` (or `OSError`) for a file that is damaged, edited, of another
    version or of the wrong shape.
    """
    raw = path.read_bytes()
    # The orders 1, 2, … of one study (HBF1, HBF2, …) all read one stored file: its contents are
    # parsed and checked once, keyed by their hash, so an edited file is read again; each order
    # builds only its own trees.
    key = (path.name.endswith(".gz"), hashlib.sha256(raw).digest())
    data = _READ.get(key)
    if data is None:
        if path.name.endswith(".gz"):
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError) as err:
                raise ValueError(f"not a gzip file ({err})") from None
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"not JSON ({err})") from None
        check_file_data(data, "counter-terms", _FORMAT, DERIVATION_VERSION)
    if file_order is not None and data.get("order") != file_order:
        raise ValueError("file name and contents disagree")
    try:
        ct = CounterTerms._from_checked(data, order)
    except (KeyError, TypeError, AttributeError, IndexError) as err:
        raise ValueError(f"malformed counter-terms data ({type(err).__name__}: {err})") from None
    if key not in _READ:
        if len(_READ) >= 16:
            _READ.pop(next(iter(_READ)))
        _READ[key] = data
    return ct


#: The checked contents of files read, by (compressed, SHA-256 of the file's bytes).
_READ: dict[tuple[bool, bytes], dict] = {}


def _cache_files(directory: Path, method: str, nu: Fraction | None = None):
    """``(order, path)`` of the cache files of `method` (at `nu`) in `directory`, plain first."""
    found = []
    stem = _cache_stem(method, nu)
    for pattern in (f"{stem}_order*.json", f"{stem}_order*.json.gz"):
        for path in directory.glob(pattern):
            stem = path.name.removesuffix(".gz").removesuffix(".json")
            try:
                found.append((int(stem.rsplit("order", 1)[1]), path.name.endswith(".gz"), path))
            except ValueError:
                continue
    return [(order, path) for order, _, path in sorted(found)]


def _load_from_caches(order: int, method: str, nu: Fraction | None = None) -> CounterTerms | None:
    for directory in cache_dirs():
        if not directory.is_dir():
            continue
        for stored_order, path in _cache_files(directory, method, nu):
            if stored_order < order:
                continue
            try:
                ct = read_cache(path, order, file_order=stored_order)
                if ct.method != method or ct.nu != nu:
                    raise ValueError("file name and contents disagree")
            except (OSError, ValueError) as err:
                removed = ""
                if directory != _PACKAGE_DATA:
                    try:
                        path.unlink(missing_ok=True)  # regenerated below, at the order asked for
                        removed = " (removed)"
                    except OSError:  # a read-only cache: derive in memory, leave the file
                        removed = " (could not remove it)"
                warnings.warn(
                    f"ignoring counter-terms cache {path}{removed}: {err}; deriving again",
                    RuntimeWarning,
                    stacklevel=4,
                )
                continue
            return ct
    return None


def counter_terms(
    order: int,
    method: str = "hb",
    *,
    nu=None,
    use_cache: bool = True,
    progress: bool | None = None,
) -> CounterTerms:
    r"""The exact counter terms $b_k(\tau)$, $|\tau| \le$ `order`, of `method`.

    **Arguments:**

    - `order`: an integer $\ge 1$; the HBF of order $\alpha$ needs `order` $= \alpha$.
    - `method`: ``"hb"`` (heavy ball), ``"nag"`` (Nesterov), ``"gd"`` (gradient descent),
      ``"nesterov"`` (Nesterov momentum as optax and PyTorch run it) or ``"qhm"``
      (quasi-hyperbolic momentum); see docs/theory.md#library-momentum.
    - `nu`: ν of ``"qhm"`` (required there, refused elsewhere), read exactly as a rational:
      ``0.7`` is $7/10$.  The coefficients are derived, and cached, for that ν, with β symbolic.
    - `use_cache`: load from and save to the cache files (see module docstring).
    - `progress`: when the terms must be derived, report the stages on stderr once it has
      taken a second: ``True``, ``False``, or ``None`` (default) for "when stderr is a terminal".

    **Returns:** a `CounterTerms`.

    **Raises:** `ValueError` for an order < 1, an unknown method, or a ν outside $[0, 1]$,
    missing for ``"qhm"`` or given to another method.
    """
    check_order(order)
    check_method(method)
    nu = parse_nu(nu, method)
    global _progress
    _progress = progress
    try:
        return _counter_terms(order, method, bool(use_cache), nu)
    finally:
        _progress = None


# How a derivation triggered by `counter_terms` reports progress; not part of the memo key.
_progress: bool | None = None


@functools.cache
def _counter_terms(
    order: int, method: str, use_cache: bool, nu: Fraction | None = None
) -> CounterTerms:
    if use_cache:
        ct = _load_from_caches(order, method, nu)
        if ct is not None:
            return ct
    ct = derive_counter_terms(order, method, nu=nu, progress=_progress)
    if use_cache:
        try:
            write_cache(ct, cache_dirs()[-1])
        except OSError as err:
            warnings.warn(
                f"could not write the counter-terms cache: {err}", RuntimeWarning, stacklevel=2
            )
    return ct
