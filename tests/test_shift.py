"""The exact shifted start psi = lim a_k · exp(-k b_inf) (docs/theory.md#shifted-start)."""

import json
from fractions import Fraction

import numpy as np
import pytest
import sympy
from sympy.polys.domains import QQ

from hbflow import Tree, counter_terms, shifted_start, trees_up_to
from hbflow._bseries import Character, compose, exp
from hbflow._derive import _iterate_characters
from hbflow._exppoly import BETA
from hbflow._shift import shifted_exponential_polynomial

LEAF = Tree.leaf()
STEM = Tree.from_level_sequence((1, 2))
b = BETA


def test_first_coefficients_hb_by_hand():
    # a_k(•) = sum_{j<k} gamma_j = k/(1-β) - β(1-β^k)/(1-β)^2 and b_inf(•) = 1/(1-β), so
    # psi(•) = -β/(1-β)^2.  At order 2, a_k([•]) solves x_{k+1} - (1+β)x_k + βx_{k-1} = a_k(•),
    # x_0 = x_1 = 0, whose k-free part is β(2+β)/(1-β)^4 after the k and k² parts cancel
    # against exp(-k b_inf) with b_inf([•]) = -(1+β)/(2(1-β)^3): psi([•]) = β(2+β)/(1-β)^4.
    s = shifted_start(2, "hb", use_cache=False)
    assert sympy.simplify(s.coefficient(LEAF) + b / (1 - b) ** 2) == 0
    assert sympy.simplify(s.coefficient(STEM) - b * (2 + b) / (1 - b) ** 4) == 0


def test_first_coefficient_nesterov_by_hand():
    # optax's Nesterov: v_1 = (1+β) and v_j = βv_{j-1} + 1 (j ≥ 2) in units of -η∇L, so
    # v_j - 1/(1-β) = -β^{j+1}/(1-β) and psi(•) = Σ_j (v_j - v_∞) = -β²/(1-β)².
    s = shifted_start(1, "nesterov", use_cache=False)
    assert sympy.simplify(s.coefficient(LEAF) + b**2 / (1 - b) ** 2) == 0


def test_first_coefficients_nag_by_hand():
    # NAG's leaf is HB's (D(e)(•) = 1 whatever e); at order 2 the forcing gains β γ_{k-1}
    # = β(1 - β^k)/(1-β), which adds -β(1+β)/(1-β)^3 to the k-free part:
    # psi([•]) = β(1+β+β²)/(1-β)^4.
    s = shifted_start(2, "nag", use_cache=False)
    assert sympy.simplify(s.coefficient(LEAF) + b / (1 - b) ** 2) == 0
    assert sympy.simplify(s.coefficient(STEM) - b * (1 + b + b**2) / (1 - b) ** 4) == 0


def test_gd_has_no_shift():
    # GD is a one-step method: a_k = a_1^k = exp(k b_inf), no transient, psi = identity.
    s = shifted_start(4, "gd", use_cache=False)
    assert all(s.coefficient(t) == 0 for t in s.trees)
    assert np.all(s.values(0.0) == 0.0)


@pytest.mark.parametrize("method", ["hb", "nag"])
def test_k_parts_cancel(method):
    # The j = 0 part of a_k · exp(-k b_inf) is free of k: every k^m, m >= 1, is exactly zero,
    # and there are k-dependent terms in the beta^{jk} parts (so the check is not vacuous).
    p = shifted_exponential_polynomial(4, method)
    transient = 0
    for tree, poly in p.items():
        for (m, j), c in poly.terms.items():
            if j == 0:
                assert m == 0, (tree.bracket(), m)
            elif m > 0:
                transient += 1
    assert transient > 0


def _per_k(order, method, beta, k):
    """a_k · exp(-k b_inf) at one integer k and rational β, by the per-k recurrence."""
    ct = counter_terms(order, method)
    for step, ak, _ in _iterate_characters(order, method, beta, k):
        if step == k:
            break
    back = {}
    for t in trees_up_to(order):
        v = ct.steady_state(t, beta)
        back[t] = QQ(-k) * QQ(int(v.p), int(v.q))
    return compose(ak, exp(Character(back, order, 0, QQ.one)))


