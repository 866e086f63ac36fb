"""The command line under real use: Ctrl-C, a closed stdout, an output file that cannot be written.

Interrupts are sent with SIGINT to a subprocess only after it has reached a known point (a
marker file written by the user's loss module), so that the tests do not depend on timing.
"""

import gc
import os
import signal
import subprocess
import sys
import time

import pytest

from hbflow import _cli
from hbflow._cli import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, main

# A loss module that writes a marker at a chosen point and then takes its time.
LOSS_MODULE = """
import os, time
import jax, jax.numpy as jnp

MARK = os.environ["HBFLOW_TEST_MARK"]
WHERE = os.environ["HBFLOW_TEST_WHERE"]


def _mark():
    if not os.path.exists(MARK):
        with open(MARK, "w"):
            pass


if WHERE == "import":
    _mark()
    time.sleep(120)


def _tick(x):
    _mark()
    time.sleep(0.05)


def loss(u):
    if WHERE == "run":  # inside the compiled iterates and solves, as a host callback
        jax.debug.callback(_tick, u[0])
    return 0.5 * jnp.sum(u**2)
"""


def _cli_process(tmp_path, where: str, *args: str, **kwargs) -> subprocess.Popen:
    (tmp_path / "slowloss.py").write_text(LOSS_MODULE)
    env = dict(os.environ, HBFLOW_TEST_MARK=str(tmp_path / "mark"), HBFLOW_TEST_WHERE=where)
    return subprocess.Popen(
        [sys.executable, "-m", "hbflow._cli", *args],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _wait_for(path, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"ended first: {proc.returncode}, {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the marker never appeared")
        time.sleep(0.05)


ORDER = ("order", "--loss", "slowloss:loss", "--x0", "1,0.5", "--etas", "0.2,0.1")


@pytest.mark.parametrize("where", ["import", "run"])
def test_ctrl_c_exits_130_without_traceback(tmp_path, where):
    proc = _cli_process(
        tmp_path, where, *ORDER, "--horizon", "4", "--models", "gf", stdout=subprocess.PIPE
    )
    _wait_for(tmp_path / "mark", proc)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == EXIT_INTERRUPTED, err
    # The last word is hbflow's, not a traceback (JAX may log the interrupted host callback).
    assert err.strip().splitlines()[-1] == "hbflow: interrupted"
    if where == "import":
        assert "Traceback" not in err


def test_an_interrupt_swallowed_on_its_way_up_still_exits_130(monkeypatch):
    # What JAX's garbage-collection callback does: the KeyboardInterrupt is caught and dropped.
    def run_and_swallow(args):
        try:  # the installed handler, run as Python runs it when SIGINT arrives
            signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
        except KeyboardInterrupt:
            pass
        return 0

    monkeypatch.setattr(_cli, "_run_derive", run_and_swallow)
    # The handler found when the command starts (Python's default, or whatever this process set
    # before: a test worker may run with SIGINT ignored) is put back afterwards.
    before = signal.getsignal(signal.SIGINT)
    assert main(["derive", "--order", "1"]) == EXIT_INTERRUPTED
    # The handler is put back afterwards, and the record is clean for the next run.
    assert signal.getsignal(signal.SIGINT) is before
    assert not _cli.INTERRUPTS.seen


def test_swallowed_interrupt_stops_the_sweep_at_the_next_run(monkeypatch):
    from hbflow._cli_order import _interruptible

    report = _interruptible(False)
    monkeypatch.setattr(_cli.INTERRUPTS, "seen", False)
    report(None)  # no interrupt: nothing happens
    monkeypatch.setattr(_cli.INTERRUPTS, "seen", True)
    with pytest.raises(KeyboardInterrupt):
        report(None)


def test_closed_stdout_exits_quietly(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "hbflow._cli", "derive", "--order", "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdout.close()  # the reader is gone before anything is written, as after `| head`
    err = proc.stderr.read()
    proc.wait(timeout=240)
    assert proc.returncode in (0, EXIT_BROKEN_PIPE)
    assert err == ""


def test_plot_under_a_file_is_refused_before_the_study(tmp_path, capsys):
    (tmp_path / "a-file").write_text("not a folder")
    target = tmp_path / "a-file" / "sub" / "plot.png"
    code = main(["order", "--etas", "0.2,0.1", "--horizon", "0.4", "--plot", str(target)])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""  # nothing was computed or printed
    assert "--plot" in err and "it is a file" in err


def test_plot_onto_a_folder_is_refused(tmp_path, capsys):
    folder = tmp_path / "looks-like.png"
    folder.mkdir()
    code = main(["order", "--plot", str(folder)])
    _, err = capsys.readouterr()
    assert code == 2 and "--plot" in err and "folder" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_plot_into_a_read_only_folder_is_refused(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        code = main(["order", "--plot", str(folder / "plot.png")])
    finally:
        folder.chmod(0o700)
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and "permission denied" in err


def test_the_command_freezes_its_objects_for_the_exit_and_main_does_not():
    # The installed `hbflow` runs `console_main`, which leaves its objects to the operating
    # system (gc.freeze) once the command is done; `main`, which a test or a notebook calls in a
    # process that goes on, must not freeze them (they would never be collected).
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="hbflow")
    assert script.value == "hbflow._cli:console_main"
    code = (
        "import gc, sys\n"
        "from hbflow._cli import console_main\n"
        "sys.argv = ['hbflow', 'derive', '--order', '2']\n"
        "assert gc.get_freeze_count() == 0\n"
        "code = console_main()\n"
        "print('frozen', gc.get_freeze_count() > 0, code, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "frozen True 0"
    direct = subprocess.run(
        [sys.executable, "-m", "hbflow", "derive", "--order", "2"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert direct.returncode == 0 and direct.stdout == proc.stdout and "du/dt" in proc.stdout

    before = gc.get_freeze_count()
    assert main(["derive", "--order", "1"]) == 0
    assert gc.get_freeze_count() == before
