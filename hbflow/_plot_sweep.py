r"""Plots of a sweep's table: max error over $(\beta, \eta)$, and against $\lambda$ per $\beta$."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["plot_sweep_heatmap", "plot_lambda_collapse"]


def _check(rows, path) -> tuple[list[dict], Path]:
    """The rows to draw (those of the first row's method, horizon, data and start), the path."""
    if not isinstance(path, (str, Path)) or not Path(path).suffix:
        raise ValueError(f"path must be a file name with a suffix such as .png, got {path!r}")
    rows = list(getattr(rows, "rows", rows))
    if not rows or not all(isinstance(r, dict) for r in rows):
        raise ValueError("rows must be a non-empty sweep table (hbflow.sweep(...).rows)")

    # One panel set per (method, horizon, data, start) of the first row: the others are not drawn.
    def key(r: dict) -> tuple:
        return r["method"], r["horizon"], r["data"], r.get("start", 0)

    rows = [r for r in rows if key(r) == key(rows[0])]
    return rows, Path(path)


def _figure(n_panels: int, width: float, height: float):
    # A bare Figure draws with the Agg canvas without touching pyplot or the session's backend.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * n_panels, height), layout="constrained")
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    return fig, axes


def plot_sweep_heatmap(rows: Sequence[dict], path: str | Path) -> Path:
    r"""Save one heatmap per model of $\log_{10}\max_k\|u(t_k)-u_k\|$ over $(\beta, \eta)$.

    Rows with several methods, horizons, data sets or starts are reduced to the first of each;
    failed runs are left blank.

    **Arguments:** `rows`: a sweep's table (`SweepResult` or its `rows`); `path`: the file
    (format from the suffix).

    **Returns:** the path written.

    **Raises:** `ValueError` for an empty table or a path without suffix.
    """
    rows, path = _check(rows, path)
    models = list(dict.fromkeys(r["model"] for r in rows))
    betas = sorted({r["beta"] for r in rows})
    etas = sorted({r["eta"] for r in rows})
    fig, axes = _figure(len(models), 4.2, 3.6)
    values = {m: np.full((len(betas), len(etas)), np.nan) for m in models}
    for r in rows:
        err = r["max_error"]
        if err is not None and math.isfinite(err) and err > 0:
            values[r["model"]][betas.index(r["beta"]), etas.index(r["eta"])] = math.log10(err)
    finite = np.concatenate([v[np.isfinite(v)] for v in values.values()])
    vmin, vmax = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    image = None
    for ax, m in zip(axes, models):
        image = ax.imshow(
            values[m], origin="lower", aspect="auto", vmin=vmin, vmax=vmax, cmap="viridis"
        )
        ax.set_xticks(range(len(etas)), [f"{e:.3g}" for e in etas], rotation=60, fontsize=7)
        ax.set_yticks(range(len(betas)), [f"{b:.3g}" for b in betas], fontsize=7)
        ax.set_xlabel(r"$\eta$")
        ax.set_ylabel(r"$\beta$")
        ax.set_title(m)
    assert image is not None  # _check refuses an empty table, so there is one model
    fig.colorbar(image, ax=list(axes), label=r"$\log_{10}\max_k \|u(t_k) - u_k\|$")
    fig.suptitle(f"{rows[0]['method']}, horizon {rows[0]['horizon']:g}")
    fig.savefig(path, dpi=110)
    return path


def plot_lambda_collapse(rows: Sequence[dict], path: str | Path) -> Path:
    r"""Save, per model, the max error against $\lambda = \eta/(1-\beta)^2$, one line per $\beta$.

    If the path depends on $(\eta, \beta)$ through $\lambda$ alone (Papazov et al., 2024), the
    lines of a model that describes it fall on each other.

    **Arguments:** `rows`: a sweep's table; `path`: the file (format from the suffix).

    **Returns:** the path written.

    **Raises:** `ValueError` for an empty table or a path without suffix.
    """
    rows, path = _check(rows, path)
    models = list(dict.fromkeys(r["model"] for r in rows))
    betas = sorted({r["beta"] for r in rows})
    fig, axes = _figure(len(models), 4.2, 3.6)
    for ax, m in zip(axes, models):
        for i, b in enumerate(betas):
            pts = sorted(
                (r["lambda"], r["max_error"])
                for r in rows
                if r["model"] == m and r["beta"] == b and math.isfinite(r["max_error"])
            )
            if pts:
                lam, err = zip(*pts)
                ax.loglog(lam, err, "o-", color=f"C{i % 10}", label=rf"$\beta$ = {b:g}")
        ax.set_xlabel(r"$\lambda = \eta/(1-\beta)^2$")
        ax.set_ylabel(r"$\max_k \|u(t_k) - u_k\|$")
        ax.set_title(m)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.savefig(path, dpi=110)
    return path