@pytest.mark.parametrize("method", ["hb", "nag"])
def test_closed_form_matches_per_k_recurrence_at_large_k(method):
    order, beta, k = 4, Fraction(1, 3), 200
    direct = _per_k(order, method, beta, k)
    closed = shifted_exponential_polynomial(order, method)
    psi = shifted_start(order, method, use_cache=False)
    for tree in trees_up_to(order):
        got = Fraction(int(direct[tree].numerator), int(direct[tree].denominator))
        # The full exponential polynomial, evaluated exactly, equals the recurrence exactly ...
        full = Fraction(0)
        for (m, j), c in closed[tree].terms.items():
            num, den = c.coefficients()
            cval = sum(Fraction(n) * beta**i for i, n in enumerate(num)) / sum(
                Fraction(d) * beta**i for i, d in enumerate(den)
            )
            full += cval * k**m * beta ** (j * k)
        assert full == got, tree.bracket()
        # ... and differs from psi only by the beta^k remainder (here < 200^4 3^-200 ~ 1e-86).
        remainder = abs(got - psi[tree](beta))
        assert remainder < Fraction(1, 10**80), (tree.bracket(), float(remainder))


def test_float_bridge_rounds_the_exact_value_once():
    s = shifted_start(3, "hb", use_cache=False)
    beta = 0.9
    exact = Fraction(beta)
    assert np.array_equal(s.values(beta), [float(s[t](exact)) for t in s.trees])
    assert s.values(beta)[0] == pytest.approx(-0.9 / 0.01, rel=1e-15)


def test_cache_round_trip(tmp_path, monkeypatch):
    from hbflow import _counter_terms, _shift

    monkeypatch.setenv("HBFLOW_CACHE_DIR", str(tmp_path))
    # Only the user cache: the shipped order-8 files would answer first.
    monkeypatch.setattr(_counter_terms, "_PACKAGE_DATA", tmp_path / "no-shipped-data")
    _shift._shifted_start.cache_clear()
    first = shifted_start(3, "nag")
    assert (tmp_path / "shifted_start_nag_order3.json").is_file()
    _shift._shifted_start.cache_clear()
    again = shifted_start(2, "nag")  # read from the order-3 file, truncated
    assert all(again[t] == first[t] for t in again.trees)
    _shift._shifted_start.cache_clear()


def test_bad_input():
    with pytest.raises(ValueError, match="order"):
        shifted_start(0, "hb")
    with pytest.raises(ValueError, match="method"):
        shifted_start(2, "adam")
    with pytest.raises(ValueError, match="beta"):
        shifted_start(2, "hb").values(1.0)


def test_edited_cache_file_is_ignored(tmp_path, monkeypatch):
    from hbflow import _counter_terms, _shift

    monkeypatch.setenv("HBFLOW_CACHE_DIR", str(tmp_path))
    # Only the user cache: the shipped order-8 files would answer first.
    monkeypatch.setattr(_counter_terms, "_PACKAGE_DATA", tmp_path / "no-shipped-data")
    _shift._shifted_start.cache_clear()
    good = shifted_start(2, "hb")
    path = tmp_path / "shifted_start_hb_order2.json"
    data = json.loads(path.read_text())
    data["trees"][0]["psi"] = [["0", "1"], ["1"]]  # psi(•) = beta: a wrong value
    path.write_text(json.dumps(data))
    _shift._shifted_start.cache_clear()
    with pytest.warns(RuntimeWarning, match="checksum"):
        again = shifted_start(2, "hb")
    assert all(again[t] == good[t] for t in good.trees)
    _shift._shifted_start.cache_clear()


def test_shipped_shifted_starts_match_a_fresh_derivation():
    # The files in hbflow/_data are read with their version and checksum; orders 1..3 of each
    # must equal the derivation from scratch.
    from hbflow import _shift
    from hbflow._counter_terms import _PACKAGE_DATA

    shipped = sorted(_PACKAGE_DATA.glob("shifted_start_*.json"))
    assert {p.name.split("_")[2] for p in shipped} == {"hb", "nag", "gd"}
    for path in shipped:
        start = _shift.ShiftedStart.from_data(json.loads(path.read_text()))
        fresh = _shift._derive_shift(3, start.method)
        assert all(start[t] == fresh[t] for t in fresh)
