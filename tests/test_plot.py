"""Figures of an order study: vector formats, slope triangles, title, legend, fixed colours."""

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba

import hbflow
from hbflow._compare import ModelErrors, OrderStudy, fit_order
from hbflow._plot import _figure

ROOT = Path(__file__).resolve().parents[1]
ETAS = np.array([0.04, 0.02, 0.01])
# Synthetic errors C * eta^p with the stated orders: no solve needed to test a figure.
ORDERS = {"hbf1": 1, "hbf2": 2, "hbf3": 3, "rgf": 1, "steady2": 1, "gf": 0, "ks2": 1}


def _model(name, order, scale):
    max_errors = scale * ETAS**order if order else np.full(3, scale)
    slope, stderr, local = fit_order(ETAS, max_errors)
    errors = tuple(np.linspace(0, e, int(round(1 / eta)) + 1) for e, eta in zip(max_errors, ETAS))
    return ModelErrors(
        name=name,
        expected_order=order,
        max_errors=max_errors,
        final_errors=max_errors,
        errors=errors,
        slope=slope,
        slope_stderr=stderr,
        local_slopes=local,
        slope_spread=0.0,
        solver_errors=np.full(3, 1e-13),
        solver_flags=np.zeros(3, bool),
        compile_seconds=0.0,
        run_seconds=0.0,
    )


def _study(problem=None, models=ORDERS):
    return OrderStudy(
        method="nag",
        beta=0.7,
        horizon=1.0,
        etas=ETAS,
        num_steps=(25, 50, 100),
        models={n: _model(n, p, 1.0 + i) for i, (n, p) in enumerate(models.items())},
        lambdas=ETAS / 0.09,
        hessian_norm=1.0,
        lambda_h=ETAS / 0.09,
        warnings=(),
        iterates_seconds=0.0,
        problem=problem,
    )


@pytest.mark.parametrize(
    "suffix,check",
    [
        (".pdf", lambda data: data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")),
        (".svg", lambda data: ET.fromstring(data).tag.endswith("svg")),
        (".png", lambda data: data[:8] == b"\x89PNG\r\n\x1a\n"),
    ],
)
def test_format_follows_the_suffix(tmp_path, suffix, check):
    path = hbflow.plot_order_study(_study("toy"), tmp_path / f"order{suffix}")
    assert path.suffix == suffix and check(path.read_bytes())


def test_unknown_format_is_refused_before_drawing(tmp_path):
    with pytest.raises(ValueError, match=r"path must end in a format matplotlib writes \(.*pdf"):
        hbflow.plot_order_study(_study(), tmp_path / "order.docx")
    assert not (tmp_path / "order.docx").exists()


def test_title_names_problem_method_beta_and_horizon():
    title = _figure(_study("toy-problem"), None)._suptitle.get_text()
    assert title == "toy-problem: Nesterov, β = 0.7, horizon T = 1"
    assert _figure(_study("toy-problem"), "other")._suptitle.get_text().startswith("other: ")
    assert json.loads(json.dumps(_study("toy-problem").to_json()))["problem"] == "toy-problem"


def test_every_panel_has_labelled_axes():
    for ax in _figure(_study(), None).axes:
        assert ax.get_xlabel() and ax.get_ylabel()


def test_legend_is_outside_the_data():
    fig = _figure(_study(), None)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    assert all(ax.get_legend() is None for ax in fig.axes)
    (legend,) = fig.legends
    box = legend.get_window_extent(renderer)
    for ax in fig.axes:
        assert not box.overlaps(ax.get_window_extent(renderer))
    assert len(legend.get_texts()) == len(ORDERS)


def _triangles(ax):
    """(slope in log-log, colour) of every closed four-point line (a triangle) on `ax`."""
    out = []
    for line in ax.get_lines():
        x, y = np.log(line.get_xdata()), np.log(line.get_ydata())
        if len(x) == 4 and x[0] == x[3] and y[0] == y[3]:
            out.append((round(float((y[2] - y[0]) / (x[2] - x[0])), 9), line.get_color()))
    return out


def test_slope_triangles_for_every_expected_order_below_the_data():
    fig = _figure(_study(), None)
    ax = fig.axes[0]
    triangles = _triangles(ax)
    assert sorted(s for s, _ in triangles) == [1, 2, 3]  # order 0 (gf) has none
    data = {_name(line): line for line in ax.get_lines() if _name(line) in ORDERS}
    for slope, color in triangles:
        first = next(n for n, p in ORDERS.items() if p == slope)  # the first model of that order
        assert to_rgba(color) == to_rgba(hbflow.model_color(first))
        line = [ln for ln in ax.get_lines() if _triangles_of(ln) == slope][0]
        # the hypotenuse stays below every point of that model
        ex, ey = data[first].get_xdata(), data[first].get_ydata()
        tx, ty = line.get_xdata(), line.get_ydata()
        on_line = np.interp(np.log(ex), np.log(tx[:3:2]), np.log(ty[:3:2]))
        inside = (ex >= tx[0]) & (ex <= tx[2])
        assert np.all(on_line[inside] < np.log(ey[inside]))


def _name(line) -> str:
    """The model a data line belongs to: the first word of its label."""
    return line.get_label().split()[0]


def _triangles_of(line):
    x, y = np.log(line.get_xdata()), np.log(line.get_ydata())
    if len(x) == 4 and x[0] == x[3] and y[0] == y[3]:
        return round(float((y[2] - y[0]) / (x[2] - x[0])), 9)
    return None


def test_colours_are_fixed_per_model_across_panels_and_figures():
    names = list(ORDERS) + ["hbf4", "mgf"]
    colours = [to_rgba(hbflow.model_color(n)) for n in names]
    assert len(set(colours)) == len(names)  # every model its own colour
    fig_a = _figure(_study(), None)
    # another figure with the models in another order and a subset: same colours
    fig_b = _figure(_study(models={"rgf": 1, "hbf3": 3, "gf": 0}), None)
    for fig in (fig_a, fig_b):
        for ax in fig.axes:
            drawn = [line for line in ax.get_lines() if _name(line) in ORDERS]
            assert len(drawn) == len(fig.axes[0].get_legend_handles_labels()[1])
            for line in drawn:
                name = _name(line)
                assert to_rgba(line.get_color()) == to_rgba(hbflow.model_color(name))
        # the trajectory panel draws one line per model, in the model's colour and order
        models = list(fig.axes[0].get_legend_handles_labels()[1])
        traj = [to_rgba(line.get_color()) for line in fig.axes[1].get_lines()]
        expected = [to_rgba(hbflow.model_color(label.split()[0])) for label in models]
        assert traj == expected


def _figure_cells():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        for i, cell in enumerate(cells):
            source = "".join(cell["source"])
            if cell["cell_type"] == "code" and re.search(r"\bsubplots\(|\bfigure\(", source):
                yield f"{path.name}#{i}", source


@pytest.mark.parametrize("cell", [c for c, _ in _figure_cells()])
def test_every_notebook_figure_labels_its_axes(cell):
    source = dict(_figure_cells())[cell]
    assert "set_xlabel" in source and "set_ylabel" in source, cell
