"""Two gloo processes give exactly the single-process results (PQ and the gap accounting
included, and the same panoptic files)."""

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
    groups = ["semantic", "instance", "segm", "contrast", "panoptic", "accounting"]
    # Instances only (Mask R-CNN), and instances with sem_seg logits (Panoptic FPN).
    for suffix, expected in (("", groups), ("_sem_seg", [groups[0], "semantic_from_instances",
                                                          *groups[1:]])):
        two = pickle.loads((tmp_path / f"two{suffix}.pkl").read_bytes())
        one = pickle.loads((tmp_path / f"one{suffix}.pkl").read_bytes())
        assert list(one) == expected
        assert one["accounting"]["count-all"] > 0 and one["accounting"]["count-low_score"] > 0
        assert _equal(two, one)
        m_two = json.loads((tmp_path / f"two{suffix}" / "metrics.json").read_text())
        m_one = json.loads((tmp_path / f"one{suffix}" / "metrics.json").read_text())
        assert m_two == m_one
        assert (tmp_path / f"two{suffix}" / "per_image.csv").read_text() == (
            tmp_path / f"one{suffix}" / "per_image.csv"
        ).read_text()
        assert sorted(os.listdir(tmp_path / f"two{suffix}" / "worst_images")) == sorted(
            os.listdir(tmp_path / f"one{suffix}" / "worst_images")
        )
    with_head = pickle.loads((tmp_path / "one_sem_seg.pkl").read_bytes())
    alone = pickle.loads((tmp_path / "one.pkl").read_bytes())
    assert _equal(with_head["semantic_from_instances"], alone["semantic"])
    assert with_head["semantic"]["mIoU"] != alone["semantic"]["mIoU"]
    for name in ("panoptic_gt", "panoptic_pred"):  # each process wrote its own images' PNGs
        assert (tmp_path / "two" / "panoptic" / f"{name}.json").read_text() == (
            tmp_path / "one" / "panoptic" / f"{name}.json").read_text()
        pngs = sorted(os.listdir(tmp_path / "one" / "panoptic" / name))
        assert len(pngs) == 10
        assert sorted(os.listdir(tmp_path / "two" / "panoptic" / name)) == pngs
        for png in pngs:
            assert (tmp_path / "two" / "panoptic" / name / png).read_bytes() == (
                tmp_path / "one" / "panoptic" / name / png).read_bytes()
