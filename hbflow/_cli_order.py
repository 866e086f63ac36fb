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


#: What the table's columns mean, under ``hbflow order --help`` (also in docs/cli.md).
ORDER_EPILOG = (
    "Reading the table: 'slope' is the least-squares slope of log(max error) against log(eta), "
    "the measured order; 'spread' is the largest distance from it of the local slopes between "
    "neighbouring step sizes: near 0 the errors lie on a line and the slope is the order, "
    "several tenths mean the step sizes are not yet asymptotic (see lambda|H|) or the error "
    "reached the solver error. 'gf', the gradient flow, expects order 0 against heavy ball or "
    "Nesterov with beta > 0: their iterates move along du/dt = -grad L/(1-beta), 1/(1-beta) "
    "times faster, so its distance to them at a fixed horizon does not shrink with eta ('rgf' "
    "has the right speed: order 1); with gd (beta = 0) it expects order 1."
)


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
        epilog=ORDER_EPILOG,
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("--problem", help=_problem_help())
    source.add_argument(
        "--loss", help="module:function, a JAX scalar loss importable from the current directory"
    )
    p.add_argument(
        "--x0",
        help="the start: comma-separated numbers; module:name (an array or pytree, or a function "
        "of no arguments returning one, in an importable module); or a .npy file (an array) or "
        ".npz file (a dict of arrays) (default: the problem's)",
    )
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
        help=_models_help(),
    )
    p.add_argument(
        "--after",
        default="0",
        metavar="T0",
        help="take the errors over t_k >= T0 only, outside the initial layer "
        "(0 <= T0 < horizon; default 0)",
    )
    p.add_argument("--format", default="text", help="text (default) or json")
    p.add_argument(
        "--plot",
        metavar="FILE.png",
        help="also save a plot; the format follows the suffix (.png, or .pdf/.svg for a paper)",
    )
    p.add_argument("--rtol", default="1e-12", help="solver relative tolerance (default 1e-12)")
    p.add_argument("--atol", default="1e-12", help="solver absolute tolerance (default 1e-12)")
    p.add_argument(
        "--max-steps", default="4096", help="most solver steps on one piece (default 4096)"
    )
    p.add_argument(
        "--allow-large",
        action="store_true",
        help="run a study above the documented work limits (refused by default, with an "
        "estimate of its cost)",
    )
    from ._cli_stochastic import add_stochastic_arguments

    add_stochastic_arguments(p)
    p.set_defaults(run=run_order)
    return p


def _problem_help() -> str:
    from ._problems import DEFAULT_PROBLEM, problem_names

    return f"a built-in problem: {', '.join(problem_names())} (default: {DEFAULT_PROBLEM})"


#: The model families ``--models`` takes, with what each is (docs/theory.md#continuous-models).
MODEL_FAMILIES = {
    "hbfN": "heavy-ball flow of order N >= 1",
    "steadyN": "its steady state, a memoryless flow of order N >= 1",
    "shiftedN": "the steady state of order N started at the exact shifted point",
    "gf": "gradient flow",
    "rgf": "rescaled gradient flow",
    "ks2": "Kovachki-Stuart second-order ODE",
    "mgf": "momentum gradient flow",
}


def _models_help() -> str:
    families = "; ".join(f"{name}: {what}" for name, what in MODEL_FAMILIES.items())
    return f"comma-separated models ({families}) (default: {DEFAULTS['models']})"


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
    "after": "with 0 <= T0 < horizon",
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


def _import_user_module(module_name: str, attribute: str, option: str):
    """Import the user's module named in `option` from the current directory.

    **Raises:** `ValueError` naming `option` if the module cannot be imported, whatever the
    reason.
    """
    _check_module_name(module_name, attribute, option)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module_name)
    except Exception as err:  # any failure to import the user's module is a bad option
        raise ValueError(
            f"{option}: cannot import module {module_name!r} from the current directory: {err}"
        ) from None


def _load_loss(spec: str):
    module_name, sep, func_name = spec.partition(":")
    if not sep or not module_name or not func_name:
        raise ValueError(f"--loss must be module:function, got {spec!r}")
    module = _import_user_module(module_name, func_name, "--loss")
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
        if getattr(args, "batch_size", None) is not None:
            from ._cli_stochastic import run_stochastic_order

            return run_stochastic_order(args, DEFAULTS["models"])
        return _run(args)
    except RuntimeError as err:  # e.g. float64 switched off: report, no traceback
        print(f"hbflow: error: {err}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    import numpy as np

    from ._compare import compare, failure_summary
    from ._models import model_from_name
    from ._problems import DEFAULT_PROBLEM, get_problem, problem_names
    from ._validate import (
        check_after,
        check_beta,
        check_count,
        check_method,
        check_positive,
        parse_nu,
    )

    if args.format not in ("text", "json"):
        raise ValueError(f"--format must be one of text, json, got {args.format!r}")
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
    after = check_after(_float(args.after, "after"), horizon, name="--after")

    if args.loss:
        loss = _load_loss(args.loss)
        if args.x0 is None:
            raise ValueError(
                "--x0 is required with --loss: a comma list, module:name or a .npy/.npz file"
            )
        label = args.loss
    else:
        name = args.problem or DEFAULT_PROBLEM
        if name not in problem_names():
            raise ValueError(f"--problem must be one of {', '.join(problem_names())}, got {name!r}")
        problem = get_problem(name)
        loss = problem.loss
        label = problem.name
    start = None
    if args.x0 is not None and _is_comma_list(args.x0):
        # kept on the host: converting a list on the device would run (and compile) a program
        x0 = np.array(_floats(args.x0, "x0"), dtype=np.float64)
        if not args.loss:
            _check_x0_fits(x0, problem)
    elif args.x0 is not None:
        x0, start = _load_start(args.x0)
    else:
        x0 = problem.u0
    if args.plot and not os.path.splitext(args.plot)[1]:
        raise ValueError(
            f"--plot must be a file name with a suffix such as .png, got {args.plot!r}"
        )

    if args.plot:
        _check_writable(args.plot, "--plot")
    progress = args.format == "text" and _stderr_is_terminal()
    progress = _interruptible(progress)
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
        allow_large=args.allow_large,
        after=after,
    )
    if args.format == "json":
        data = study.to_json()
        data = {"problem": label, **({"start": start} if start else {}), **data}
        print(json.dumps(data, indent=2))
    else:
        print(f"problem: {label}")
        if start:
            print(f"start: {start}")
        print(study.to_text())
    if args.plot:
        from ._plot import plot_order_study

        path = plot_order_study(study, args.plot, problem=label)
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


