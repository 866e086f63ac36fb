"""Wall time of `hbflow derive` as a user runs it, of derivations from scratch, of float tables.

    python benchmarks/bench_derive.py                       # the full table (takes a while)
    python benchmarks/bench_derive.py --cached 4,6,8 --scratch 6,7,8 --table 4,6,8
    python benchmarks/bench_derive.py --scratch 9,10 --jobs 2

Three tables, in Markdown:

1. whole-command wall time of ``hbflow derive --order N`` in text, LaTeX and JSON, each in a
   fresh process with the cache present (the shipped data files);
2. derivation from scratch (no cache) of hb, nag and gd at order N, in a fresh process each,
   with the methods run in parallel over ``--jobs`` processes (the machine's cores);
3. ``counter_terms(N).coefficient_table(0.9, 1000)`` (certified float64 table), in process.

Every number is the wall time of one run; run the script twice on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRATCH = """
import time
from hbflow._counter_terms import derive_counter_terms
start = time.perf_counter()
derive_counter_terms({order}, {method!r}, progress=False)
print(time.perf_counter() - start)
"""


def _orders(text: str) -> list[int]:
    return [int(o) for o in text.split(",") if o.strip()]


def _env(cache_dir: str) -> dict:
    env = dict(os.environ, HBFLOW_CACHE_DIR=cache_dir)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _command(order: int, fmt: str, env: dict) -> float:
    argv = [sys.executable, "-m", "hbflow._cli", "derive", "--order", str(order), "--format", fmt]
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def _scratch(order: int, method: str, env: dict) -> float:
    code = SCRATCH.format(order=order, method=method)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
    )
    return float(out.stdout.split()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cached", default="4,6,8", help="orders for `hbflow derive`")
    parser.add_argument("--scratch", default="6,7,8,9,10", help="orders derived from scratch")
    parser.add_argument("--table", default="4,6,8", help="orders for coefficient_table")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory() as empty:
        env = _env(empty)  # shipped data only: the user cache is empty
        if _orders(args.cached):
            print("\n| `hbflow derive --order N` (s) | text | latex | json |")
            print("|---|---|---|---|")
            for order in _orders(args.cached):
                times = [_command(order, fmt, env) for fmt in ("text", "latex", "json")]
                print(f"| {order} | " + " | ".join(f"{t:.2f}" for t in times) + " |")
        if _orders(args.scratch):
            print(f"\n| from scratch, order N (s) | hb | nag | gd | all three, {args.jobs} jobs |")
            print("|---|---|---|---|---|")
            for order in _orders(args.scratch):
                start = time.perf_counter()
                with ThreadPoolExecutor(max_workers=args.jobs) as pool:
                    runs = {m: pool.submit(_scratch, order, m, env) for m in ("nag", "hb", "gd")}
                    times = {m: run.result() for m, run in runs.items()}
                wall = time.perf_counter() - start
                print(
                    f"| {order} | {times['hb']:.1f} | {times['nag']:.1f} | {times['gd']:.1f} "
                    f"| {wall:.1f} |",
                    flush=True,
                )
    if _orders(args.table):
        sys.path.insert(0, str(ROOT))
        from hbflow import counter_terms

        print("\n| `coefficient_table(0.9, 1000)`, order N | trees | load (s) | table (s) |")
        print("|---|---|---|---|")
        for order in _orders(args.table):
            start = time.perf_counter()
            ct = counter_terms(order, "hb")
            loaded = time.perf_counter()
            ct.coefficient_table(0.9, 1000)
            done = time.perf_counter()
            print(f"| {order} | {len(ct.trees)} | {loaded - start:.2f} | {done - loaded:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
