"""Stored programs: a new process loads the compiled solves instead of tracing them again.

In-process tests switch the store on in a temporary folder and clear its memory in between,
which is what a new process sees.  The subprocess tests run `hbflow order` (and a sweep) cold,
warm, and after the store was deleted while JAX's own cache was kept.
"""

import json
import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hbflow
from hbflow import _programs
from hbflow._integrate import solve_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path):
    """The store on, in a fresh folder; off again afterwards."""
    folder = tmp_path / "programs"
    _programs.set_directory(folder)
    try:
        yield folder
    finally:
        _programs.set_directory(None)


def _new_process(folder):
    """Forget the programs in memory, as a new process would (the files stay)."""
    _programs.set_directory(None)
    _programs.set_directory(folder)


def _quadratic(c):
    scale = np.array([c, 2.0 * c])  # a closed-over constant: part of the loss's identity

    def loss(u):
        return 0.5 * jnp.sum(scale * u**2)

    return loss, scale


def _gd_exact(scale, u0, eta, num_steps):
    # gradient descent on 1/2 sum(s u^2): u_k = (1 - eta s)^k u0, componentwise
    return np.array([(1.0 - eta * scale) ** k * u0 for k in range(num_steps + 1)])


U0 = jnp.array([1.0, -0.5])


class _Traced(logging.Handler):
    """The names of the functions JAX traces for compilation while it is installed."""

    def __init__(self):
        super().__init__()
        self.names = []

    def emit(self, record):
        found = re.match(r"Finished tracing (?:\+ transforming )?(\S+) ", record.getMessage())
        if found:
            self.names.append(found.group(1))

    def __enter__(self):
        logging.getLogger("jax").addHandler(self)
        self._log = jax.log_compiles(True)
        self._log.__enter__()
        return self

    def __exit__(self, *exc):
        self._log.__exit__(*exc)
        logging.getLogger("jax").removeHandler(self)


def test_a_stored_program_is_loaded_and_gives_the_same_numbers(store):
    loss, scale = _quadratic(1.0)
    with _Traced() as cold:
        first = hbflow.iterates(loss, U0, method="gd", beta=0, eta=0.1, num_steps=12)
    assert "flat" in cold.names  # compiled for the store
    files = sorted(store.iterdir())
    assert files, "nothing was stored"
    _new_process(store)
    # The same loss again, built anew, in a "new process": loaded from its file, not traced.
    loss2, _ = _quadratic(1.0)
    with _Traced() as warm:
        second = hbflow.iterates(loss2, U0, method="gd", beta=0, eta=0.1, num_steps=12)
    assert "flat" not in warm.names and "run" not in warm.names
    assert sorted(store.iterdir()) == files  # nothing new compiled
    np.testing.assert_array_equal(np.asarray(first), np.asarray(second))
    np.testing.assert_allclose(second, _gd_exact(scale, np.asarray(U0), 0.1, 12), rtol=1e-14)


def test_losses_that_differ_only_in_a_constant_get_their_own_programs(store):
    # Same code, same shapes, another closed-over array: a key without the constants' values
    # would hand the second loss the first one's program (and its embedded constants).
    for c in (1.0, 3.0):
        _new_process(store)
        loss, scale = _quadratic(c)
        us = hbflow.iterates(loss, U0, method="gd", beta=0, eta=0.1, num_steps=8)
        np.testing.assert_allclose(us, _gd_exact(scale, np.asarray(U0), 0.1, 8), rtol=1e-14)
    assert len({p.name for p in store.iterdir()}) >= 2


def test_static_arguments_and_shapes_are_part_of_the_key(store):
    loss, scale = _quadratic(2.0)
    for num_steps in (5, 9):  # a static argument: the program's output length
        _new_process(store)
        us = hbflow.iterates(loss, U0, method="gd", beta=0, eta=0.05, num_steps=num_steps)
        assert us.shape == (num_steps + 1, 2)
        np.testing.assert_allclose(us, _gd_exact(scale, np.asarray(U0), 0.05, num_steps))
    # The method (hb against gd) is static too: heavy ball from rest differs from gd at step 2.
    _new_process(store)
    hb = hbflow.iterates(loss, U0, method="hb", beta=0.5, eta=0.05, num_steps=5)
    gd = _gd_exact(scale, np.asarray(U0), 0.05, 5)
    assert not np.allclose(hb[2], gd[2])
    v1 = hb[1] - hb[0]
    np.testing.assert_allclose(hb[2], hb[1] + 0.5 * v1 - 0.05 * scale * hb[1], rtol=1e-14)


def test_a_solve_is_stored_and_loaded(store):
    p = hbflow.get_problem("himmelblau-scaled")
    kw = dict(method="hb", beta=0.5, eta=0.05, num_pieces=4)
    first = solve_model("hbf2", p.loss, p.x0, **kw)
    assert any(store.iterdir())
    _new_process(store)
    second = solve_model("hbf2", p.loss, p.x0, **kw)
    np.testing.assert_array_equal(np.asarray(first.us), np.asarray(second.us))
    # Another solver is another program: compiled, stored, and solving the same flow.
    _new_process(store)
    before = {f.name for f in store.iterdir()}
    third = solve_model("hbf2", p.loss, p.x0, solver=diffrax.Dopri5(), **kw)
    assert {f.name for f in store.iterdir()} > before
    np.testing.assert_allclose(np.asarray(third.us), np.asarray(first.us), atol=1e-10)


def test_a_program_whose_inputs_are_all_unused_is_loaded(store):
    # On a quadratic the Hessian does not depend on the point: XLA drops the program's only
    # input, so the devices it runs on must be read from its outputs.
    from hbflow._methods import hessian_estimates

    loss, scale = _quadratic(2.0)
    points = np.array([[1.0, -0.5], [0.3, 0.2]])
    with _Traced() as cold:
        first = hessian_estimates(loss, U0, points)
    assert "flat" in cold.names
    files = {p.name: p.stat().st_mtime_ns for p in store.iterdir()}
    _new_process(store)
    with _Traced() as warm:
        second = hessian_estimates(loss, U0, points)
    assert "flat" not in warm.names  # loaded, not compiled again
    assert {p.name: p.stat().st_mtime_ns for p in store.iterdir()}.keys() == files.keys()
    np.testing.assert_array_equal(np.asarray(first), np.asarray(second))
    np.testing.assert_allclose(second[0], [2.0 * 2.0] * 2, rtol=1e-12)  # |H| = max(scale)


def test_a_switch_of_jax_that_changes_programs_is_part_of_the_key(store):
    loss, scale = _quadratic(1.0)
    hbflow.iterates(loss, U0, method="gd", beta=0, eta=0.1, num_steps=4)
    before = {p.name for p in store.iterdir()}
    jax.config.update("jax_default_matmul_precision", "highest")
    try:
        hbflow.iterates(loss, U0, method="gd", beta=0, eta=0.1, num_steps=4)
    finally:
        jax.config.update("jax_default_matmul_precision", None)
    assert {p.name for p in store.iterdir()} > before  # compiled again, under its own key


def test_a_damaged_file_is_dropped_and_compiled_again(store):
    loss, scale = _quadratic(1.5)
    hbflow.iterates(loss, U0, method="gd", beta=0, eta=0.1, num_steps=6)
    paths = list(store.iterdir())
    for path in paths:
        path.write_bytes(b"not a program")
    _new_process(store)
    us = hbflow.iterates(loss, U0, method="gd", beta=0, eta=0.1, num_steps=6)
    np.testing.assert_allclose(us, _gd_exact(scale, np.asarray(U0), 0.1, 6), rtol=1e-14)
    for path in paths:
        assert path.read_bytes() != b"not a program"  # compiled and stored again


def test_losses_the_key_cannot_describe_are_not_stored(store):
    # A custom derivative rule: the jaxpr names the rule but does not show it.
    @jax.custom_jvp
    def f(x):
        return jnp.sum(x**2)

    f.defjvp(lambda primals, tangents: (f(*primals), 2.0 * jnp.sum(primals[0] * tangents[0])))
    assert _programs.loss_key(f, U0) is None
    us = hbflow.iterates(f, U0, method="gd", beta=0, eta=0.1, num_steps=3)
    np.testing.assert_allclose(us, _gd_exact(np.array([2.0, 2.0]), np.asarray(U0), 0.1, 3))
    assert not store.exists() or not any(store.iterdir())

    # A host callback likewise.
    def host(u):
        return jax.pure_callback(lambda x: np.sum(x**2), jax.ShapeDtypeStruct((), jnp.float64), u)

    assert _programs.loss_key(host, U0) is None


def test_a_loss_closing_over_much_data_is_not_stored(store):
    # 2 MB of closed-over data would be copied into every stored program: not kept.
    weights = np.linspace(1.0, 2.0, 2**18)

    def loss(u):  # 1/2 mean(w) |u|^2, with w used inside the trace
        return 0.5 * (jnp.mean(weights * u[0] ** 2) + jnp.mean(weights * u[1] ** 2))

    assert _programs.loss_key(loss, U0) is None
    us = hbflow.iterates(loss, U0, method="gd", beta=0, eta=0.1, num_steps=3)
    scale = np.full(2, weights.mean())
    np.testing.assert_allclose(us, _gd_exact(scale, np.asarray(U0), 0.1, 3), rtol=1e-13)
    assert not store.exists() or not any(store.iterdir())


