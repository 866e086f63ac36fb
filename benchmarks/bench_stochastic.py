"""Benchmark of the stochastic study: paths per second, a Monte Carlo weak-order study and the
exact oracle study.

Run from the repository root:

    python benchmarks/bench_stochastic.py            # everything
    python benchmarks/bench_stochastic.py --quick    # d = 100 only, 2000 paths in the study
    python benchmarks/bench_stochastic.py --study-only hb   # the 10^4-path study, heavy ball only

Prints:

1. Paths per second of the mini-batch iterates and of the SME solve (sme1, Euler with m, 2m, 4m
   substeps, m = 2) on least squares with n = 64 samples, B = 8, K = 50 steps, at d = 100 and
   d = 10 000 (compile time separate).
2. A Monte Carlo weak-order study on logistic regression (hb, nag, gd; sme1; phi = mean;
   eta = 0.1, 0.05, 0.025 at T = 1; B = 16) with 10^4 paths: wall time and the measured slopes
   with their Monte Carlo standard errors.
3. The exact oracle study on least squares (hb, beta = 0.5, sme1 and sme-hbf2, three test
   functions, eta = 0.01, 0.005, 0.0025 at T = 1): wall time and slopes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import hbflow  # noqa: E402
from hbflow._stochastic._compare import _recorder  # noqa: E402
from hbflow._stochastic._iterates import iterate_statistics  # noqa: E402
from hbflow._stochastic._sde import sde_model_from_name, sde_statistics  # noqa: E402


def _problem(d: int, n: int = 64):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d)) / np.sqrt(d)
    y = X @ rng.standard_normal(d) + 0.5 * rng.standard_normal(n)
    return hbflow.least_squares_problem(X, y, np.zeros(d), name=f"least-squares-d{d}")


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    jax.block_until_ready(jax.tree_util.tree_leaves(out))
    return time.perf_counter() - start


def paths_per_second(dims, paths: int) -> None:
    print("1. paths per second (least squares, n = 64, B = 8, K = 50, hb beta = 0.5, eta = 0.01)")
    print(f"   {'d':>6}  {'what':<9}  {'compile s':>9}  {'paths/s':>9}  {'path-steps/s':>12}")
    model = sde_model_from_name("sme1")
    for d in dims:
        p = _problem(d)
        record = _recorder(p, ("mean",))
        chunk = min(paths, 256 if d > 1000 else 1024)
        common = dict(beta=0.5, eta=0.01, num_steps=50, batch_size=8, num_paths=paths)

        def it(key):
            return iterate_statistics(p, record, key=key, chunk_size=chunk, **common)

        def sde(key):
            return sde_statistics(model, p, record, key=key, chunk_size=chunk, **common)

        for what, fn in (("iterates", it), ("sde", sde)):
            first = _timed(lambda fn=fn: fn(0))
            run = _timed(lambda fn=fn: fn(1))
            print(
                f"   {d:>6}  {what:<9}  {max(first - run, 0):9.2f}  {paths / run:9.0f}  "
                f"{paths * 50 / run:12.0f}"
            )


STUDY_METHODS = {"hb": 0.5, "nag": 0.5, "gd": 0.0}  # method -> beta


def weak_order_study(paths: int, methods=tuple(STUDY_METHODS)) -> None:
    print(f"2. Monte Carlo weak-order study, logistic regression, sme1, phi = mean, {paths} paths")
    for method in methods:
        beta = STUDY_METHODS[method]
        start = time.perf_counter()
        s = hbflow.compare_weak(
            "logistic-regression",
            method=method,
            beta=beta,
            etas=[0.1, 0.05, 0.025],
            horizon=1.0,
            batch_size=16,
            models=["sme1"],
            phis=["mean"],
            paths=paths,
            chunk_size=min(paths, 2000),
        )
        seconds = time.perf_counter() - start
        m = s.models["sme1"]
        print(
            f"   {method} beta={beta:g}: {seconds:7.1f} s  slope {m.slope:.2f} "
            f"± {m.slope_mc_stderr:.2f} (MC)  max errors "
            + ", ".join(f"{e:.2e}±{se:.0e}" for e, se in zip(m.max_errors, m.max_errors_stderr))
            + ("  [flagged]" if m.mc_flags.any() or m.solver_flags.any() else "")
        )


def oracle_study() -> None:
    print("3. exact oracle study, least squares, hb beta = 0.5, three test functions")
    for attempt in ("first (with compilation)", "second"):
        start = time.perf_counter()
        s = hbflow.compare_weak(
            "least-squares",
            method="hb",
            beta=0.5,
            etas=[0.01, 0.005, 0.0025],
            horizon=1.0,
            batch_size=4,
            models=["sme1", "sme-hbf2"],
            phis=["mean", "second-moment", "loss"],
            paths="exact",
        )
        seconds = time.perf_counter() - start
        slopes = {
            phi: {name: round(m.slope, 2) for name, m in models.items()}
            for phi, models in s.by_phi.items()
        }
        print(f"   {attempt}: {seconds:.2f} s; slopes {slopes}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="d = 100 only, 2000 study paths")
    parser.add_argument(
        "--study-only",
        metavar="METHODS",
        help="run only the Monte Carlo study (item 2), for these comma-separated methods",
    )
    args = parser.parse_args()
    print(f"devices: {jax.devices()}")
    paths = 2000 if args.quick else 10_000
    if args.study_only:
        methods = args.study_only.split(",")
        unknown = sorted(set(methods) - set(STUDY_METHODS))
        if unknown:
            parser.error(f"--study-only: unknown methods {unknown}; use {sorted(STUDY_METHODS)}")
        weak_order_study(paths, methods)
        return
    paths_per_second([100] if args.quick else [100, 10_000], paths=1024)
    weak_order_study(paths)
    oracle_study()


if __name__ == "__main__":
    main()
