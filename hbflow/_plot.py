"""Plots of an order study: max error against the step size, and error along the trajectory."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._compare import OrderStudy

__all__ = ["plot_order_study"]


def plot_order_study(study: OrderStudy, path: str | Path) -> Path:
    r"""Save a two-panel figure of `study` to `path` (format from the suffix, e.g. ``.png``).

    Left: $\max_k\|u(t_k)-u_k\|$ against $\eta$ on log–log axes, one line per model, with the
    fitted slope in the legend and a dashed least-squares line.  Right: the error
    $\|u(t_k)-u_k\|$ along the trajectory for the smallest $\eta$.

    **Returns:** the path written.

    **Raises:** `ValueError` if `study` is not an `OrderStudy` or `path` has no suffix.
    """
    if not isinstance(study, OrderStudy):
        raise ValueError(f"study must be an OrderStudy (from hbflow.compare), got {study!r}")
    if not isinstance(path, (str, Path)) or not Path(path).suffix:
        raise ValueError(f"path must be a file name with a suffix such as .png, got {path!r}")
    # A bare Figure draws with the Agg canvas without touching pyplot or the session's backend.
    from matplotlib.figure import Figure

    path = Path(path)
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_order, ax_traj = fig.subplots(1, 2)
    etas = np.asarray(study.etas)
    smallest = int(np.argmin(etas))
    x = np.log(etas)
    for i, (name, m) in enumerate(study.models.items()):
        color = f"C{i % 10}"
        label = f"{name} (expected {m.expected_order}, slope {m.slope:.2f})"
        ax_order.loglog(etas, m.max_errors, "o-", color=color, label=label)
        if np.isfinite(m.slope):
            intercept = np.mean(np.log(m.max_errors) - m.slope * x)
            ax_order.loglog(etas, np.exp(intercept + m.slope * x), "--", color=color, lw=0.8)
        errors = np.asarray(m.errors[smallest])
        ts = np.arange(len(errors)) * etas[smallest]
        shown = errors > 0  # e_0 = 0: both start at u0
        ax_traj.semilogy(ts[shown], errors[shown], color=color, label=name)
    ax_order.set_xlabel(r"step size $\eta$")
    ax_order.set_ylabel(r"$\max_k \|u(t_k) - u_k\|$")
    ax_order.set_title(
        f"{study.method}, β = {study.beta:g}, horizon T = {study.horizon:g}", fontsize=10
    )
    ax_order.legend(fontsize=8)
    ax_order.grid(True, which="both", alpha=0.3)
    ax_traj.set_xlabel(r"$t = k\eta$")
    ax_traj.set_ylabel(r"$\|u(t_k) - u_k\|$")
    ax_traj.set_title(f"error along the trajectory, η = {etas[smallest]:g}", fontsize=10)
    ax_traj.grid(True, which="both", alpha=0.3)
    ax_traj.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path
