"""Continuous models on quadratics against their exact matrix-exponential solutions, and checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.linalg import expm

import hbflow
from hbflow._integrate import solve_model
from hbflow._models import (
    GradientFlow,
    HeavyBallFlow,
    KovachkiStuartODE,
    MomentumGradientFlow,
    RescaledGradientFlow,
    SteadyStateFlow,
    model_from_name,
)

Q = jnp.array([[2.0, 0.6], [0.6, 1.0]])
U0 = jnp.array([1.0, 0.7])
ETA = 0.05
K = 12


def quadratic(u):
    return 0.5 * u @ Q @ u


def tall_field_matrix(row, trees, eta):
    r"""On L = ½u·Qu only tall trees survive: F(tall_n) = (-Q)^n u, σ = 1
    (docs/theory.md#quadratic-losses)."""
    A = np.zeros((2, 2))
    for c, t in zip(row, trees):
        if t.level_sequence == tuple(range(1, t.order + 1)):
            A += eta ** (t.order - 1) * c * np.linalg.matrix_power(-np.asarray(Q), t.order)
    return A


def exact(model, method, beta, eta, num_pieces):
    """u(t_k), k = 0..K, by matrix exponentials, piece by piece."""
    table = model.coefficients(method, beta, num_pieces)
    if isinstance(model, (KovachkiStuartODE, MomentumGradientFlow)):
        # The mass from the papers, not from the model: Kovachki & Stuart (2021) eta (1+beta)/2
        # for HB and eta (1-beta+2beta^2)/2 for NAG; Papazov et al. (2024) eta, in the time k eta.
        if isinstance(model, MomentumGradientFlow):
            m = eta
        elif method == "nag":
            m = eta * (1 - beta + 2 * beta**2) / 2
        else:
            m = eta * (1 + beta) / 2
        A = np.block(
            [[np.zeros((2, 2)), np.eye(2)], [-np.asarray(Q) / m, -(1 - beta) / m * np.eye(2)]]
        )
        y = np.concatenate([U0, np.zeros(2)])
        P = np.asarray(expm(eta * A))
        out = [y]
        for _ in range(num_pieces):
            out.append(P @ out[-1])
        return np.stack(out)[:, :2]
    if isinstance(model, GradientFlow):
        mats = [-np.asarray(Q)] * num_pieces
    elif isinstance(model, RescaledGradientFlow):
        mats = [-np.asarray(Q) / (1 - beta)] * num_pieces
    else:
        mats = [tall_field_matrix(row, model.trees, eta) for row in table]
    out = [np.asarray(U0)]
    for A in mats:
        out.append(np.asarray(expm(eta * jnp.asarray(A))) @ out[-1])
    return np.stack(out)


CASES = [
    (GradientFlow(), "gd", 0.0),
    (RescaledGradientFlow(), "hb", 0.9),
    (KovachkiStuartODE(), "hb", 0.9),
    (KovachkiStuartODE(), "nag", 0.9),
    (MomentumGradientFlow(), "hb", 0.9),
    (SteadyStateFlow(3), "hb", 0.9),
    (HeavyBallFlow(1), "hb", 0.9),
    (HeavyBallFlow(3), "hb", 0.9),
    (HeavyBallFlow(4), "nag", 0.7),
    (HeavyBallFlow(3), "gd", 0.0),
    (HeavyBallFlow(3), "hb", 0.99),
    (SteadyStateFlow(2), "nag", 0.99),
]


@pytest.mark.parametrize("model,method,beta", CASES, ids=lambda x: getattr(x, "name", str(x)))
def test_linear_models_equal_matrix_exponential(model, method, beta):
    eta = ETA if beta < 0.95 else ETA / 20  # keep eta*|Q|/(1-beta)^2 moderate at beta = 0.99
    sol = solve_model(model, quadratic, U0, method=method, beta=beta, eta=eta, num_pieces=K)
    want = exact(model, method, beta, eta, K)
    assert sol.us.shape == (K + 1, 2)
    np.testing.assert_allclose(sol.us, want, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(sol.ts, np.arange(K + 1) * eta)
    # the model moved: the comparison is not trivially between two copies of u0
    assert np.linalg.norm(want[-1] - want[0]) > 1e-3


def test_hbf_field_changes_at_every_grid_time():
    # With a single (first-piece) field the answer differs: the pieces matter.
    model = HeavyBallFlow(2)
    sol = solve_model(model, quadratic, U0, method="hb", beta=0.9, eta=ETA, num_pieces=K)
    table = model.coefficients("hb", 0.9, K)
    frozen = np.broadcast_to(table[0], table.shape)
    sol0 = solve_model(
        model, quadratic, U0, method="hb", beta=0.9, eta=ETA, num_pieces=K, table=frozen
    )
    assert np.abs(np.asarray(sol.us) - np.asarray(sol0.us)).max() > 1e-2
    # b_k(•) = (1 - β^{k+1})/(1 - β) (docs/theory.md#heavy-ball-flow)
    k = np.arange(K)
    np.testing.assert_allclose(table[:, 0], (1 - 0.9 ** (k + 1)) / 0.1, rtol=1e-13)


def test_masked_pieces_match_unpadded_solve():
    model = HeavyBallFlow(2)
    a = solve_model(model, quadratic, U0, method="hb", beta=0.5, eta=ETA, num_pieces=5)
    b = solve_model(
        model, quadratic, U0, method="hb", beta=0.5, eta=ETA, num_pieces=5, max_pieces=K
    )
    assert b.us.shape == (6, 2) and b.num_steps.shape == (5,)
    np.testing.assert_allclose(a.us, b.us, rtol=1e-14, atol=1e-15)


def test_pytree_start():
    def loss(p):
        return quadratic(jnp.concatenate([p["x"], p["y"]]))

    p0 = {"x": U0[:1], "y": U0[1:]}
    sol = solve_model(
        RescaledGradientFlow(), loss, p0, method="hb", beta=0.5, eta=ETA, num_pieces=4
    )
    flat = solve_model(
        RescaledGradientFlow(), quadratic, U0, method="hb", beta=0.5, eta=ETA, num_pieces=4
    )
    np.testing.assert_allclose(sol.us["x"][:, 0], flat.us[:, 0], rtol=1e-13)
    np.testing.assert_allclose(sol.us["y"][:, 0], flat.us[:, 1], rtol=1e-13)


def test_stated_orders():
    assert GradientFlow().order("gd", 0.0) == 1
    assert GradientFlow().order("hb", 0.9) == 0
    assert RescaledGradientFlow().order("hb", 0.9) == 1
    assert KovachkiStuartODE().order("hb", 0.9) == 1
    assert MomentumGradientFlow().order("nag", 0.5) == 1
    for alpha in (1, 2, 5):
        assert HeavyBallFlow(alpha).order("hb", 0.9) == alpha
        assert SteadyStateFlow(alpha).order("hb", 0.9) == 1  # misses the transient
        assert SteadyStateFlow(alpha).order("gd", 0.0) == alpha  # no transient for GD


@pytest.mark.usefixtures("without_runtime_type_checks")  # wrong types on purpose
def test_names_round_trip_and_errors():
    for name in ("gf", "rgf", "ks2", "mgf", "hbf1", "hbf7", "steady2"):
        assert model_from_name(name).name == name
    assert model_from_name("hbf12") == HeavyBallFlow(12)
    for bad in ("hbf0", "steady", "rk4", "hbf-1"):
        with pytest.raises(ValueError, match=r"unknown model.*hbfN.*steadyN.*rgf"):
            model_from_name(bad)
    with pytest.raises(ValueError, match="alpha"):
        HeavyBallFlow(0)
    with pytest.raises(ValueError, match="alpha"):
        SteadyStateFlow(2.5)


def test_models_are_reexported():
    for name in (
        "HeavyBallFlow",
        "SteadyStateFlow",
        "RescaledGradientFlow",
        "GradientFlow",
        "KovachkiStuartODE",
        "MomentumGradientFlow",
        "AbstractContinuousModel",
        "solve_model",
        "compare",
    ):
        assert hasattr(hbflow, name), name


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"beta": 1.0}, r"beta must be in \[0, 1\)"),
        ({"beta": -0.1}, r"beta must be in \[0, 1\)"),
        ({"eta": 0.0}, r"eta must be a finite number > 0"),
        ({"eta": float("nan")}, r"eta must be a finite number > 0"),
        ({"num_pieces": 0}, r"num_pieces must be an integer >= 1"),
        ({"method": "adam"}, r"method must be one of hb, nag, gd, nesterov, qhm"),
        ({"method": "gd", "beta": 0.5}, r"method 'gd' is the case beta = 0"),
        ({"rtol": -1.0}, r"rtol must be a finite number > 0"),
    ],
)
@pytest.mark.usefixtures("without_runtime_type_checks")  # wrong types on purpose
def test_bad_arguments(kwargs, match):
    args = dict(method="hb", beta=0.5, eta=ETA, num_pieces=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        solve_model(RescaledGradientFlow(), quadratic, U0, **args)


def test_failed_solve_names_model_and_piece():
    with pytest.raises(RuntimeError, match=r"model hbf2: the solve failed on piece k=0.*max_steps"):
        solve_model(
            HeavyBallFlow(2),
            quadratic,
            U0,
            method="hb",
            beta=0.5,
            eta=ETA,
            num_pieces=3,
            max_steps=1,
            rtol=1e-14,
            atol=1e-14,
        )


def test_blow_up_is_reported():
    # L = -u^4/4: the rescaled flow u' = 2u^3 blows up at t = 1/4, inside [0, 1].
    with pytest.raises(RuntimeError, match=r"model rgf"):
        solve_model(
            RescaledGradientFlow(),
            lambda u: -jnp.sum(u**4) / 4,
            jnp.array([1.0]),
            method="hb",
            beta=0.5,
            eta=0.2,
            num_pieces=5,
        )
    assert jax.config.jax_enable_x64


MODEL_CLASSES = [
    GradientFlow,
    RescaledGradientFlow,
    KovachkiStuartODE,
    MomentumGradientFlow,
    SteadyStateFlow,
    HeavyBallFlow,
]
MODEL_METHODS = ("name", "order", "coefficients", "initial_state", "vector_field", "position")


@pytest.mark.parametrize("cls", MODEL_CLASSES, ids=lambda c: c.__name__)
def test_models_are_abstract_or_final(cls):
    # equinox's pattern: each method has exactly one concrete definition along the MRO, and
    # every concrete definition lives in a final class or overrides only an abstract one.
    for attr in MODEL_METHODS:
        concrete = [
            k.__name__
            for k in cls.__mro__
            if attr in k.__dict__ and not getattr(k.__dict__[attr], "__isabstractmethod__", False)
        ]
        assert len(concrete) == 1, (cls.__name__, attr, concrete)
    for attr in MODEL_METHODS[1:]:
        assert getattr(hbflow.AbstractContinuousModel, attr).__isabstractmethod__


def test_a_model_without_a_name_or_field_cannot_be_made():
    class Nameless(hbflow.AbstractFirstOrderModel):
        def order(self, method, beta):
            return 1

        def coefficients(self, method, beta, num_pieces):
            return np.zeros((num_pieces, 0))

        def vector_field(self, g, t, y, eta, beta, row):
            return g(y)

    with pytest.raises(TypeError, match="name"):
        Nameless()

    class NoField(hbflow.AbstractFirstOrderModel):
        name = "nofield"

        def order(self, method, beta):
            return 1

        def coefficients(self, method, beta, num_pieces):
            return np.zeros((num_pieces, 0))

    with pytest.raises(TypeError, match="vector_field"):
        NoField()
