"""``hbflow sweep``: every model at every point of a grid of (method, beta, eta, horizon, seed)."""

from __future__ import annotations

import argparse
import math
import os
import sys

from ._checks import check_count
from ._cli_order import (
    DEFAULTS,
    _check_x0_fits,
    _float,
    _floats,
    _int,
    _load_loss,
    _stderr_is_terminal,
)

__all__ = ["add_sweep_parser", "run_sweep"]


def add_sweep_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``sweep`` subcommand on an `argparse` subparsers object."""
    p = subparsers.add_parser(
        "sweep",
        help="errors of continuous models over a grid of beta, eta (or lambda), horizon, seed, "
        "start",
        description=(
            "Evaluate every model at every point of a grid (methods x betas x etas or lambdas x "
            "horizons x seeds x starts), batched with one compilation per model and split across "
            "all JAX devices. The table (one row per point and model) is written to "
            "OUT/results.csv and OUT/results.json as chunks finish; run the same command again "
            "to resume."
        ),
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("--problem", help="a named problem (default: the built-in 2-D problem)")
    source.add_argument(
        "--loss", help="module:function, a JAX scalar loss importable from the current directory"
    )
    p.add_argument(
        "--x0",
        help="start, comma-separated (default: the problem's); several starts, a grid axis, "
        "separated by semicolons: '1,2;-1,0.5'",
    )
    p.add_argument(
        "--method",
        default=DEFAULTS["method"],
        help="hb (default), nag, gd, nesterov, qhm, or a list",
    )
    p.add_argument("--betas", default=str(DEFAULTS["beta"]), help="momenta in [0, 1), a list")
    p.add_argument(
        "--nu", default=None, help="nu of qhm in [0, 1] (required with qhm, refused otherwise)"
    )
    steps = p.add_mutually_exclusive_group()
    steps.add_argument("--etas", default=None, help=f"step sizes (default {DEFAULTS['etas']})")
    steps.add_argument("--lambdas", default=None, help="lambda = eta/(1-beta)^2 instead of etas")
    p.add_argument(
        "--horizon", default=str(DEFAULTS["horizon"]), help="horizon T, or a list of them"
    )
    p.add_argument(
        "--models",
        default=DEFAULTS["models"],
        help="comma-separated: hbfN, steadyN (N >= 1), rgf, ks2, mgf, gf",
    )
    p.add_argument(
        "--seeds",
        default=None,
        help="seeds of the data (diagonal-linear-network, deep-linear-network): a grid axis",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder of the table (resumable)")
    p.add_argument("--chunk-size", default="64", help="points per batched call (default 64)")
    p.add_argument("--rtol", default="1e-12", help="solver relative tolerance (default 1e-12)")
    p.add_argument("--atol", default="1e-12", help="solver absolute tolerance (default 1e-12)")
    p.add_argument(
        "--max-steps", default="4096", help="most solver steps on one piece (default 4096)"
    )
    p.add_argument(
        "--no-solver-check",
        action="store_true",
        help="skip the 100x tighter solve that estimates the solver error",
    )
    p.add_argument(
        "--plot",
        action="store_true",
        help="also save OUT/heatmap.png (max error over beta, eta) and OUT/lambda.png",
    )
    p.add_argument(
        "--no-compilation-cache",
        action="store_true",
        help="do not use the persistent compilation cache (also: HBFLOW_COMPILATION_CACHE=0)",
    )
    p.set_defaults(run=run_sweep)
    return p


def _names(text: str, what: str) -> list[str]:
    names = [s.strip() for s in str(text).split(",") if s.strip()]
    if not names:
        raise ValueError(f"--{what} must name at least one value")
    return names


def _seeds(text: str) -> list[int]:
    out = []
    for s in _names(text, "seeds"):
        try:
            out.append(int(s))
        except ValueError:
            raise ValueError(f"--seeds must be a comma-separated list of integers, got {s!r}")
    return out


def run_sweep(args: argparse.Namespace) -> int:
    """Run ``hbflow sweep`` with parsed arguments; print a summary and the fitted slopes.

    Returns 0, or 1 if some runs failed (their rows carry the message).

    **Raises:** `ValueError` for bad input (the caller prints it, without traceback).
    """
    try:
        return _run(args)
    except RuntimeError as err:  # e.g. float64 switched off: report, no traceback
        print(f"hbflow: error: {err}", file=sys.stderr)
        return 1


def _inputs(args: argparse.Namespace) -> dict:
    import numpy as np

    from ._models import check_method, model_from_name
    from ._problems import DEFAULT_PROBLEM, get_problem, problem_names
    from ._validate import parse_nu

    methods = [check_method(m) for m in _names(args.method, "method")]
    betas = _floats(args.betas, "betas")
    # Read like hbflow order's --nu (0.7 or 7/10), and named --nu in errors.
    nu_exact = parse_nu(args.nu, "qhm" if "qhm" in methods else methods[0], name="--nu")
    nu = None if nu_exact is None else float(nu_exact)
    for b in betas:
        if not 0.0 <= b < 1.0:
            raise ValueError(f"--betas: every beta must be in [0, 1), got {b:g}")
    if args.lambdas is not None:
        etas, lambdas = None, _floats(args.lambdas, "lambdas")
        steps, name = lambdas, "lambdas"
    else:
        etas, lambdas = _floats(args.etas or DEFAULTS["etas"], "etas"), None
        steps, name = etas, "etas"
    for s in steps:
        if s <= 0:
            raise ValueError(f"--{name}: every value must be > 0, got {s:g}")
    horizons = _floats(args.horizon, "horizon")
    for h in horizons:
        if h <= 0:
            raise ValueError(f"--horizon must be > 0, got {h:g}")
    models = [model_from_name(n) for n in _names(args.models, "models")]
    rtol, atol = _float(args.rtol, "rtol"), _float(args.atol, "atol")
    if rtol <= 0 or atol <= 0:
        raise ValueError("--rtol and --atol must be > 0")
    max_steps = check_count(_int(args.max_steps, "max-steps"), "--max-steps")
    chunk_size = check_count(_int(args.chunk_size, "chunk-size"), "--chunk-size")

    data = {}
    if args.loss:
        if args.seeds is not None:
            raise ValueError("--seeds needs a --problem built from seeded data")
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
        label = problem.name
        if args.seeds is not None:
            seeded = _seeded_problems(name, _seeds(args.seeds))
            loss = problem.data_loss
            data = {"datasets": [p.loss_data for p in seeded]}
            problem = seeded[0]
            label += f" seeds {args.seeds}"
        elif problem.data_loss is not None:  # the data as arguments, not compiled constants
            loss = problem.data_loss
            data = {"data": problem.loss_data}
        else:
            loss = problem.loss
    if args.x0 is not None:
        parts = [part for part in str(args.x0).split(";") if part.strip()]
        if not parts:
            raise ValueError(f"--x0 must be a comma-separated list of numbers, got {args.x0!r}")
        # on the host: converting lists on the device would compile a program per length
        starts = [np.array(_floats(part, "x0"), dtype=np.float64) for part in parts]
        for x0 in starts:
            if not args.loss:
                _check_x0_fits(x0, problem)
        start = {"u0": starts[0]} if len(starts) == 1 else {"starts": starts}
    else:
        start = {"u0": problem.x0}
    return dict(
        loss=loss,
        **start,
        method=methods,
        betas=betas,
        nu=nu,
        etas=etas,
        lambdas=lambdas,
        horizon=horizons,
        models=models,
        rtol=rtol,
        atol=atol,
        max_steps=max_steps,
        chunk_size=chunk_size,
        solver_check=not args.no_solver_check,
        label=label,
        **data,
    )


def _seeded_problems(name: str, seeds: list[int]):
    from ._problems import deep_linear_network, diagonal_linear_network

    factories = {
        "diagonal-linear-network": diagonal_linear_network,
        "deep-linear-network": deep_linear_network,
    }
    if name not in factories:
        raise ValueError(
            f"--seeds: problem {name!r} has no seed; seeded problems: {', '.join(factories)}"
        )
    return [factories[name](seed=s) for s in seeds]


def _run(args: argparse.Namespace) -> int:
    from ._sweep import sweep

    inputs = _inputs(args)
    out = args.out
    if not out or os.path.isfile(out):
        raise ValueError(f"--out must be a folder, got {out!r}")
    progress = _stderr_is_terminal()
    result = sweep(
        **inputs,
        out=out,
        progress=progress,
        compilation_cache=False if args.no_compilation_cache else None,
    )
    failed = result.failures
    print(f"problem: {inputs['label']}")
    print(
        f"{len(result.points)} points x {len(result.models)} models on {result.devices} "
        f"device(s) in {result.seconds:.2f} s; {len(result.resumed_chunks)} of "
        f"{len(result.resumed_chunks) + len(result.computed_chunks)} chunks loaded from {out}"
    )
    if result.slopes:
        print("slopes of log max error against log eta:")
        print(
            f"  {'method':<6} {'beta':>8} {'horizon':>8} {'data':>4} {'start':>5}  {'model':<8} "
            "slope  expected"
        )
        for s in result.slopes:
            slope = "-" if math.isnan(s["slope"]) else f"{s['slope']:.2f}"
            print(
                f"  {s['method']:<6} {s['beta']:>8g} {s['horizon']:>8g} {s['data']:>4} "
                f"{s['start']:>5}  "
                f"{s['model']:<8} {slope:>5}  {s['expected_order']}"
            )
    print(f"table written to {os.path.join(out, 'results.csv')} and results.json")
    if args.plot:
        from ._plot_sweep import plot_lambda_collapse, plot_sweep_heatmap

        heat = plot_sweep_heatmap(result.rows, os.path.join(out, "heatmap.png"))
        lam = plot_lambda_collapse(result.rows, os.path.join(out, "lambda.png"))
        print(f"plots written to {heat} and {lam}")
    if failed:
        first = failed[0]
        print(
            f"hbflow: error: {len(failed)} of {len(result.rows)} runs failed (their rows in the "
            f"table carry the message); first: {first['failure']}",
            file=sys.stderr,
        )
        return 1
    return 0
