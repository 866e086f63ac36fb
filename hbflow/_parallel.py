"""Worker processes for the derivation of high orders (`hbflow._derive.closed_form_characters`).

The trees of the top order are independent of one another given the smaller trees, so each
worker derives every smaller tree itself and then its share of the top order; only the results
(integer coefficient tuples) travel back.  A worker is a fresh interpreter started with
`subprocess` (never a fork: the parent may have imported JAX, and may itself be a worker of a
process pool, even a daemonic one), running the same hbflow as the parent; it reads its task
from stdin and writes its result to stdout, both pickled.  It never imports the caller's
``__main__``, so a script without a ``if __name__ == "__main__":`` guard is safe.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path

__all__ = ["PARALLEL_FROM_ORDER", "derive_workers", "start_worker"]

#: The smallest order derived in several processes by default (below it, starting the
#: processes costs more than they save).
PARALLEL_FROM_ORDER = 9

# The worker's program.  The answer goes to the original stdout; anything printed while
# importing or deriving goes to stderr instead, so that it cannot corrupt the pickle.  The
# worker imports the parent's hbflow: the folder above the package goes first on sys.path
# unless the default path already finds hbflow there.
_WORKER = """
import importlib.util, os, sys
answer = os.fdopen(os.dup(1), "wb")
os.dup2(2, 1)
root = {root!r}
spec = importlib.util.find_spec("hbflow")
found = spec and spec.origin and os.path.dirname(os.path.dirname(os.path.realpath(spec.origin)))
if found != root:
    sys.path.insert(0, root)
from hbflow._parallel import _main
_main(answer)
"""


def derive_workers(order: int, workers: int | None = None) -> int:
    """How many processes derive the trees of the top order: `workers` if given, else
    ``$HBFLOW_DERIVE_WORKERS`` if set, else one per usable core from `PARALLEL_FROM_ORDER` on
    and one below it.

    **Raises:** `ValueError` for a count that is not an integer >= 1.
    """
    if workers is None:
        text = os.environ.get("HBFLOW_DERIVE_WORKERS", "").strip()
        if text:
            try:
                workers = int(text)
            except ValueError:
                raise ValueError(
                    f"HBFLOW_DERIVE_WORKERS must be a whole number >= 1, got {text!r}"
                ) from None
        elif order < PARALLEL_FROM_ORDER:
            workers = 1
        else:
            workers = _usable_cores()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    return workers


def _usable_cores() -> int:
    count = getattr(os, "process_cpu_count", None)  # Python >= 3.13
    if count is not None:
        return count() or 1
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class _Job:
    """A running worker; `result` waits for it and returns its answer."""

    def __init__(self, task):
        root = os.path.realpath(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["HBFLOW_DERIVE_WORKERS"] = "1"  # a worker starts no workers of its own
        self._process = subprocess.Popen(
            [sys.executable, "-c", _WORKER.format(root=root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self._out: tuple[bytes, bytes] = (b"", b"")
        payload = pickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL)
        # Feed and drain the pipes in a thread, so that a large answer never blocks the worker.
        self._thread = threading.Thread(target=self._communicate, args=(payload,), daemon=True)
        self._thread.start()

    def _communicate(self, payload: bytes) -> None:
        self._out = self._process.communicate(payload)

    def result(self):
        self._thread.join()
        stdout, stderr = self._out
        if self._process.returncode != 0:
            tail = stderr.decode(errors="replace").strip().splitlines()[-20:]
            raise RuntimeError(
                f"derivation worker failed (exit status {self._process.returncode}):\n"
                + "\n".join(tail)
            )
        return pickle.loads(stdout)

    def cancel(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._thread.join()


def start_worker(task) -> _Job:
    """Start one worker on ``(order, method, nu, trees)``; see `hbflow._derive._worker_task`."""
    return _Job(task)


def _main(answer) -> None:
    from ._derive import _worker_task

    task = pickle.loads(sys.stdin.buffer.read())
    result = _worker_task(task)
    answer.write(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
    answer.flush()
