"""Derive the exact counter terms and write them to the package's versioned data files.

    python derivations/counter_terms.py --order 8            # every method (qhm at nu = 7/10)
    python derivations/counter_terms.py --order 5 --method hb
    python derivations/counter_terms.py --order 6 --method qhm --nu 1/2
    python derivations/counter_terms.py --order 9 --compress # gzip-compressed JSON

Files go to ``hbflow/_data/counter_terms_{method}_order{N}.json[.gz]`` (for qhm
``counter_terms_qhm_nu{p}-{q}_order{N}.json[.gz]``, one per rational ν) or ``--out DIR``, with
the exact shifted start of the steady-state flow of hb, nag and gd in
``shifted_start_{method}_order{N}.json``; the package loads them when their derivation version
and checksum match, and derives on demand otherwise.  The methods are derived in parallel, one
process each, up to ``--jobs``; from order 9 on each method shares its top order among the
cores left over (`hbflow._parallel`).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from hbflow._counter_terms import _cache_stem, derive_counter_terms, write_cache
from hbflow._derive import METHODS, check_order
from hbflow._parallel import PARALLEL_FROM_ORDER
from hbflow._shift import ShiftedStart, _derive_shift, write_shift_cache
from hbflow._validate import parse_nu

DATA = Path(__file__).resolve().parent.parent / "hbflow" / "_data"

#: ν of the shipped qhm file: 7/10, the value Ma & Yarats (ICLR 2019) recommend.
SHIPPED_NU = "7/10"

#: The methods whose shifted start ships (nesterov's is derived on demand).
SHIPPED_SHIFTS = ("hb", "nag", "gd")


def _derive_and_write(
    order: int, method: str, out: Path, compressed: bool, nu, workers: int | None = None
) -> str:
    start = time.perf_counter()
    ct = derive_counter_terms(order, method, nu=nu, progress=True, workers=workers)
    stem = _cache_stem(method, ct.nu)
    for stale in list(out.glob(f"{stem}_order*.json")) + list(out.glob(f"{stem}_order*.json.gz")):
        stale.unlink()
    path = write_cache(ct, out, compressed=compressed)
    size = path.stat().st_size / 1e6
    done = f"{method} order {order}: {time.perf_counter() - start:.1f} s -> {path} ({size:.2f} MB)"
    if method not in SHIPPED_SHIFTS:
        return done
    # The shifted start of the steady-state flow (hbflow.shifted_start), from the same b_inf.
    for stale in out.glob(f"shifted_start_{method}_order*.json"):
        stale.unlink()
    shift = write_shift_cache(ShiftedStart(method, order, _derive_shift(order, method)), out)
    return f"{done} and {shift.name}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--order", type=int, required=True, help="largest tree order (>= 1)")
    parser.add_argument("--method", choices=METHODS, action="append", help="default: all")
    parser.add_argument("--nu", default=SHIPPED_NU, help=f"nu of qhm (default {SHIPPED_NU})")
    parser.add_argument("--out", type=Path, default=DATA, help=f"output folder (default {DATA})")
    parser.add_argument("--compress", action="store_true", help="write gzip-compressed JSON")
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)"
    )
    args = parser.parse_args(argv)
    try:
        check_order(args.order)
        nu = parse_nu(args.nu, "qhm", name="--nu")
    except ValueError as err:
        parser.error(str(err))
    methods = args.method or list(METHODS)
    # The slowest (nag, hb) first, so that gd fills in behind them.
    methods.sort(key=["nag", "nesterov", "hb", "qhm", "gd"].index)
    parallel = max(1, min(args.jobs, len(methods)))
    # Each method may share its top order among worker processes (from order 9 on): the cores
    # left over by the methods that run side by side.
    workers = max(1, args.jobs // parallel) if args.order >= PARALLEL_FROM_ORDER else 1
    # Fresh interpreters, not forks: the parent has imported hbflow, and with it JAX.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=parallel, mp_context=context) as pool:
        jobs = [
            pool.submit(
                _derive_and_write,
                args.order,
                m,
                args.out,
                args.compress,
                nu if m == "qhm" else None,
                workers,
            )
            for m in methods
        ]
        for job in jobs:
            print(job.result(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
