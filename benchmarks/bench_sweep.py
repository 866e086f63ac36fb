"""Benchmark of sweeps: one batched sweep against a loop of compare calls, cold and warm starts.

Run from the repository root:

    python benchmarks/bench_sweep.py              # everything, each measurement twice
    python benchmarks/bench_sweep.py --repeat 1   # once

Every measurement runs in a fresh Python process, so compilation and imports are counted the
way a user meets them.  Prints:

1. The default problem, models hbf1, hbf2, hbf3, rgf, an 8 x 8 grid of (beta, eta) at T = 2:
   `hbflow.sweep` (on one CPU device per core, as `hbflow sweep` runs it) against the equivalent
   loop of `hbflow.compare` calls (one per beta, all eight step sizes), each in one process:
   the first call with nothing stored (compilation included), the first call in a process whose
   compiled programs are stored from an earlier one (loaded), and a second call in the same
   process (compiled).
2. `hbflow order` (default study) and `hbflow sweep` (the grid of 1.) in a fresh process: cache
   off, cold cache (empty folder) and warm cache (the same folder again, three processes: the
   median and the range), side by side.
3. The sweep of 1. on 1, 2 and 4 devices (simulated CPU devices: on a machine with few cores
   expect no speed-up; this shows what sharding costs).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BETAS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
# T/eta = 50, 60, 70, 80, 100, 120, 160, 200: every eta divides T = 2.
ETAS = [2.0 / k for k in (50, 60, 70, 80, 100, 120, 160, 200)]
MODELS = ["hbf1", "hbf2", "hbf3", "rgf"]

_SWEEP = """
import json, time
t0 = time.perf_counter()
from hbflow._cli import one_device_per_core
one_device_per_core()  # as `hbflow sweep` does: one CPU device per core, unless XLA_FLAGS says
import hbflow
hbflow.sweep  # loaded on first use: import it here, outside the timed calls
p = hbflow.get_problem(hbflow.DEFAULT_PROBLEM)
args = dict(betas={betas}, etas={etas}, horizon=2.0, models={models},
            chunk_size={chunk_size})  # the compilation cache as HBFLOW_COMPILATION_CACHE says
t1 = time.perf_counter()
first = hbflow.sweep(p.loss, p.x0, **args)
t2 = time.perf_counter()
second = hbflow.sweep(p.loss, p.x0, **args)
t3 = time.perf_counter()
print(json.dumps(dict(imports=t1 - t0, first=t2 - t1, second=t3 - t2, devices=first.devices,
                      failed=len(first.failures), points=len(first.points))))
"""

_LOOP = """
import json, time
t0 = time.perf_counter()
import hbflow
hbflow.compare  # loaded on first use: import it here, outside the timed calls
hbflow.enable_compilation_cache()  # as HBFLOW_COMPILATION_CACHE says (sweep does the same)
p = hbflow.get_problem(hbflow.DEFAULT_PROBLEM)
def loop():
    failed = 0
    for beta in {betas}:
        try:
            hbflow.compare(p.loss, p.x0, beta=beta, etas=sorted({etas}, reverse=True),
                           horizon=2.0, models={models})
        except hbflow.OrderStudyError as err:
            failed += len(err.study.failures)
    return failed