def test_a_loss_key_is_its_jaxpr_and_its_constants():
    loss1, _ = _quadratic(1.0)
    loss1b, _ = _quadratic(1.0)
    loss2, _ = _quadratic(2.0)
    assert _programs.loss_key(loss1, U0) == _programs.loss_key(loss1b, U0)
    assert _programs.loss_key(loss1, U0) != _programs.loss_key(loss2, U0)
    # A literal in the code (printed in full in the jaxpr) and the input's shape count too.
    assert _programs.loss_key(lambda u: jnp.sum(u) * 0.1, U0) != _programs.loss_key(
        lambda u: jnp.sum(u) * 0.1000000000000001, U0
    )
    assert _programs.loss_key(loss1, U0) != _programs.loss_key(loss1, jnp.ones(3))


class _UserSolver(diffrax.Tsit5):
    pass


class _WithFunction(eqx.Module):
    f: object = eqx.field(static=True)


def test_static_parts_are_described_only_when_the_text_determines_them():
    # hbflow's, diffrax's and equinox's classes and plain values: described.
    assert _programs.describe((diffrax.Tsit5(), 4096, "hb", None, 0.5)) is not None
    assert _programs.describe(diffrax.Tsit5()) != _programs.describe(diffrax.Dopri5())
    assert _programs.describe(np.arange(3.0)) != _programs.describe(np.arange(3.0) + 1)
    # A class from elsewhere (its code is not in the key), or a function: not described.
    assert _programs.describe(_UserSolver()) is None
    assert _programs.describe(_WithFunction(lambda x: x)) is None
    assert _programs.describe(lambda x: x) is None


def test_inside_a_trace_the_store_is_bypassed(store):
    loss, scale = _quadratic(1.0)
    etas = jnp.array([0.1, 0.2])
    # a vmap over eta: the compiled program cannot take tracers, the jitted function runs
    out = jax.vmap(lambda e: hbflow.iterates(loss, U0, method="gd", beta=0, eta=e, num_steps=4))(
        etas
    )
    for i, eta in enumerate([0.1, 0.2]):
        np.testing.assert_allclose(out[i], _gd_exact(scale, np.asarray(U0), eta, 4), rtol=1e-14)


def test_the_switch_of_the_compilation_cache_switches_the_store(tmp_path, monkeypatch):
    from hbflow._jax_cache import enable_compilation_cache

    monkeypatch.setenv("HBFLOW_CACHE_DIR", str(tmp_path))
    try:
        assert enable_compilation_cache(True) is not None
        assert _programs.directory() == tmp_path / "programs"
        assert enable_compilation_cache(False) is None
        assert _programs.directory() is None
    finally:
        _programs.set_directory(None)


# --- new processes ------------------------------------------------------------------------------

_RUN = textwrap.dedent(
    """
    import json, logging, re, sys
    import jax
    from jax import monitoring
    counts = {"cache_hits": 0, "cache_misses": 0}
    def listener(event, **kw):
        name = event.rsplit("/", 1)[1]
        if event.startswith("/jax/compilation_cache/") and name in counts:
            counts[name] += 1
    monitoring.register_event_listener(listener)
    traced = []
    class Grab(logging.Handler):
        def emit(self, record):
            m = re.match(r"Finished tracing (?:\\+ transforming )?(\\S+) ", record.getMessage())
            if m:
                traced.append(m.group(1))
    logging.getLogger("jax").addHandler(Grab())
    jax.config.update("jax_log_compiles", True)
    from hbflow._cli import main
    code = main(sys.argv[1:])
    report = dict(
        counts,
        traced=traced,
        diffrax="diffrax" in sys.modules,
        flint="flint" in sys.modules,
        devices=jax.device_count(),
    )
    print(json.dumps(report), file=sys.stderr)
    sys.exit(code)
    """
)

ORDER = "order --etas 0.04,0.02 --horizon 0.2 --models hbf2,rgf --format json".split()


def _in_new_process(cache_dir, argv=ORDER, **env):
    done = subprocess.run(
        [sys.executable, "-c", _RUN, *argv],
        env=dict(
            os.environ,
            PYTHONPATH=str(ROOT),
            HBFLOW_CACHE_DIR=str(cache_dir),
            **{"HBFLOW_COMPILATION_CACHE": "1", **env},
        ),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stderr.strip().splitlines()[-1]), done.stdout


def _numbers(out):
    """The errors, slopes and solver errors of `hbflow order --format json` (not its timings)."""
    keep = ("max_errors", "final_errors", "slope", "solver_error")
    return {
        m: {k: v for k, v in r.items() if k in keep} for m, r in json.loads(out)["models"].items()
    }