def _check_module_name(module_name: str, attr: str, option: str) -> None:
    """Refuse a file name where a module name belongs, saying what to write instead."""
    if module_name.endswith(".py"):
        folder, _, stem = module_name[:-3].replace("\\", "/").rpartition("/")
        where = f" and run from {folder!r} (or add it to PYTHONPATH)" if folder else ""
        raise ValueError(
            f"{option} takes a module name, not a file: drop the .py{where}, e.g. "
            f"{option} {stem}:{attr}"
        )


def _is_comma_list(text: str) -> bool:
    return ":" not in text and not text.strip().lower().endswith((".npy", ".npz"))


def _load_start(text: str):
    """The start of ``--x0 module:name`` or ``--x0 FILE.npy|FILE.npz``, and what was loaded.

    Returns ``(u0, description)``; the description (the source and the structure: an array's
    shape, a dict's keys and shapes) is printed with the study.
    """
    from ._validate import as_float_tree

    text = text.strip()
    if text.lower().endswith((".npy", ".npz")):
        value = _load_array_file(text)
    else:
        value = _load_module_start(text)
    u0 = as_float_tree(value, "--x0", float64=True)
    return u0, f"{text}, {_structure(u0)}"


def _load_array_file(path: str):
    import numpy as np

    if not os.path.isfile(path):
        raise ValueError(f"--x0: no file {path!r} (from the current directory {os.getcwd()!r})")
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.ndarray):  # a .npy file: one array
            return data
        with data:  # a .npz file: a dict of arrays, one per name
            value = {key: np.array(data[key]) for key in data.files}
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"--x0: cannot read {path!r} as a NumPy .npy/.npz file: {err}") from None
    if not value:
        raise ValueError(f"--x0: {path!r} holds no arrays")
    return value


def _load_module_start(spec: str):
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise ValueError(f"--x0 must be numbers, module:name or a .npy/.npz file, got {spec!r}")
    module = _import_user_module(module_name, name, "--x0")
    if not hasattr(module, name):
        raise ValueError(f"--x0: module {module_name!r} has no attribute {name!r}")
    value = getattr(module, name)
    if callable(value) and not hasattr(value, "shape"):
        try:
            value = value()
        except Exception as err:  # the user's start function failed
            raise ValueError(
                f"--x0: {spec} is a function; calling it with no arguments failed: {err}"
            ) from None
    return value


def _structure(tree) -> str:
    import jax

    if isinstance(tree, dict) and all(hasattr(v, "shape") for v in tree.values()):
        keys = ", ".join(f"{k!r}: {tuple(v.shape)}" for k, v in tree.items())
        return f"a dict of {len(tree)} arrays {{{keys}}}"
    leaves = jax.tree_util.tree_leaves(tree)
    shape = getattr(tree, "shape", None)
    if len(leaves) == 1 and shape is not None:
        return f"an array of shape {tuple(shape)}"
    size = sum(int(x.size) for x in leaves)
    return f"a pytree of {len(leaves)} arrays, {size} numbers"


def _check_writable(path: str, option: str) -> None:
    """Refuse, before any work, an output file that cannot be written.

    Missing folders are fine (they are created), as long as the nearest existing one is a
    writable folder.

    **Raises:** `ValueError` naming `option` if the file is a folder or is not writable, or the
    nearest existing folder above it is not a folder or is not writable.
    """
    target = os.path.abspath(path)
    if os.path.isdir(target):
        raise ValueError(f"{option}: {path!r} is a folder; give a file name such as plot.png")
    if os.path.exists(target):
        if not os.access(target, os.W_OK):
            raise ValueError(f"{option}: cannot write {path!r} (permission denied)")
        return
    folder = os.path.dirname(target)
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise ValueError(f"{option}: cannot create a folder under {folder!r}: it is a file")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{option}: cannot write into the folder {folder!r} (permission denied)")


def _interruptible(progress: bool):
    """A `progress` callable for `compare` that also ends the run after a swallowed Ctrl-C.

    An interrupt raised inside a callback that drops exceptions is only recorded (see
    `hbflow._cli.INTERRUPTS`); checking the record after every run of the sweep stops it there.
    """
    from ._cli import INTERRUPTS
    from ._compare import _print_progress

    def report(p) -> None:
        INTERRUPTS.check()
        if progress:
            _print_progress(p)

    return report
