"""The metric catalog: one definition of every reported number, and every list of metrics (log,
report, --compare, threshold sweep, demo, study) reads its labels from it."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from segcontrast.evaluation import catalog
from segcontrast.evaluation.accounting.assignment import ERROR_TYPES as ASSIGNED
from segcontrast.evaluation.compare import HEADLINE_METRICS
from segcontrast.evaluation.report.text import PER_IMAGE_COLUMNS

from tests.evaluation.helpers import evaluate, random_dataset, register

REPO = Path(__file__).resolve().parents[2]


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_key_of_every_group_has_one_definition():
    dicts, preds = random_dataset(3, 4, 3, 24, 30, max_pred=8, id_stride=1000)
    res = evaluate(register(dicts, ["a", "b", "c"]), preds, score_threshold=0.3)
    assert set(res) == {"semantic", "instance", "segm", "contrast", "panoptic", "accounting"}
    for group, values in res.items():
        for key in values:
            found = catalog.metric(group, key)
            assert found is not None, (group, key)
            assert found.unit in ("%", "points", "count") and found.meaning, (group, key)
    keys = [(m.group, m.key) for m in catalog.METRICS]
    assert len(keys) == len(set(keys))
    # counts are counts wherever they are
    for name in catalog.ERROR_TYPES:
        assert catalog.metric("contrast", name).is_count
        assert catalog.metric("accounting", f"count-{name}").is_count
        assert catalog.metric("accounting", f"delta_AP-{name}").unit == "points"
    assert catalog.label("semantic", "IoU-a b") == "semantic IoU a b"


def test_the_error_types_are_the_assignments_and_the_files():
    assert catalog.ERROR_TYPES == ASSIGNED
    assert PER_IMAGE_COLUMNS[-len(catalog.ERROR_TYPES):] == catalog.ERROR_TYPES
    for d in catalog.ERROR_TYPE_DEFS:
        assert d.counted in ("predictions", "objects")
        assert d.noun(1).startswith("1 ") and d.noun(1) != d.noun(2).replace("2 ", "1 ")


def test_every_list_of_metrics_takes_the_catalogs_labels():
    assert [(g, k) for g, k, _ in HEADLINE_METRICS] == list(catalog.COMPARED)
    lists = {"compare": HEADLINE_METRICS,
             "demo": _module(REPO / "tools" / "demo.py", "segcontrast_demo").ROWS}
    sys.path.insert(0, str(REPO / "bench"))
    try:
        lists["study"] = _module(REPO / "bench" / "run_study.py", "segcontrast_study").METRICS
    finally:
        sys.path.remove(str(REPO / "bench"))
    for name, rows in lists.items():
        for group, key, shown in rows:
            assert shown == catalog.label(group, key), (name, group, key, shown)
    # the same metric never under two names: AP50 is "mask AP50" in each list that shows it
    shown = {shown for rows in lists.values() for g, k, shown in rows if (g, k) == ("segm",
                                                                                "AP50")}
    assert shown == {"mask AP50"}


def test_the_threshold_sweep_takes_the_catalogs_labels():
    from segcontrast.engine.threshold_sweep import SWEEP_METRICS, SweepResult

    assert [(g, k) for g, k, _ in SWEEP_METRICS] == list(catalog.SWEEP_ROWS)
    assert all(shown == catalog.label(g, k) for g, k, shown in SWEEP_METRICS)
    table = SweepResult([0.5], [{"segm": {"AP": 1.0}}], "segm/AP").table()
    assert table.splitlines()[0] == ("| threshold | " + " | ".join(
        catalog.label(g, k) for g, k in catalog.SWEEP_ROWS) + " |")


def test_the_catalog_imports_nothing_but_the_standard_library():
    code = ("import sys, json, segcontrast.evaluation.catalog\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('numpy', 'scipy', 'matplotlib', 'PIL', 'torch'))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == []
