"""Reproducibility of the stochastic paths: same key, same paths bit for bit; independent of
chunking and of the number of devices; random reshuffling uses every sample once per epoch."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import hbflow
from hbflow._stochastic._compare import _recorder
from hbflow._stochastic._iterates import _indices, iterate_statistics
from hbflow._stochastic._sde import sde_model_from_name, sde_statistics

LS = hbflow.get_stochastic_problem("least-squares")
ARGS = dict(method="nag", beta=0.5, eta=0.1, num_steps=6, batch_size=3)


def test_same_key_same_paths_bit_for_bit():
    a = stochastic = hbflow.stochastic_iterates(LS, key=7, num_paths=5, **ARGS)
    b = hbflow.stochastic_iterates(LS, key=jax.random.PRNGKey(7), num_paths=5, **ARGS)
    assert a.shape == (5, 7, 3)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    c = hbflow.stochastic_iterates(LS, key=8, num_paths=5, **ARGS)
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    # paths are distinct from one another and do not depend on which others are run
    assert not np.array_equal(np.asarray(stochastic[0]), np.asarray(stochastic[1]))
    tail = hbflow.stochastic_iterates(LS, key=7, num_paths=3, first_path=2, **ARGS)
    assert np.array_equal(np.asarray(a[2:]), np.asarray(tail))


def test_statistics_do_not_depend_on_chunking():
    record = _recorder(LS, ("mean", "second-moment"))
    common = dict(key=3, num_paths=12, **ARGS)
    one = iterate_statistics(LS, record, chunk_size=12, **common)
    many = iterate_statistics(LS, record, chunk_size=5, **common)
    for name in ("mean", "second-moment"):
        assert np.allclose(one.mean[name], many.mean[name], rtol=1e-13, atol=1e-15)
        assert np.allclose(one.var[name], many.var[name], rtol=1e-11, atol=1e-15)


def test_reshuffling_uses_every_sample_once_per_epoch():
    key = jax.random.PRNGKey(0)
    for epoch in range(2):
        batches = [_indices(key, epoch * 8 + j, 32, 4, "reshuffling") for j in range(8)]
        assert sorted(np.concatenate(batches).tolist()) == list(range(32))
    # with replacement, a batch of n repeats samples
    idx = _indices(key, 0, 32, 32, "with-replacement")
    assert len(set(np.asarray(idx).tolist())) < 32


def test_reshuffling_with_the_full_batch_is_the_deterministic_method():
    us = hbflow.stochastic_iterates(
        LS,
        method="hb",
        beta=0.7,
        eta=0.05,
        num_steps=20,
        batch_size=LS.n,
        sampling="reshuffling",
        num_paths=2,
    )
    full = LS.as_problem()
    ref = hbflow.iterates(full.loss, full.x0, method="hb", beta=0.7, eta=0.05, num_steps=20)
    assert np.allclose(us, np.asarray(ref)[None], rtol=1e-12, atol=1e-13)


_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    import hbflow
    from hbflow._stochastic._compare import _recorder
    from hbflow._stochastic._iterates import iterate_statistics, shard_paths, path_keys
    from hbflow._stochastic._sde import sde_model_from_name, sde_statistics
    p = hbflow.get_stochastic_problem("least-squares")
    record = _recorder(p, ("mean", "second-moment"))
    it = iterate_statistics(p, record, method="hb", beta=0.5, eta=0.1, num_steps=5,
                            batch_size=2, key=1, num_paths=24, chunk_size=8)
    sde, _ = sde_statistics(sde_model_from_name("sme1"), p, record, method="hb", beta=0.5,
                            eta=0.1, num_steps=3, batch_size=2, key=2, num_paths=8,
                            chunk_size=8)
    keys = shard_paths(path_keys(jax.random.PRNGKey(0), 0, 8))
    out = {
        "devices": jax.device_count(),
        "shards": len(keys.sharding.device_set),
        "it": {k: np.asarray(v).tolist() for k, v in it.mean.items()},
        "it_var": {k: np.asarray(v).tolist() for k, v in it.var.items()},
        "sde": {k: np.asarray(v).tolist() for k, v in sde.mean.items()},
    }
    print(json.dumps(out))
    """
)


def _run(devices: int) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    root = Path(__file__).resolve().parent.parent
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_one_and_four_devices_give_the_same_statistics():
    four = _run(4)
    assert four["devices"] == 4 and four["shards"] == 4  # the paths really were sharded
    record = _recorder(LS, ("mean", "second-moment"))
    one_it = iterate_statistics(
        LS,
        record,
        method="hb",
        beta=0.5,
        eta=0.1,
        num_steps=5,
        batch_size=2,
        key=1,
        num_paths=24,
        chunk_size=8,
    )
    one_sde, _ = sde_statistics(
        sde_model_from_name("sme1"),
        LS,
        record,
        method="hb",
        beta=0.5,
        eta=0.1,
        num_steps=3,
        batch_size=2,
        key=2,
        num_paths=8,
        chunk_size=8,
    )
    assert jax.device_count() == 1
    for name in ("mean", "second-moment"):
        assert np.allclose(four["it"][name], one_it.mean[name], rtol=1e-12, atol=1e-14)
        assert np.allclose(four["it_var"][name], one_it.var[name], rtol=1e-10, atol=1e-14)
        assert np.allclose(four["sde"][name], one_sde.mean[name], rtol=1e-12, atol=1e-14)
    assert jnp.all(jnp.isfinite(jnp.asarray(four["sde"]["mean"])))
