"""Starts for real models (module:name, .npy, .npz), starts as lists, CLI conventions."""

import inspect
import json
import re
import sys
import textwrap
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import hbflow
from hbflow._cli import build_parser, main
from hbflow._models import _FIXED

ROOT = Path(__file__).resolve().parents[1]
STUDY = ["--etas", "0.04,0.02", "--horizon", "0.08", "--models", "hbf1", "--format", "json"]
W = np.array([0.5, -0.3])
B = np.array(0.1)


def _loss(p):
    return 0.5 * jnp.sum(p["w"] ** 2) + 0.25 * p["b"] ** 2 + 0.1 * jnp.sin(p["w"][0] * p["b"])


def _vloss(u):
    return 0.5 * jnp.sum(u**2) + 0.1 * jnp.sin(u[0] * u[1])


@pytest.fixture
def netloss(tmp_path, monkeypatch):
    """A module with a pytree loss, its start (a dict, and a function returning it), files."""
    (tmp_path / "netloss.py").write_text(
        textwrap.dedent("""
        import jax.numpy as jnp
        import numpy as np

        W0 = {"w": np.array([0.5, -0.3]), "b": np.array(0.1)}
        V0 = np.array([0.5, 0.7])

        def init():
            return {"w": jnp.array([0.5, -0.3]), "b": jnp.array(0.1)}

        def loss(p):
            return (0.5 * jnp.sum(p["w"] ** 2) + 0.25 * p["b"] ** 2
                    + 0.1 * jnp.sin(p["w"][0] * p["b"]))

        def vloss(u):
            return 0.5 * jnp.sum(u ** 2) + 0.1 * jnp.sin(u[0] * u[1])
        """)
    )
    np.save(tmp_path / "v0.npy", np.array([0.5, 0.7]))
    np.savez(tmp_path / "w0.npz", w=W, b=B)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    sys.modules.pop("netloss", None)


def _json(capsys, *argv):
    code = main(["order", *argv, *STUDY])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def _direct(loss, u0):
    """The same study through the Python API, from the start given directly."""
    return hbflow.compare(loss, u0, etas=[0.04, 0.02], horizon=0.08, models=["hbf1"]).to_json()


@pytest.mark.parametrize(
    "x0,structure",
    [
        ("netloss:W0", "a dict of 2 arrays {'b': (), 'w': (2,)}"),
        ("netloss:init", "a dict of 2 arrays {'b': (), 'w': (2,)}"),
        ("w0.npz", "a dict of 2 arrays {'b': (), 'w': (2,)}"),
    ],
)
def test_pytree_start_from_a_module_or_an_npz_file(capsys, netloss, x0, structure):
    data = _json(capsys, "--loss", "netloss:loss", "--x0", x0)
    assert data["start"] == f"{x0}, {structure}"
    expected = _direct(_loss, {"w": jnp.asarray(W), "b": jnp.asarray(B)})
    np.testing.assert_allclose(
        data["models"]["hbf1"]["max_errors"], expected["models"]["hbf1"]["max_errors"], rtol=1e-9
    )


@pytest.mark.parametrize("x0", ["netloss:V0", "v0.npy", "0.5,0.7"])
def test_array_start_from_a_module_an_npy_file_or_numbers(capsys, netloss, x0):
    data = _json(capsys, "--loss", "netloss:vloss", "--x0", x0)
    if "," not in x0:
        assert data["start"] == f"{x0}, an array of shape (2,)"
    expected = _direct(_vloss, jnp.array([0.5, 0.7]))
    np.testing.assert_allclose(
        data["models"]["hbf1"]["max_errors"], expected["models"]["hbf1"]["max_errors"], rtol=1e-9
    )


def test_bad_start_file_is_a_clear_error(capsys, netloss):
    (netloss / "bad.npy").write_text("not numpy")
    code = main(["order", "--loss", "netloss:vloss", "--x0", "bad.npy", *STUDY])
    _, err = capsys.readouterr()
    assert code == 2 and "--x0: cannot read 'bad.npy' as a NumPy .npy/.npz file" in err


def test_start_as_a_python_list_is_an_array():
    def loss(u):
        return u @ u + jnp.sin(u[0])  # a loss written for an array: a list would fail

    from_list = hbflow.iterates(loss, [1.0, 0.5], eta=0.1, num_steps=3)
    from_array = hbflow.iterates(loss, jnp.array([1.0, 0.5]), eta=0.1, num_steps=3)
    np.testing.assert_array_equal(from_list, from_array)
    nested = hbflow.iterates(lambda u: jnp.sum(u**2), [[1.0, 2.0]], eta=0.1, num_steps=1)
    assert nested.shape == (2, 1, 2)
    with pytest.raises(ValueError, match=r"u0 is a ragged list of numbers; pass a jnp\.array"):
        hbflow.iterates(loss, [[1.0], [2.0, 3.0]], eta=0.1, num_steps=1)


def test_a_list_of_arrays_stays_a_pytree():
    us = hbflow.iterates(
        lambda p: jnp.sum(p[0] ** 2) + p[1] ** 2, [jnp.ones(2), 1.0], eta=0.1, num_steps=1
    )
    assert isinstance(us, list) and us[0].shape == (2, 2) and us[1].shape == (2,)


def test_iterates_has_the_defaults_of_compare():
    for name in ("method", "beta"):
        default = inspect.signature(hbflow.compare).parameters[name].default
        assert inspect.signature(hbflow.iterates).parameters[name].default == default


def test_version(capsys):
    tomllib = pytest.importorskip("tomllib")
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert capsys.readouterr().out.strip() == f"hbflow {version}"


def _order_help() -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return " ".join(sub.choices["order"].format_help().split())


def test_order_help_lists_the_problems_and_model_families():
    text = _order_help()
    for name in hbflow.problem_names():  # argparse may wrap a name at a hyphen
        assert name in "".join(text.split())
    for family in ["hbfN", "steadyN", *_FIXED]:
        assert re.search(rf"\b{family}\b", text), family


def test_order_help_explains_spread_and_the_order_of_gf():
    text = _order_help()
    assert re.search(r"'spread' is the largest distance from it of the local slopes", text)
    assert re.search(r"'gf', the gradient flow, expects order 0 against heavy ball", text)
    page = " ".join((ROOT / "docs" / "cli.md").read_text().split())
    assert "*spread* says whether the fitted slope can be trusted" in page
    assert "*Why `gf` expects order 0 with momentum.*" in page
    # the stated order the epilog explains is the model's
    gf = hbflow.GradientFlow()
    assert gf.order("hb", 0.5) == 0 and gf.order("gd", 0.0) == 1


def test_a_start_that_is_not_an_array_is_named_briefly(capsys):
    code = main(["order", "--x0", "json:__doc__"])  # a long string, not an array
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("hbflow: error: --x0 must be an array of real numbers")
    assert len(err) < 200 and err.rstrip().endswith("...")