t1 = time.perf_counter()
failed = loop()
t2 = time.perf_counter()
loop()
t3 = time.perf_counter()
print(json.dumps(dict(imports=t1 - t0, first=t2 - t1, second=t3 - t2, failed=failed)))
"""


def _python(code: str, **env) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=dict(os.environ, PYTHONPATH=ROOT, **env),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def _fill(code: str, chunk_size: int) -> str:
    return code.format(betas=BETAS, etas=ETAS, models=MODELS, chunk_size=chunk_size)


def sweep_vs_loop(chunk_size: int) -> None:
    print(f"1. default problem, {len(BETAS)} x {len(ETAS)} grid of (beta, eta), T = 2, {MODELS}")
    results = {}
    for label, code in (("sweep", _SWEEP), ("loop", _LOOP)):
        code = _fill(code, chunk_size)
        cold = _python(code, HBFLOW_COMPILATION_CACHE="0")
        with tempfile.TemporaryDirectory() as cache:
            _python(code, HBFLOW_CACHE_DIR=cache)  # stores the compiled programs
            warm = _python(code, HBFLOW_CACHE_DIR=cache)
        results[label] = (cold["first"], warm["first"], warm["second"], cold, warm)
    print(f"   {'':<30} {'first call':>11} {'first, stored':>14} {'compiled':>9}")
    names = {"sweep": f"hbflow.sweep, chunk {chunk_size}", "loop": "loop of compare (8 calls)"}
    for label in ("sweep", "loop"):
        first, stored, second = results[label][:3]
        print(f"   {names[label]:<30} {first:10.2f}s {stored:13.2f}s {second:8.2f}s")
    ratios = [results["loop"][i] / results["sweep"][i] for i in range(3)]
    print(f"   {'speed-up':<30} {ratios[0]:10.1f}x {ratios[1]:13.1f}x {ratios[2]:8.1f}x")
    sweep, loop = results["sweep"][3], results["loop"][3]
    print(
        f"   ({sweep['points']} points on {sweep['devices']} CPU device(s), one per core; failed "
        f"runs: sweep {sweep['failed']} rows, loop {loop['failed']}; imports "
        f"{sweep['imports']:.1f} s not counted)"
    )


def _cli(cache_dir: str, *argv: str, **env) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "hbflow", *argv],  # the command as installed
        env=dict(os.environ, PYTHONPATH=ROOT, HBFLOW_CACHE_DIR=cache_dir, **env),
        capture_output=True,
        check=True,
    )
    return time.perf_counter() - start


def _imports() -> float:
    """Wall time of a process that only imports JAX and equinox (and ends as `hbflow` does)."""
    start = time.perf_counter()
    code = "import gc, jax, equinox; gc.freeze()"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - start


def cold_warm() -> None:
    print("2. wall time of a fresh process: persistent compilation cache off, cold, warm")
    floor = sorted(_imports() for _ in range(3))[1]
    print(f"   (a process that only imports JAX and equinox: {floor:.2f} s, median of three)")
    grid = [
        "--betas", ",".join(map(str, BETAS)), "--etas", ",".join(map(repr, ETAS)),
        "--horizon", "2", "--models", ",".join(MODELS),
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as cache:
        for label, argv in (("hbflow order", ["order"]), ("hbflow sweep 8x8", ["sweep", *grid])):
            times = []
            for i, env in enumerate(({"HBFLOW_COMPILATION_CACHE": "0"}, {}, {}, {}, {})):
                out = (
                    ["--out", os.path.join(cache, f"out{label[-3:]}{i}")]
                    if "sweep" in label
                    else []
                )
                times.append(_cli(cache, *argv, *out, **env))
            off, cold, *warm = times
            median = sorted(warm)[1]
            print(
                f"   {label:<17} off {off:6.2f} s   cold {cold:6.2f} s   warm {median:6.2f} s "
                f"({min(warm):.2f}-{max(warm):.2f})   warm/cold = {median / cold:.2f}   "
                f"imports/cold = {floor / cold:.2f}"
            )


def devices(chunk_size: int) -> None:
    print("3. the sweep of 1. on simulated CPU devices (fresh process, cache off)")
    for n in (1, 2, 4):
        r = _python(
            _fill(_SWEEP, chunk_size),
            HBFLOW_COMPILATION_CACHE="0",
            XLA_FLAGS=f"--xla_force_host_platform_device_count={n}",
        )
        assert r["devices"] == n
        print(f"   {n} device(s): first call {r['first']:6.2f} s, second call {r['second']:6.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="measure everything this often")
    parser.add_argument("--chunk-size", type=int, default=64, help="points per batched call")
    parser.add_argument("--only", choices=("loop", "cache", "devices"), default=None)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPU cores; load average {os.getloadavg()[0]:.2f} at start")
    for i in range(args.repeat):
        print(f"--- run {i + 1} of {args.repeat}")
        if args.only in (None, "loop"):
            sweep_vs_loop(args.chunk_size)
        if args.only in (None, "cache"):
            cold_warm()
        if args.only in (None, "devices"):
            devices(args.chunk_size)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
