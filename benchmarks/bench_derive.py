"""Time to derive the closed-form counter terms, and to load them from the cache.

    python benchmarks/bench_derive.py --orders 2,3,4,5,6 --method hb

For each order: the closed-form derivation from scratch (no cache), and a load of the written
cache file in a fresh process (what a user pays on first use when the file is shipped).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time

from hbflow._counter_terms import derive_counter_terms, write_cache

LOAD = """
import time, sys
t = time.perf_counter()
from hbflow import counter_terms
imported = time.perf_counter()
ct = counter_terms({order}, {method!r})
done = time.perf_counter()
print(imported - t, done - imported)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", default="2,3,4,5,6")
    parser.add_argument("--method", default="hb")
    args = parser.parse_args()
    orders = [int(o) for o in args.orders.split(",")]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print("| order | trees | derive (s) | cached load (s) | import hbflow (s) |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as cache_dir:
        for order in orders:
            start = time.perf_counter()
            ct = derive_counter_terms(order, args.method)
            derive = time.perf_counter() - start
            write_cache(ct, __import__("pathlib").Path(cache_dir))
            env = dict(os.environ, HBFLOW_CACHE_DIR=cache_dir)
            # the shipped files must not answer: point the load at this run's file only
            code = LOAD.format(order=order, method=args.method)
            code = code.replace(
                "from hbflow import counter_terms",
                "import hbflow._counter_terms as c\n"
                "c.cache_dirs = lambda: [c.Path(" + repr(cache_dir) + ")]\n"
                "from hbflow import counter_terms",
            )
            out = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            ).stdout.split()
            imported, load = float(out[0]), float(out[1])
            print(f"| {order} | {len(ct.trees)} | {derive:.2f} | {load:.3f} | {imported:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
