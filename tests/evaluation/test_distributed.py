"""Two gloo processes give exactly the single-process results."""

import json
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("distributed_check.py")


def _equal(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


def test_two_processes_equal_one_exactly(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = pickle.loads((tmp_path / "two.pkl").read_bytes())
    one = pickle.loads((tmp_path / "one.pkl").read_bytes())
    assert list(one) == ["semantic", "instance", "segm", "contrast"]
    assert _equal(two, one)
    m_two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    m_one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert m_two == m_one
    assert (tmp_path / "two" / "per_image.csv").read_text() == (
        tmp_path / "one" / "per_image.csv"
    ).read_text()
    assert sorted(os.listdir(tmp_path / "two" / "worst_images")) == sorted(
        os.listdir(tmp_path / "one" / "worst_images")
    )
