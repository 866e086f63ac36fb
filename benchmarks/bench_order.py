"""Benchmark of the order study: compile and run time, field cost, and scaling with dimension.

Run from the repository root:

    python benchmarks/bench_order.py            # everything
    python benchmarks/bench_order.py --quick    # d = 100 and 1000 only

Prints three tables:

1. ``hbflow order`` on the default problem for HBF orders 1..4 with three step sizes: the wall
   time of the command (a fresh process, imports included) and, in-process, the compile and run
   time of each model and of the iterates.
2. The cost of one HBF field evaluation relative to one gradient evaluation, orders 1..5, on the
   diagonal linear network with d = 100, 1000, 10000 (both jitted, compile excluded).
3. An order study (HBF 1..4, three step sizes) on the diagonal linear network against d.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import hbflow  # noqa: E402
from hbflow._compare import compare  # noqa: E402
from hbflow._differentials import combine_differentials, gradient_field  # noqa: E402
from hbflow._problems import DEFAULT_PROBLEM, diagonal_linear_network, get_problem  # noqa: E402
from hbflow._trees import trees_up_to  # noqa: E402

HBF = ("hbf1", "hbf2", "hbf3", "hbf4")


def timeit(fn, *args, repeat: int = 7, number: int | None = None) -> float:
    """Median seconds per call of a compiled function (blocks on the result)."""
    jax.block_until_ready(fn(*args))
    if number is None:
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        once = time.perf_counter() - start
        number = max(1, int(0.05 / max(once, 1e-7)))
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            out = fn(*args)
        jax.block_until_ready(out)
        times.append((time.perf_counter() - start) / number)
    return float(np.median(times))


def default_study() -> None:
    print("1. hbflow order on the default problem, models hbf1..hbf4, etas 0.04,0.02,0.01, T=2")
    cmd = [sys.executable, "-m", "hbflow._cli", "order", "--models", ",".join(HBF)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=_root())
    wall = time.perf_counter() - start
    if proc.returncode:
        print(proc.stderr)
        raise SystemExit("hbflow order failed")
    print(f"   command wall time (fresh process, imports included): {wall:.2f} s")
    import_time = _import_time()
    print(f"   of which importing hbflow and jax: {import_time:.2f} s")

    p = get_problem(DEFAULT_PROBLEM)
    start = time.perf_counter()
    study = compare(
        p.loss, p.x0, method="hb", beta=0.5, etas=[0.04, 0.02, 0.01], horizon=2.0, models=HBF
    )
    total = time.perf_counter() - start
    compile_s = sum(m.compile_seconds for m in study.models.values())
    run_s = sum(m.run_seconds for m in study.models.values())
    print(
        f"   in-process compare(): {total:.2f} s = compile {compile_s:.2f} s + solves "
        f"{run_s:.3f} s (incl. the 100x tighter re-solves) + iterates "
        f"{study.iterates_seconds:.2f} s (with compilation) + rest"
    )
    for name, m in study.models.items():
        print(
            f"     {name}: compile {m.compile_seconds:.2f} s, run {m.run_seconds * 1e3:.1f} ms, "
            f"slope {m.slope:.2f}"
        )
    print()


def _root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _import_time() -> float:
    code = "import time; t = time.perf_counter(); import hbflow; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=_root())
    return float(out.stdout.strip())


def field_costs(dims) -> None:
    print(
        "2. one HBF field evaluation / one gradient evaluation (jitted, median, compile "
        "excluded), diagonal linear network n=40"
    )
    header = "   d       grad (us) " + " ".join(f"  alpha={a} (ratio)" for a in range(1, 6))
    print(header)
    for d in dims:
        p = diagonal_linear_network(d=d)
        g, x0, _ = gradient_field(p.loss, p.x0)
        x = x0 + 0.01 * jnp.arange(x0.size) / x0.size  # away from the symmetric start
        grad = jax.jit(g)
        t_grad = timeit(grad, x)
        cells = []
        for alpha in range(1, 6):
            trees = trees_up_to(alpha)
            w = jnp.ones(len(trees)) * 0.01
            field = jax.jit(lambda y, trees=trees, w=w: combine_differentials(g, trees, w, y))
            start = time.perf_counter()
            jax.block_until_ready(field(x))
            compile_s = time.perf_counter() - start
            t = timeit(field, x)
            cells.append(f"{t / t_grad:7.1f} ({compile_s:4.1f}s)")
        print(f"   {d:<7d} {t_grad * 1e6:9.1f}  " + " ".join(f"{c:>17}" for c in cells))
    print("   (in parentheses: compile time of the field alone)")
    print()


def dimension_scaling(dims) -> None:
    # |H| grows like d/n at this start, so the step sizes (and the horizon, to keep K = 10, 20,
    # 40 pieces) are scaled by 100/d to keep lambda*|H| comparable across d.
    print(
        "3. order study on the diagonal linear network, hb beta=0.5, HBF 1..4, etas "
        "(0.04,0.02,0.01)*100/d, T=0.4*100/d (K = 10, 20, 40)"
    )
    print("   d       compile (s)  run (s)  iterates (s)  max lambda|H|  slopes hbf1..4")
    for d in dims:
        p = diagonal_linear_network(d=d)
        scale = 100 / d
        study = compare(
            p.loss,
            p.x0,
            method="hb",
            beta=0.5,
            etas=[0.04 * scale, 0.02 * scale, 0.01 * scale],
            horizon=0.4 * scale,
            models=HBF,
        )
        compile_s = sum(m.compile_seconds for m in study.models.values())
        run_s = sum(m.run_seconds for m in study.models.values())
        slopes = " ".join(f"{m.slope:.2f}" for m in study.models.values())
        print(
            f"   {d:<7d} {compile_s:11.2f} {run_s:8.3f} {study.iterates_seconds:13.2f} "
            f"{study.lambda_h.max():14.3g}  {slopes}"
        )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip d = 10000")
    args = parser.parse_args()
    dims = (100, 1000) if args.quick else (100, 1000, 10000)
    print(
        f"hbflow {hbflow.__version__}, jax {jax.__version__}, {jax.devices()[0].platform}, "
        f"{os.cpu_count()} CPU cores"
    )
    default_study()
    field_costs(dims)
    dimension_scaling(dims)


if __name__ == "__main__":
    main()
