"""``hbflow order``: how far each continuous model is from the iterates, and with what order."""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys

__all__ = ["add_order_parser", "run_order", "DEFAULTS"]

#: Settings of the built-in study (``hbflow order`` with no option).
DEFAULTS = {
    "method": "hb",
    "beta": 0.5,
    "etas": "0.04,0.02,0.01",
    "horizon": 2.0,
    "models": "hbf1,hbf2,hbf3,hbf4,rgf",
}


def add_order_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``order`` subcommand on an `argparse` subparsers object."""
    p = subparsers.add_parser(
        "order",
        help="measure the distance and order of continuous models against the iterates",
        description=(
            "For a loss, a start, a method and a sweep of step sizes at a fixed horizon, measure "
            "max_k |u(t_k) - u_k| between each continuous model and the iterates from rest, and "
            "fit its order in the step size. With no option, runs the built-in 2-D problem."
        ),
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("--problem", help="a named problem (default: the built-in 2-D problem)")
    source.add_argument(
        "--loss", help="module:function, a JAX scalar loss importable from the current directory"
    )
    p.add_argument("--x0", help="start, comma-separated (default: the problem's)")
    p.add_argument(
        "--method", default=DEFAULTS["method"], help="hb (default), nag, gd, nesterov or qhm"
    )
    p.add_argument(
        "--beta", default=None, help=f"momentum in [0, 1) (default {DEFAULTS['beta']}; 0 for gd)"
    )
    p.add_argument(
        "--nu", default=None, help="nu of qhm in [0, 1], e.g. 0.7 or 7/10 (qhm only, required)"
    )
    p.add_argument("--etas", default=DEFAULTS["etas"], help="step sizes, comma-separated")
    p.add_argument(
        "--horizon",
        default=str(DEFAULTS["horizon"]),
        help="horizon T (a multiple of every step size)",
    )
    p.add_argument(
        "--models",
        default=DEFAULTS["models"],
        help="comma-separated: hbfN, steadyN (N >= 1), rgf, ks2, mgf, gf",
    )
    p.add_argument("--format", default="text", help="text (default) or json")
    p.add_argument("--plot", metavar="FILE.png", help="also save a plot")
    p.add_argument("--rtol", default="1e-12", help="solver relative tolerance (default 1e-12)")
    p.add_argument("--atol", default="1e-12", help="solver absolute tolerance (default 1e-12)")
    p.add_argument(
        "--max-steps", default="4096", help="most solver steps on one piece (default 4096)"
    )
    p.set_defaults(run=run_order)
    return p


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


_RANGES = {
    "beta": "in [0, 1)",
    "etas": "> 0",
    "horizon": "> 0",
    "rtol": "> 0",
    "atol": "> 0",
    "x0": "(finite)",
}


def _float(text: str, name: str) -> float:
    where = f" {_RANGES[name]}" if name in _RANGES else ""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"--{name} must be a number{where}, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"--{name} must be finite, got {text!r}")
    return value


def _floats(text: str, name: str) -> list[float]:
    parts = [s.strip() for s in str(text).split(",") if s.strip()]
    if not parts:
        raise ValueError(f"--{name} must be a comma-separated list of numbers, got {text!r}")
    return [_float(s, name) for s in parts]


def _int(text: str, name: str) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        raise ValueError(f"--{name} must be an integer >= 1, got {text!r}") from None


def _load_loss(spec: str):
    module_name, sep, func_name = spec.partition(":")
    if not sep or not module_name or not func_name:
        raise ValueError(f"--loss must be module:function, got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # any failure to import the user's module is a bad --loss
        raise ValueError(
            f"--loss: cannot import module {module_name!r} from the current directory: {err}"
        ) from None
    loss = getattr(module, func_name, None)
    if loss is None or not callable(loss):
        raise ValueError(f"--loss: module {module_name!r} has no function {func_name!r}")
    return loss


def run_order(args: argparse.Namespace) -> int:
    """Run ``hbflow order`` with parsed arguments; print the table or JSON.

    Returns 0, or 1 if some runs failed (diverging iterates, a failed solve): then the partial
    table or JSON is still printed (and plotted with ``--plot``), and the failures go to stderr.
    Progress goes to stderr when it is a terminal and the format is text.

    **Raises:** `ValueError` for bad input (the caller prints it, without traceback).
    """
    try:
        return _run(args)
    except RuntimeError as err:  # e.g. float64 switched off: report, no traceback
        print(f"hbflow: error: {err}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    import jax.numpy as jnp

    from ._compare import compare, failure_summary
    from ._models import model_from_name
    from ._problems import DEFAULT_PROBLEM, get_problem, problem_names
    from ._validate import check_beta, check_count, check_method, check_positive, parse_nu

    if args.format not in ("text", "json"):
        raise ValueError(f"--format must be text or json, got {args.format!r}")
    method = check_method(args.method)
    if args.beta is None:
        beta = 0.0 if method == "gd" else DEFAULTS["beta"]
    else:
        beta = check_beta(_float(args.beta, "beta"), method, name="--beta")
    # Read exactly, as the derivation reads it ("0.7" is 7/10); the iterates use its float.
    nu_exact = parse_nu(args.nu, method, name="--nu")
    nu = None if nu_exact is None else float(nu_exact)
    etas = [check_positive(eta, "--etas: every step size") for eta in _floats(args.etas, "etas")]
    horizon = check_positive(_float(args.horizon, "horizon"), "--horizon")
    names = [s.strip() for s in args.models.split(",") if s.strip()]
    if not names:
        raise ValueError("--models must name at least one model")
    models = [model_from_name(n) for n in names]
    rtol = check_positive(_float(args.rtol, "rtol"), "--rtol")
    atol = check_positive(_float(args.atol, "atol"), "--atol")
    max_steps = check_count(_int(args.max_steps, "max-steps"), "--max-steps")

    if args.loss:
        loss = _load_loss(args.loss)
        if args.x0 is None:
            raise ValueError("--x0 is required with --loss")
        label = args.loss
    else:
        name = args.problem or DEFAULT_PROBLEM
        if name not in problem_names():
            raise ValueError(
                f"--problem: unknown problem {name!r}; valid: {', '.join(problem_names())}"
            )
        problem = get_problem(name)
        loss = problem.loss
        label = problem.name
    if args.x0 is not None:
        x0 = jnp.asarray(_floats(args.x0, "x0"), dtype=jnp.float64)
        if not args.loss:
            _check_x0_fits(x0, problem)
    else:
        x0 = problem.u0
    if args.plot and not os.path.splitext(args.plot)[1]:
        raise ValueError(
            f"--plot must be a file name with a suffix such as .png, got {args.plot!r}"
        )

    progress = args.format == "text" and _stderr_is_terminal()
    # A partial study is printed too: what was computed, then the failures.
    study = compare(
        loss,
        x0,
        method=method,
        beta=beta,
        nu=nu,
        etas=etas,
        horizon=horizon,
        models=models,
        rtol=rtol,
        atol=atol,
        max_steps=max_steps,
        progress=progress,
        throw=False,
    )
    if args.format == "json":
        data = study.to_json()
        data = {"problem": label, **data}
        print(json.dumps(data, indent=2))
    else:
        print(f"problem: {label}")
        print(study.to_text())
    if args.plot:
        from ._plot import plot_order_study

        path = plot_order_study(study, args.plot)
        if args.format == "text":
            print(f"plot written to {path}")
    for warning in study.warnings:
        if args.format == "json":
            print(f"hbflow: warning: {warning}", file=sys.stderr)
    if study.failures:
        if args.format == "json":
            print(f"hbflow: error: {failure_summary(study)}", file=sys.stderr)
            for f in study.failures:
                print(f"- eta={f.eta:g}, {f.model or 'iterates'}: {f.message}", file=sys.stderr)
        else:  # the failures are already listed under the table
            print(
                f"hbflow: error: {failure_summary(study)}; the failures are listed under the table",
                file=sys.stderr,
            )
        return 1
    return 0


def _check_x0_fits(x0, problem) -> None:
    import jax

    leaves = jax.tree_util.tree_leaves(problem.u0)
    if len(leaves) != 1:
        raise ValueError(
            f"--x0 cannot set the start of {problem.name}: its parameters are a pytree of "
            f"{len(leaves)} arrays; drop --x0, or use --loss with your own module"
        )
    size = int(leaves[0].size)
    if x0.shape != (size,) or leaves[0].ndim != 1:
        raise ValueError(
            f"--x0 must have {size} numbers for problem {problem.name} (its start is "
            f"{', '.join(f'{v:g}' for v in leaves[0].ravel().tolist())}), got {x0.shape[0]}"
        )
