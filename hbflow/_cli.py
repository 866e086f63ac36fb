"""The ``hbflow`` command line: ``hbflow derive`` and ``hbflow order``.

Errors are printed to stderr as one line, ``hbflow: error: …``, with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from ._cli_order import add_order_parser

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own usage errors: one line, exit 2
        self.print_usage(sys.stderr)
        raise SystemExit(_fail(message))


def _fail(message: str) -> int:
    print(f"hbflow: error: {message}", file=sys.stderr)
    return 2


def _add_derive_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "derive",
        help="exact counter terms of the heavy-ball flow",
        description="Derive (or load from the cache) the exact coefficients b_k(tau) of the "
        "heavy-ball flow of a method, to a given order in the step size.",
    )
    p.add_argument("--order", type=int, required=True, help="largest tree order |tau| (>= 1)")
    p.add_argument("--method", default="hb", help="hb (default), nag, gd, nesterov or qhm")
    p.add_argument(
        "--beta", default=None, help="a rational value of beta in [0, 1), e.g. 0.9 or 9/10"
    )
    p.add_argument(
        "--nu", default=None, help="nu of qhm in [0, 1], e.g. 0.7 or 7/10 (qhm only, required)"
    )
    view = p.add_mutually_exclusive_group()
    view.add_argument("--k", type=int, default=None, help="the piece k >= 0 (default: symbolic k)")
    view.add_argument("--steady-state", action="store_true", help="the steady state k -> infinity")
    p.add_argument("--format", default="text", help="text (default), latex or json")
    p.set_defaults(run=_run_derive)


def _run_derive(args) -> int:
    from ._counter_terms import counter_terms
    from ._format import field_latex, field_text, to_json_data
    from ._validate import check_count, check_method, check_order, parse_beta, parse_nu

    check_order(args.order)
    check_method(args.method)
    # Compared as a number, exactly: "0", "0.0" and "0/1" are all beta = 0 for gd.
    parse_beta(args.beta, args.method, name="--beta")
    nu = parse_nu(args.nu, args.method, name="--nu")
    if args.format not in ("text", "latex", "json"):
        raise ValueError(f"format must be one of text, latex, json; got {args.format!r}")
    if args.k is not None:
        check_count(args.k, "--k", minimum=0)
    ct = counter_terms(args.order, args.method, nu=nu)
    view = {"k": args.k, "beta": args.beta, "steady_state": args.steady_state}
    if args.format == "json":
        print(json.dumps(to_json_data(ct, **view), indent=2, ensure_ascii=False))
    elif args.format == "latex":
        print(field_latex(ct, **view))
    else:
        print(field_text(ct, **view))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hbflow",
        description="Continuous-time models of heavy-ball, Nesterov and gradient descent.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_derive_parser(subparsers)
    add_order_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (ValueError, KeyError, TypeError, ImportError, OSError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        return _fail(str(message))
    except KeyboardInterrupt:
        return _fail("interrupted")


if __name__ == "__main__":
    sys.exit(main())
