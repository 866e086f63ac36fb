"""derivations/counter_terms.py, the script that writes the shipped data files."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_writes_counter_terms_for_every_method_and_shifted_starts_where_derived(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    argv = [sys.executable, str(ROOT / "derivations" / "counter_terms.py"), "--order", "2"]
    argv += ["--method", "hb", "--method", "qhm", "--nu", "1/2", "--out", str(tmp_path)]
    argv += ["--jobs", "2"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    names = sorted(p.name for p in tmp_path.iterdir())
    # qhm's shifted start would depend on nu and is not derived: no file, and no crash.
    assert names == [
        "counter_terms_hb_order2.json",
        "counter_terms_qhm_nu1-2_order2.json",
        "shifted_start_hb_order2.json",
    ]
    data = json.loads((tmp_path / "counter_terms_qhm_nu1-2_order2.json").read_text())
    assert data["method"] == "qhm" and data["order"] == 2
