"""The ``hbflow`` command line: ``hbflow derive`` and ``hbflow order``.

Errors are printed to stderr as one line, ``hbflow: error: …``, with exit status 2.  An
interrupt (Ctrl-C) ends the run with status 130 and a closed stdout (``| head``) with 141, the
shell conventions, without a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import signal
import sys
import threading

from ._cli_order import add_order_parser
from ._cli_sweep import add_sweep_parser

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
    view.add_argument(
        "--shift",
        action="store_true",
        help="the exact shifted start u0' = B(psi, u0) of the steady-state flow instead",
    )
    p.add_argument("--format", default="text", help="text (default), latex or json")
    p.set_defaults(run=_run_derive)


def _run_derive(args) -> int:
    from ._checks import check_count, check_method, check_order, parse_beta, parse_nu
    from ._counter_terms import counter_terms
    from ._format import field_latex, field_text, to_json_data

    check_order(args.order)
    check_method(args.method)
    # Compared as a number, exactly: "0", "0.0" and "0/1" are all beta = 0 for gd.
    parse_beta(args.beta, args.method, name="--beta")
    nu = parse_nu(args.nu, args.method, name="--nu")
    if args.format not in ("text", "latex", "json"):
        raise ValueError(f"format must be one of text, latex, json; got {args.format!r}")
    if args.k is not None:
        check_count(args.k, "--k", minimum=0)
    if args.shift:
        return _print_shift(args)
    ct = counter_terms(args.order, args.method, nu=nu)
    view = {"k": args.k, "beta": args.beta, "steady_state": args.steady_state}
    if args.format == "json":
        print(json.dumps(to_json_data(ct, **view), indent=2, ensure_ascii=False))
    elif args.format == "latex":
        print(field_latex(ct, **view))
    else:
        print(field_text(ct, **view))
    return 0


def _add_version(parser: argparse.ArgumentParser) -> None:
    from . import __version__

    parser.add_argument("--version", action="version", version=f"hbflow {__version__}")


def _print_shift(args) -> int:
    from ._format import shift_json_data, shift_latex, shift_text
    from ._shift import shifted_start

    start = shifted_start(args.order, args.method)
    if args.format == "json":
        print(json.dumps(shift_json_data(start, beta=args.beta), indent=2, ensure_ascii=False))
    elif args.format == "latex":
        print(shift_latex(start, beta=args.beta))
    else:
        print(shift_text(start, beta=args.beta))
    return 0


#: Each subcommand and the function that adds its parser.
_SUBCOMMANDS = {"derive": _add_derive_parser, "order": add_order_parser, "sweep": add_sweep_parser}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line; with a known `command`, only that subcommand's parser is built.

    Building the ``order`` and ``sweep`` parsers imports the numerical side (their help lists
    the built-in problems); ``hbflow derive`` is exact arithmetic and starts without it.
    """
    parser = _Parser(
        prog="hbflow",
        description="Continuous-time models of heavy-ball, Nesterov and gradient descent.",
    )
    _add_version(parser)
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, add in _SUBCOMMANDS.items():
        if command not in _SUBCOMMANDS or command == name:
            add(subparsers)
    return parser


def _command(argv: list[str]) -> str | None:
    """The subcommand `argv` names: its first word that is not an option (none take values)."""
    return next((a for a in argv if not a.startswith("-")), None)


#: Exit status after an interrupt (128 + SIGINT) and after a closed stdout (128 + SIGPIPE).
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


class _Interrupts:
    """Records every SIGINT, so that an interrupt swallowed on its way up still ends the run.

    JAX runs Python callbacks (its garbage-collection callback, for one) where an exception
    is printed as "Exception ignored" and dropped: a `KeyboardInterrupt` raised there never
    reaches `main`.  The handler sets `seen` before raising, and `main` returns 130 whenever
    it is set; `check` lets long loops raise again at their next step.
    """

    def __init__(self) -> None:
        self.seen = False

    def handler(self, signum, frame) -> None:
        self.seen = True
        raise KeyboardInterrupt

    def check(self) -> None:
        """Raise `KeyboardInterrupt` if an interrupt was seen (and perhaps swallowed)."""
        if self.seen:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self):
        """Install the handler; the record starts clean and is cleared again on the way out."""
        self.seen = False
        try:
            if threading.current_thread() is not threading.main_thread():
                yield  # signal handlers can only be set from the main thread
                return
            previous = signal.signal(signal.SIGINT, self.handler)
            try:
                yield
            finally:
                signal.signal(signal.SIGINT, previous)
        finally:
            self.seen = False


INTERRUPTS = _Interrupts()


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit raises no second broken pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # a replaced stream without a descriptor
        pass


def one_device_per_core() -> None:
    """Let JAX's CPU backend offer one device per available core, so that a sweep, which shards
    its points over all devices, runs on every core (XLA runs one program mostly on one core).

    Only before JAX is imported (the flag is read when its CPU backend starts), and only if
    ``XLA_FLAGS`` does not already choose a device count.  Results do not depend on the number
    of devices; accelerators are not affected.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "jax" in sys.modules or "xla_force_host_platform_device_count" in flags:
        return
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    if cores > 1:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={cores}".strip()


def main(argv: list[str] | None = None) -> int:
    return _run_command(_parse(argv))


def _parse(argv: list[str] | None) -> argparse.Namespace:
    argv = sys.argv[1:] if argv is None else argv
    if _command(argv) == "sweep":
        one_device_per_core()
    return build_parser(_command(argv)).parse_args(argv)


def _run_command(args: argparse.Namespace) -> int:
    with INTERRUPTS.installed():
        try:
            if args.command in ("order", "sweep"):
                from ._jax_cache import enable_compilation_cache

                enable_compilation_cache(
                    False if getattr(args, "no_compilation_cache", False) else None
                )
            code = int(args.run(args) or 0)
            sys.stdout.flush()
        except KeyboardInterrupt:
            code = EXIT_INTERRUPTED
        except BrokenPipeError:  # the reader went away (| head): nothing left to say
            _quiet_stdout()
            return EXIT_BROKEN_PIPE
        except (ValueError, KeyError, TypeError, ImportError, OSError) as err:
            message = err.args[0] if isinstance(err, KeyError) and err.args else err
            code = _fail(str(message))
        if INTERRUPTS.seen:
            code = EXIT_INTERRUPTED
    if code == EXIT_INTERRUPTED:
        print("hbflow: interrupted", file=sys.stderr)
    return code


def console_main() -> int:
    """The ``hbflow`` command: `main`, in a process that ends when it returns.

    Python's full garbage collections walk every object JAX, equinox and hbflow made, and at
    exit Python tears its modules down with several of them: about 0.35 s after a study, a
    fifth of a warm ``hbflow order``.  Objects frozen with `gc.freeze` are left out of every
    later collection, and the operating system frees them with the process.  They are frozen
    twice: once the command line is read (the parsers of ``order`` and ``sweep`` list the
    built-in problems, which imports JAX), since the modules live until the exit anyway; and
    when nothing is left to run but the exit itself: every file hbflow writes is closed by
    then, the standard streams are still flushed at exit, and the exit handlers still run.
    A process that goes on after a command (a test, a notebook) calls `main`, which does
    not freeze.
    """
    args = _parse(None)
    gc.freeze()
    code = _run_command(args)
    gc.freeze()
    return code


if __name__ == "__main__":
    # The package's own module, not this __main__ copy: its INTERRUPTS is the one that
    # `hbflow order` checks.
    from hbflow._cli import console_main as _console_main

    sys.exit(_console_main())
