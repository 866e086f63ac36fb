"""Plots of an order study: max error against the step size, and error along the trajectory."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ._compare import OrderStudy

__all__ = ["plot_order_study", "model_color"]

#: One colour per fixed model, the same in every figure (colour-blind-safe Okabe–Ito hues).
_FIXED_COLORS = {
    "gf": "#000000",
    "rgf": "#D55E00",
    "ks2": "#009E73",
    "mgf": "#CC79A7",
}
#: The heavy-ball flows of order 1, 2, ...: distinct hues (Okabe–Ito and Tol), cycled after 6.
_HBF_COLORS = ("#56B4E9", "#0072B2", "#332288", "#882255", "#44AA99", "#999933")


def model_color(name: str) -> tuple[float, float, float, float] | str:
    """The colour of the model called `name`, fixed so that it is the same in every figure.

    ``gf``, ``rgf``, ``ks2`` and ``mgf`` have one colour each; ``hbfN`` has one of six distinct
    hues (cycled beyond ``hbf6``); ``steadyN`` is a shade of orange, darker as $N$ grows (up to
    6, then the darkest).  Any other name gets grey.

    **Returns:** a matplotlib colour.
    """
    if name in _FIXED_COLORS:
        return _FIXED_COLORS[name]
    match = re.fullmatch(r"(hbf|steady)(\d+)", name) if isinstance(name, str) else None
    if match is None or int(match.group(2)) < 1:
        return "#7F7F7F"
    n = int(match.group(2))
    if match.group(1) == "hbf":
        return _HBF_COLORS[(n - 1) % len(_HBF_COLORS)]
    from matplotlib import colormaps

    return colormaps["Oranges"](0.45 + 0.5 * (min(n, 6) - 1) / 5)


def _check_path(path) -> Path:
    """`path` as a `Path` whose suffix names a format matplotlib writes."""
    from matplotlib.figure import Figure

    if not isinstance(path, (str, Path)) or not Path(path).suffix:
        raise ValueError(
            f"path must be a file name with a suffix such as .png, .pdf or .svg, got {path!r}"
        )
    path = Path(path)
    formats = Figure().canvas.get_supported_filetypes()
    suffix = path.suffix[1:].lower()
    if suffix not in formats:
        raise ValueError(
            f"path must end in a format matplotlib writes ({', '.join(sorted(formats))}), "
            f"got {path.name!r}"
        )
    return path


def _slope_triangle(ax, etas: np.ndarray, errors: np.ndarray, order: int, color) -> None:
    r"""A slope triangle of slope `order` under the data of one model, labelled with the order.

    The horizontal leg spans the middle half of the step sizes (in $\log\eta$); the triangle sits
    a factor 3 below the least-squares line through `errors` at the same $\eta$, so it never
    covers a data point of that model.
    """
    x = np.log(etas)
    y = np.log(errors)
    lo, hi = x.min(), x.max()
    x0, x1 = lo + 0.25 * (hi - lo), lo + 0.75 * (hi - lo)
    # The model's points, not its fitted slope, fix the height: below each point by a factor 3.
    base = np.min(y - order * x) + order * x0 - np.log(3.0)
    y1 = base + order * (x1 - x0)
    e0, e1 = np.exp([x0, x1])
    v0, v1 = np.exp([base, y1])
    ax.plot([e0, e1, e1, e0], [v0, v0, v1, v0], color=color, lw=0.9, alpha=0.8)
    ax.annotate(
        str(order),
        xy=(e1, np.sqrt(v0 * v1)),
        xytext=(3, 0),
        textcoords="offset points",
        va="center",
        fontsize=8,
        color=color,
    )


def plot_order_study(study: OrderStudy, path: str | Path, *, problem: str | None = None) -> Path:
    r"""Save a two-panel figure of `study` to `path`, in the format of its suffix.

    Left: $\max_k\|u(t_k)-u_k\|$ against $\eta$ on log–log axes, one line per model, with a dashed
    least-squares line and, for every expected order $p \ge 1$, a slope triangle of slope $p$
    under the first model that expects it.  Right: the error $\|u(t_k)-u_k\|$ along the
    trajectory for the smallest $\eta$.  Each model has the colour of `model_color` in both
    panels; the legend (model, expected order, fitted slope) sits under the panels, outside the
    data; the title names the problem, the method, β and the horizon.

    **Arguments:**

    - `study`: an `OrderStudy` from `compare`.
    - `path`: the file; its suffix picks the format: ``.png`` (raster), ``.pdf`` or ``.svg``
      (vector, for a paper), or any other format matplotlib writes.
    - `problem`: the problem's name for the title (default: `study.problem`, if set).

    **Returns:** the path written.

    **Raises:** `ValueError` if `study` is not an `OrderStudy`, or `path` has no suffix or one
    matplotlib cannot write.
    """
    if not isinstance(study, OrderStudy):
        raise ValueError(f"study must be an OrderStudy (from hbflow.compare), got {study!r}")
    path = _check_path(path)
    if problem is not None and not isinstance(problem, str):
        raise ValueError(f"problem must be a string (the problem's name), got {problem!r}")
    fig = _figure(study, problem)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    return path


def _figure(study: OrderStudy, problem: str | None):
    """The figure of `plot_order_study`, not yet saved."""
    problem = problem if problem is not None else study.problem
    # A bare Figure draws with the Agg canvas without touching pyplot or the session's backend.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.8), layout="constrained")
    ax_order, ax_traj = fig.subplots(1, 2)
    etas = np.asarray(study.etas)
    smallest = int(np.argmin(etas))
    x = np.log(etas)
    triangles: set[int] = set()
    for name, m in study.models.items():
        color = model_color(name)
        label = f"{name} (expected {m.expected_order}, slope {m.slope:.2f})"
        ax_order.loglog(etas, m.max_errors, "o-", color=color, label=label)
        if np.isfinite(m.slope):
            intercept = np.mean(np.log(m.max_errors) - m.slope * x)
            ax_order.loglog(etas, np.exp(intercept + m.slope * x), "--", color=color, lw=0.8)
            if m.expected_order >= 1 and m.expected_order not in triangles:
                triangles.add(m.expected_order)
                _slope_triangle(ax_order, etas, m.max_errors, m.expected_order, color)
        errors = np.asarray(m.errors[smallest])
        ts = np.arange(len(errors)) * etas[smallest]
        shown = errors > 0  # e_0 = 0: both start at u0
        ax_traj.semilogy(ts[shown], errors[shown], color=color, label=name)
    ax_order.set_xlabel(r"step size $\eta$")
    ax_order.set_ylabel(r"$\max_k \|u(t_k) - u_k\|$")
    ax_order.set_title("max error against the step size (triangles: expected slopes)", fontsize=10)
    ax_order.grid(True, which="both", alpha=0.3)
    ax_traj.set_xlabel(r"$t = k\eta$")
    ax_traj.set_ylabel(r"$\|u(t_k) - u_k\|$")
    ax_traj.set_title(f"error along the trajectory, η = {etas[smallest]:g}", fontsize=10)
    ax_traj.grid(True, which="both", alpha=0.3)
    head = f"{problem}: " if problem else ""
    fig.suptitle(
        f"{head}{_METHOD_NAMES.get(study.method, study.method)}, β = {study.beta:g}, "
        f"horizon T = {study.horizon:g}"
    )
    handles, labels = ax_order.get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="outside lower center",
        ncols=min(len(labels), 3),
        fontsize=8,
        frameon=False,
    )
    return fig


_METHOD_NAMES = {"hb": "heavy ball", "nag": "Nesterov", "gd": "gradient descent"}
