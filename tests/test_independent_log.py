r"""The closed form against a Taylor oracle that shares no code with the Butcher-group algebra.

The closed form and the per-k recurrence both take `log` of a composition of characters, so they
share `Character`, `compose`, `inverse` and `log`.  Here nothing of that is used: for a scalar
ODE y' = g(y) with symbolic derivatives d_n = g^(n)(y0), the iterates u_k are expanded in powers
of eta directly from the method, and the field of piece k,
f_k = sum_tau eta^(|tau|-1) b_k(tau)/sigma(tau) F(tau), with b_k read from the closed form, is
flowed for a time eta by its Lie series sum_n eta^n/n! (f_k d/dz)^n z (Hairer, Lubich & Wanner,
Geometric Numerical Integration, §IX.1).  Its time-eta flow must take u_k to u_{k+1} up to
O(eta^(N+1)): that is the defining property of b_k = log(a_k^{-1} a_{k+1}).  For gradient
descent it is an independent check of the whole modified equation of explicit Euler to order 5.
"""

from fractions import Fraction
from math import factorial

import pytest
import sympy

from hbflow import counter_terms, trees_up_to

N = 5
H = sympy.Symbol("eta")
D = sympy.symbols(f"d0:{N + 2}")  # d_n = g^(n) at the expansion point
GENS = (H, *D)


def poly(expr) -> sympy.Poly:
    return sympy.Poly(expr, *GENS, domain="QQ")


def truncate(p: sympy.Poly, degree: int = N) -> sympy.Poly:
    """Drop the powers of eta above `degree`."""
    return sympy.Poly.from_dict({m: c for m, c in p.terms() if m[0] <= degree}, *GENS, domain="QQ")


def d_dy(p: sympy.Poly) -> sympy.Poly:
    """d/dy of a function of y written through d_n = g^(n)(y): d(d_n)/dy = d_(n+1)."""
    out = poly(0)
    for n in range(N + 1):
        out += p.diff(D[n]) * poly(D[n + 1])
    return out


def taylor_at(p: sympy.Poly, delta: sympy.Poly) -> sympy.Poly:
    """p(y + delta) = sum_m p^(m)(y) delta^m / m!, for delta = O(eta)."""
    out, derivative, power = poly(0), p, poly(1)
    for m in range(N + 1):
        out = truncate(out + derivative * power * sympy.Rational(1, factorial(m)))
        derivative, power = d_dy(derivative), truncate(power * delta)
    return out


def iterate_offsets(method, beta, k_max):
    """delta_k = u_k - y0, k = 0..k_max+1, for u_{k+1} = u_k + beta (u_k - u_{k-1})
    + eta g(u_k + a (u_k - u_{k-1})) from rest, with g(y0 + x) expanded in x."""
    a = beta if method == "nag" else 0
    g = poly(D[0])
    prev = cur = poly(0)
    out = [cur]
    for _ in range(k_max + 1):
        look = cur + (cur - prev) * a
        nxt = truncate(cur + (cur - prev) * beta + poly(H) * taylor_at(g, look))
        prev, cur = cur, nxt
        out.append(cur)
    return out


def scalar_differential(tree) -> sympy.Poly:
    """F(tau) for a scalar ODE: g^(m) times the product of F over the m subtrees."""
    out = poly(D[len(tree.children)])
    for child in tree.children:
        out *= scalar_differential(child)
    return out


def flow_offset(b, delta):
    """phi_eta(y0 + delta) - y0 for the field sum_tau eta^(|tau|-1) b(tau)/sigma F(tau)."""
    field = poly(0)
    for tree in trees_up_to(N):
        value = sympy.Rational(b[tree]) / tree.sigma
        field += poly(H ** (tree.order - 1)) * scalar_differential(tree) * value
    # Lie series: phi_eta(z) - z = sum_{n >= 1} eta^n/n! L^n z with L p = f p', L z = f
    out, term = poly(0), field
    for n in range(1, N + 1):
        out += truncate(term, N - n) * poly(H**n) * sympy.Rational(1, factorial(n))
        term = truncate(field * d_dy(term), N - n - 1) if n < N else term
    return delta + taylor_at(out, delta)


@pytest.mark.parametrize(
    "method,beta,ks",
    [("hb", Fraction(1, 3), (0, 1, 4)), ("nag", Fraction(3, 5), (0, 2)), ("gd", 0, (0, 3))],
)
def test_closed_form_flow_maps_each_iterate_to_the_next(method, beta, ks):
    ct = counter_terms(N, method)
    offsets = iterate_offsets(method, beta, max(ks))
    for k in ks:
        b = ct.at(k, beta=beta)
        mismatch = truncate(flow_offset(b, offsets[k]) - offsets[k + 1])
        assert mismatch.is_zero, (k, mismatch.as_expr())


def test_oracle_sees_a_wrong_coefficient():
    # The same oracle with one order-5 coefficient changed must fail, so it resolves order 5.
    ct = counter_terms(N, "hb")
    beta = Fraction(1, 3)
    b = dict(ct.at(2, beta=beta))
    tall = next(t for t in trees_up_to(N) if t.level_sequence == (1, 2, 3, 4, 5))
    b[tall] += sympy.Rational(1, 7)
    offsets = iterate_offsets("hb", beta, 2)
    assert not truncate(flow_offset(b, offsets[2]) - offsets[3]).is_zero
