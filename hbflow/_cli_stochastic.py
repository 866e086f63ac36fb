"""``hbflow order --batch-size B``: weak orders of stochastic modified equations.

With ``--batch-size`` the order study is stochastic: the mini-batch iterates against the SDE
models (``sme1``, ``sme-steadyN``, ``sme-hbfN``, ``sme-hbfN-gamma``), with ``--paths N``
(Monte Carlo) or ``--paths exact`` (the exact moment oracle, least squares only), ``--seed``,
``--sampling`` and ``--phi``.  Text, JSON and plot as the deterministic study; the JSON has the
same layout (``max_errors``, ``slope``, …) plus the standard errors.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

__all__ = ["add_stochastic_arguments", "run_stochastic_order", "STOCHASTIC_DEFAULTS"]

#: What the stochastic study uses where the deterministic defaults make no sense.
STOCHASTIC_DEFAULTS = {"models": "sme1,sme-hbf2", "phi": "mean", "paths_mc": 1000}

#: The deterministic problem names accepted with --batch-size, and their finite sums.
_ALIASES = {"diagonal-linear-network": "diagonal-linear-network-sgd"}


def add_stochastic_arguments(p: argparse.ArgumentParser) -> None:
    """Add the stochastic options to the ``order`` parser."""
    g = p.add_argument_group(
        "stochastic study (with --batch-size)",
        "mini-batch iterates against stochastic modified equations (models sme1, "
        "sme-steadyN, sme-hbfN, sme-hbfN-gamma); problems least-squares, logistic-regression, "
        "diagonal-linear-network-sgd",
    )
    g.add_argument("--batch-size", help="mini-batch size B in [1, n]: makes the study stochastic")
    g.add_argument(
        "--paths",
        help="Monte Carlo paths (>= 2) or 'exact' (least squares; default there, else 1000)",
    )
    g.add_argument("--seed", default="0", help="random seed of the paths (default 0)")
    g.add_argument(
        "--sampling", default="with-replacement", help="with-replacement (default) or reshuffling"
    )
    g.add_argument(
        "--phi",
        default=STOCHASTIC_DEFAULTS["phi"],
        help="test functions, comma-separated: mean (default), second-moment, loss",
    )


def _int(text, name: str, low: int) -> int:
    try:
        value = int(str(text))
    except ValueError:
        raise ValueError(f"--{name} must be an integer >= {low}, got {text!r}") from None
    if value < low:
        raise ValueError(f"--{name} must be an integer >= {low}, got {text!r}")
    return value


def _floats(text: str, name: str) -> list[float]:
    out = []
    for part in [s.strip() for s in str(text).split(",") if s.strip()]:
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"--{name} must be comma-separated numbers, got {text!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"--{name}: every value must be finite and > 0, got {part}")
        out.append(value)
    if not out:
        raise ValueError(f"--{name} must be a comma-separated list of numbers, got {text!r}")
    return out


def run_stochastic_order(args: argparse.Namespace, deterministic_models: str) -> int:
    """Run the stochastic study for parsed ``order`` arguments; print the table or JSON.

    `deterministic_models` is the default of ``--models``: when it was not changed, the
    stochastic default ``sme1,sme-hbf2`` is used.

    **Raises:** `ValueError` for bad input (the caller prints it, without traceback).
    """
    from ._stochastic import compare_weak, get_stochastic_problem, stochastic_problem_names

    if args.format not in ("text", "json"):
        raise ValueError(f"--format must be text or json, got {args.format!r}")
    if args.loss:
        raise ValueError(
            "--loss cannot be combined with --batch-size: a stochastic study needs per-sample "
            "losses; use --problem with a stochastic problem "
            f"({', '.join(stochastic_problem_names())}) or hbflow.compare_weak in Python"
        )
    if args.x0 is not None:
        raise ValueError("--x0 cannot be combined with --batch-size; the problem sets the start")
    name = _ALIASES.get(args.problem, args.problem) or "least-squares"
    if name not in stochastic_problem_names():
        raise ValueError(
            f"--problem: {args.problem!r} has no mini-batch version; with --batch-size use one "
            f"of {', '.join(stochastic_problem_names())} (or diagonal-linear-network)"
        )
    problem = get_stochastic_problem(name)
    batch_size = _int(args.batch_size, "batch-size", 1)
    if batch_size > problem.n:
        raise ValueError(
            f"--batch-size must be in [1, n = {problem.n}] for {name}, got {batch_size}"
        )
    if args.paths is None:
        paths = "exact" if problem.least_squares is not None else STOCHASTIC_DEFAULTS["paths_mc"]
    elif args.paths.strip().lower() == "exact":
        paths = "exact"
    else:
        paths = _int(args.paths, "paths", 2)
    seed = _int(args.seed, "seed", 0)
    method = args.method
    if args.beta is None:
        beta = 0.0 if method == "gd" else 0.5
    else:
        try:
            beta = float(args.beta)
        except ValueError:
            raise ValueError(f"--beta must be a number in [0, 1), got {args.beta!r}") from None
    etas = _floats(args.etas, "etas")
    horizon = _floats(args.horizon, "horizon")
    if len(horizon) != 1:
        raise ValueError(f"--horizon must be one number > 0, got {args.horizon!r}")
    models_text = (
        STOCHASTIC_DEFAULTS["models"] if args.models == deterministic_models else (args.models)
    )
    models = [s.strip() for s in models_text.split(",") if s.strip()]
    phis = [s.strip() for s in args.phi.split(",") if s.strip()]
    if args.plot and not os.path.splitext(args.plot)[1]:
        raise ValueError(
            f"--plot must be a file name with a suffix such as .png, got {args.plot!r}"
        )
    study = compare_weak(
        problem,
        method=method,
        beta=beta,
        etas=etas,
        horizon=horizon[0],
        batch_size=batch_size,
        models=models,
        phis=phis,
        paths=paths,
        key=seed,
        sampling=args.sampling,
    )
    if args.format == "json":
        print(json.dumps(study.to_json(), indent=2))
        for warning in study.warnings:
            print(f"hbflow: warning: {warning}", file=sys.stderr)
    else:
        print(f"problem: {problem.name}")
        print(study.to_text())
    if args.plot:
        path = plot_weak_study(study, args.plot)
        if args.format == "text":
            print(f"plot written to {path}")
    return 0


def plot_weak_study(study, path) -> Path:
    """Max weak error against the step size (log–log, with ±2 standard errors), per model."""
    import numpy as np
    from matplotlib.figure import Figure

    path = Path(path)
    fig = Figure(figsize=(6, 4.2), layout="constrained")
    ax = fig.subplots()
    for i, (name, m) in enumerate(study.models.items()):
        expected = "measured" if m.expected_order is None else m.expected_order
        ax.errorbar(
            study.etas,
            m.max_errors,
            yerr=2 * np.asarray(m.max_errors_stderr),
            fmt="o-",
            color=f"C{i % 10}",
            label=f"{name} (expected {expected}, slope {m.slope:.2f})",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"step size $\eta$")
    ax.set_ylabel(rf"$\max_k |E\varphi(u_k) - E\varphi(u(t_k))|$, $\varphi$ = {study.phis[0]}")
    paths = "exact" if study.paths == "exact" else f"{study.paths} paths"
    ax.set_title(f"{study.method}, β = {study.beta:g}, B = {study.batch_size}, {paths}")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path
