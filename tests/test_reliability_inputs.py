"""Inputs that used to give misleading answers: β types, float32 losses, NaN losses, round-off."""

from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax_log import compilations

import hbflow
from hbflow._compare import _set_up
from hbflow._validate import check_loss_precision


def _quadratic(u):
    return 0.5 * jnp.sum(u**2)


U0 = jnp.array([1.0, -0.5])


def _set_up_beta(beta):
    return _set_up(
        _quadratic,
        U0,
        method="hb",
        beta=beta,
        etas=[0.2, 0.1],
        horizon=0.4,
        models=["gf"],
        rtol=1e-10,
        atol=1e-10,
        solver=None,
        max_steps=16,
        solver_check=False,
        progress=None,
        nu=None,
    ).beta


@pytest.mark.parametrize("beta", ["0.5", Fraction(1, 2), np.float64(0.5), jnp.asarray(0.5)])
def test_one_beta_rule_accepts_the_same_values_in_compare_and_iterates(beta):
    assert _set_up_beta(beta) == 0.5
    us = hbflow.iterates(_quadratic, U0, method="hb", beta=beta, eta=0.1, num_steps=3)
    expected = hbflow.iterates(_quadratic, U0, method="hb", beta=0.5, eta=0.1, num_steps=3)
    np.testing.assert_array_equal(np.asarray(us), np.asarray(expected))


@pytest.mark.parametrize("beta", [False, True, np.False_, None, "half", "1.5", jnp.asarray(False)])
def test_one_beta_rule_refuses_the_same_values_in_compare_and_iterates(beta):
    with pytest.raises(ValueError, match="beta"):
        _set_up_beta(beta)
    with pytest.raises(ValueError, match="beta"):
        hbflow.iterates(_quadratic, U0, method="hb", beta=beta, eta=0.1, num_steps=3)


def _float32_inside(u):
    return jnp.sum(u.astype(jnp.float32) ** 2).astype(jnp.float64)


def test_a_loss_computing_in_float32_is_named_before_solving():
    with pytest.raises(ValueError, match="float32"):
        hbflow.solve_model("gf", _float32_inside, U0, method="hb", beta=0.5, eta=0.1, num_pieces=2)
    with pytest.raises(ValueError, match="float32"):
        hbflow.compare(_float32_inside, U0, etas=[0.2, 0.1], horizon=0.4, models=["gf"])


def test_float32_inside_a_nested_jit_is_found_and_float64_passes():
    inner = jax.jit(lambda v: v.astype(jnp.float16) * 2)

    def nested(u):
        return jnp.sum(inner(u)).astype(jnp.float64)

    with pytest.raises(ValueError, match="float16"):
        check_loss_precision(nested, U0)
    check_loss_precision(_quadratic, U0)  # float64 throughout: no error


def test_a_loss_leaving_its_domain_is_reported_as_nan_not_curvature():
    # sqrt has negative curvature; gd with eta = 1 from u = 1 steps to u_1 = 0.5 and then to
    # u_2 = 0.5 - 1/(2 sqrt(0.5)) < 0, where sqrt is NaN: u_3 is the first NaN iterate.
    def loss(u):
        return jnp.sum(jnp.sqrt(u))

    with pytest.raises(hbflow.DivergenceError) as info:
        hbflow.iterates(loss, jnp.array([1.0]), method="gd", beta=0.0, eta=1.0, num_steps=5)
    message = str(info.value)
    assert info.value.step == 3
    assert "loss became NaN at step 2" in message
    assert "curves down" not in message


def test_errors_at_round_off_level_are_flagged():
    # A loss with zero gradient: iterates and flow stay at u0, and every error is round-off.
    def flat(u):
        return 0.0 * jnp.sum(u**2)

    study = hbflow.compare(flat, U0, etas=[0.2, 0.1], horizon=0.4, models=["gf"])
    assert np.all(study.models["gf"].max_errors <= 1e-14)
    assert np.isnan(study.models["gf"].slope)
    assert any("round-off" in w and w.startswith("gf:") for w in study.warnings)


def test_large_errors_are_not_flagged_as_round_off():
    study = hbflow.compare(_quadratic, U0, etas=[0.2, 0.1], horizon=0.4, models=["gf"])
    assert not any("round-off" in w for w in study.warnings)


def test_numpy_starts_reach_the_device_without_a_compiled_program():
    # `jnp.asarray` of a NumPy array compiles a program per shape; a start given as NumPy (or
    # as a list of numbers, or on the command line) is converted on the host and copied instead.
    from hbflow._validate import as_float_tree

    rng = np.random.default_rng(0)
    f64 = rng.normal(size=(13, 11))
    f32 = rng.normal(size=(11, 13)).astype(np.float32)
    numbers = [[1, 2, 3]] * 17
    with compilations() as compiled:
        tree = as_float_tree({"a": f64, "b": f32, "c": np.arange(19)}, "x0")
        all64 = as_float_tree(f32, "x0", float64=True)
        listed = as_float_tree(numbers, "x0")
    assert compiled == []
    leaves = [*jax.tree_util.tree_leaves(tree), all64, listed]
    assert all(isinstance(x, jax.Array) and not x.weak_type for x in leaves)
    assert [x.dtype for x in leaves] == [jnp.float64, jnp.float32, *[jnp.float64] * 3]
    np.testing.assert_array_equal(tree["a"], f64)
    np.testing.assert_array_equal(tree["b"], f32)
    np.testing.assert_array_equal(tree["c"], np.arange(19.0))
    np.testing.assert_array_equal(all64, f32.astype(np.float64))
    np.testing.assert_array_equal(listed, np.array(numbers, dtype=np.float64))
    with pytest.raises(ValueError, match=r"x0\['a'\] must be real"):
        as_float_tree({"a": f64 + 1j}, "x0")
    with pytest.raises(ValueError, match="x0 must be finite"):
        as_float_tree(np.array([1.0, np.nan]), "x0")
    with pytest.raises(ValueError, match="must be an array of real numbers, got dtype <U1"):
        as_float_tree(np.array(["a"]), "x0")
