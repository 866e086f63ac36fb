"""A sweep killed mid-way resumes: finished chunks are neither recomputed nor lost."""

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import hbflow
from hbflow._sweep import load_sweep_results

ROOT = Path(__file__).resolve().parents[1]
GRID = dict(
    betas=[0.5, 0.6, 0.7, 0.8],
    etas=[0.04, 0.02],
    horizon=0.4,
    models=["rgf", "hbf1"],
    chunk_size=2,  # 8 points in 4 chunks
    compilation_cache=False,
)


def _same_rows(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            if isinstance(x[k], float):
                assert (math.isnan(x[k]) and math.isnan(y[k])) or abs(x[k] - y[k]) <= 1e-12, k
            else:
                assert x[k] == y[k], k


def test_a_killed_sweep_resumes_where_it_stopped(tmp_path):
    out = tmp_path / "run"
    script = textwrap.dedent(
        f"""
        import os, signal
        import hbflow
        p = hbflow.get_problem("himmelblau-scaled")

        def progress(info):
            if info.done == 2:  # two chunks are on disk: die without any clean-up
                os.kill(os.getpid(), signal.SIGKILL)

        hbflow.sweep(p.loss, p.x0, out={str(out)!r}, progress=progress, **{GRID!r})
        """
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == -9, done.stderr[-3000:]
    partial = load_sweep_results(out)
    assert not partial["complete"]
    assert partial["points_done"] == 4 and partial["points_total"] == 8
    chunks = out / "chunks"
    kept = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in chunks.glob("chunk-*.json")}
    assert sorted(kept) == ["chunk-000000.json", "chunk-000001.json"]
    # What a crash during a write leaves: a half-written chunk and a stray temporary file.
    text = json.dumps({"chunk": 2, "points": [0, 1], "rows": []})
    (chunks / "chunk-000002.json").write_text(text[: len(text) // 2])
    (chunks / ".chunk-000003.json.x.tmp").write_text("{")

    problem = hbflow.get_problem("himmelblau-scaled")
    seen = []
    resumed = hbflow.sweep(problem.loss, problem.x0, out=out, progress=seen.append, **GRID)
    assert resumed.resumed_chunks == (0, 1)
    assert resumed.computed_chunks == (2, 3)
    assert [p.resumed for p in seen] == [True, True, False, False]
    for name, (mtime, content) in kept.items():
        assert (chunks / name).stat().st_mtime_ns == mtime
        assert (chunks / name).read_bytes() == content

    whole = hbflow.sweep(problem.loss, problem.x0, out=tmp_path / "whole", **GRID)
    assert whole.computed_chunks == (0, 1, 2, 3)
    _same_rows(list(resumed.rows), list(whole.rows))
    final = load_sweep_results(out)
    assert final["complete"]
    _same_rows(final["rows"], list(whole.rows))