def _big(traced):
    # the stored programs are compiled through `flat`; the solve's own jit is `run`
    return [name for name in traced if name in ("flat", "run", "top_at", "checked")]


def test_a_second_process_neither_traces_nor_compiles_the_study(tmp_path):
    cold, out_cold = _in_new_process(tmp_path)
    assert cold["cache_misses"] > 0 and "flat" in cold["traced"]
    stored = sorted(p.name for p in (tmp_path / "programs").iterdir())
    assert len(stored) >= 3  # the solve, the iterates, the Hessian estimates, the loss check
    warm, out_warm = _in_new_process(tmp_path)
    # Nothing goes through JAX's compiler, not even a small program from JAX's own cache.
    assert warm["cache_misses"] == 0 and warm["cache_hits"] == 0
    assert _big(warm["traced"]) == []
    assert not warm["diffrax"]  # diffrax is imported only to trace a solve
    assert cold["flint"] and not warm["flint"]  # the coefficient tables are kept too
    assert _numbers(out_warm) == _numbers(out_cold)
    # The store deleted, JAX's cache kept: the programs are compiled afresh and stored again
    # (an executable JAX loads from its cache does not serialize whole), and load next time.
    for path in (tmp_path / "programs").iterdir():
        path.unlink()
    again, out_again = _in_new_process(tmp_path)
    assert "flat" in again["traced"]
    assert sorted(p.name for p in (tmp_path / "programs").iterdir()) == stored
    last, out_last = _in_new_process(tmp_path)
    assert _big(last["traced"]) == [] and last["cache_misses"] == 0
    assert _numbers(out_last) == _numbers(out_cold)
    assert _numbers(out_again) == _numbers(out_cold)


def test_a_second_sweep_process_traces_nothing(tmp_path):
    argv = [
        "sweep", "--betas", "0.3,0.5", "--etas", "0.04,0.02", "--horizon", "0.2",
        "--models", "hbf2,rgf",
    ]  # fmt: skip
    # Two devices: the sweep's programs run on both, the loss check on one; each is loaded
    # onto the devices it was compiled for.
    two = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    cold, _ = _in_new_process(tmp_path, [*argv, "--out", str(tmp_path / "a")], **two)
    assert "flat" in cold["traced"] and cold["devices"] == 2
    warm, _ = _in_new_process(tmp_path, [*argv, "--out", str(tmp_path / "b")], **two)
    assert _big(warm["traced"]) == [] and warm["cache_misses"] == warm["cache_hits"] == 0
    assert not warm["flint"]
    a = (tmp_path / "a" / "results.csv").read_text()
    b = (tmp_path / "b" / "results.csv").read_text()
    assert a == b


def test_with_the_cache_off_nothing_is_kept(tmp_path):
    off, _ = _in_new_process(tmp_path, HBFLOW_COMPILATION_CACHE="0")
    assert off["cache_hits"] == 0 and off["cache_misses"] == 0
    assert not (tmp_path / "jax").exists() and not (tmp_path / "programs").exists()


# --- host-side conversions of the solves' results ------------------------------------------------


def test_rows_unravel_and_ravel_as_ravel_pytree_does():
    from jax.flatten_util import ravel_pytree

    from hbflow._compare import _flatten
    from hbflow._integrate import unravel_rows

    u0 = {"w": jnp.zeros((2, 3)), "b": jnp.zeros(()), "c": (jnp.zeros(2),)}
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((4, 9))
    us = unravel_rows(u0, xs)
    _, unravel = ravel_pytree(u0)
    for k in range(4):
        expected = unravel(jnp.asarray(xs[k]))
        for got, want in zip(jax.tree_util.tree_leaves(us), jax.tree_util.tree_leaves(expected)):
            np.testing.assert_array_equal(np.asarray(got)[k], np.asarray(want))
    np.testing.assert_array_equal(_flatten(us), xs)


def test_a_sweep_on_the_command_line_gets_one_device_per_core():
    code = (
        "import os, sys; from hbflow._cli import one_device_per_core; one_device_per_core(); "
        "import jax; print(jax.device_count(), len(os.sched_getaffinity(0)))"
    )
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=dict(env, PYTHONPATH=str(ROOT)), capture_output=True,
        text=True, timeout=120, check=True,
    )  # fmt: skip
    devices, cores = map(int, done.stdout.split())
    assert devices == cores
    # A device count the user chose is kept.
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(env, PYTHONPATH=str(ROOT), XLA_FLAGS="--xla_force_host_platform_device_count=3"),
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert int(done.stdout.split()[0]) == 3
