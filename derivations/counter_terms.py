"""Derive the exact counter terms and write them to the package's versioned data files.

    python derivations/counter_terms.py --order 8            # hb, nag and gd to order 8
    python derivations/counter_terms.py --order 5 --method hb

Files go to ``hbflow/_data/counter_terms_{method}_order{N}.json`` (or ``--out DIR``); the package
loads them when their derivation version matches its code, and derives on demand otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from hbflow._counter_terms import derive_counter_terms, write_cache
from hbflow._derive import METHODS, check_order

DATA = Path(__file__).resolve().parent.parent / "hbflow" / "_data"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--order", type=int, required=True, help="largest tree order (>= 1)")
    parser.add_argument("--method", choices=METHODS, action="append", help="default: all three")
    parser.add_argument("--out", type=Path, default=DATA, help=f"output folder (default {DATA})")
    args = parser.parse_args(argv)
    try:
        check_order(args.order)
    except ValueError as err:
        parser.error(str(err))
    for method in args.method or METHODS:
        order = args.order
        for stale in args.out.glob(f"counter_terms_{method}_order*.json"):
            stale.unlink()
        start = time.perf_counter()
        ct = derive_counter_terms(order, method)
        path = write_cache(ct, args.out)
        print(f"{method} order {order}: {time.perf_counter() - start:.1f} s -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
