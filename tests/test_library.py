"""The evaluator as a library: its faces, and no training stack on its path.

* importing ``segcontrast``, the evaluation package and every module of the evaluation side,
  the API, and running ``segcontrast evaluate`` / ``validate`` load neither torch nor
  Detectron2 (checked in a fresh interpreter, by ``sys.modules``);
* ``segcontrast --help`` and each subcommand's ``--help`` answer; a training subcommand where
  the training extra is missing says so in one line (exit 2);
* the API on in-memory dicts gives the numbers of the CLI on the same files; the accumulator
  fed image by image, in two processes merged, gives the numbers of one.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from segcontrast import EvalSettings, evaluate
from segcontrast.evaluation.ground_truth import GroundTruthSet

from .evaluation.feed import accumulate
from .evaluation.results_files import write_synthetic_files

REPO = Path(__file__).resolve().parents[1]
PACKAGE_ROOT = REPO / "projects" / "SegContrast"
TRAINING = ("torch", "torchvision", "detectron2", "fvcore")


def _fresh(code: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter; it prints the training modules it loaded last."""
    epilogue = (
        "\nimport sys as _s, json as _j\n"
        f"print('LOADED=' + _j.dumps(sorted(m for m in _s.modules if m.split('.')[0] in "
        f"{TRAINING!r})))\n"
    )
    return subprocess.run([sys.executable, "-c", code + epilogue, *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def _loaded(proc: subprocess.CompletedProcess) -> list[str]:
    line = [x for x in proc.stdout.splitlines() if x.startswith("LOADED=")]
    assert line, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(line[-1][len("LOADED="):])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("library")
    gt, results, _ = write_synthetic_files(folder, 6, num_classes=3, seed=3)
    return {"gt": gt, "results": results, "folder": folder}


def _evaluation_side_modules() -> list[str]:
    root = PACKAGE_ROOT / "segcontrast"
    names = []
    for sub in ("utils", "data", "evaluation", "cli"):
        for path in sorted((root / sub).rglob("*.py")):
            parts = path.relative_to(PACKAGE_ROOT).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_importing_the_evaluation_side_loads_no_training_package():
    modules = _evaluation_side_modules()
    assert "segcontrast.evaluation.api" in modules and "segcontrast.cli.evaluate" in modules
    code = ("import importlib, segcontrast\n"
            f"for name in {modules!r}:\n    importlib.import_module(name)\n"
            "from segcontrast import evaluate, Accumulator, EvalSettings, EvaluationResult\n")
    proc = _fresh(code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _loaded(proc) == []


def test_scoring_files_and_validating_load_no_training_package(files, tmp_path):
    runs = {
        "evaluate": ["evaluate", "--gt", str(files["gt"]), "--results", str(files["results"]),
                     "--output", str(tmp_path / "out"), "--workers", "2"],
        "validate": ["validate", str(files["gt"]), str(files["folder"])],
        "api": None,
    }
    for name, argv in runs.items():
        if argv is None:
            code = ("import segcontrast, tempfile\n"
                    f"r = segcontrast.evaluate({str(files['gt'])!r}, {str(files['results'])!r})\n"
                    "r.save(tempfile.mkdtemp())\n")
        else:  # (the synthetic GT names no image files: validate finds them missing, exit 2)
            code = ("import sys\nfrom segcontrast.cli import main\n"
                    f"code = main({argv!r})\nassert code in (0, 2), code\n")
        proc = _fresh(code)
        assert proc.returncode == 0, (name, proc.stdout[-2000:], proc.stderr[-3000:])
        assert _loaded(proc) == [], name
    assert (tmp_path / "out" / "metrics.json").is_file()


def test_the_command_and_each_subcommand_answer_help():
    top = subprocess.run([sys.executable, "-m", "segcontrast", "--help"], capture_output=True,
                         text=True, timeout=120)
    assert top.returncode == 0
    for command in ("evaluate", "validate", "train", "predict", "tune-threshold"):
        assert command in top.stdout
    for command in ("evaluate", "validate"):
        proc = subprocess.run([sys.executable, "-m", "segcontrast", command, "--help"],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and f"usage: segcontrast {command}" in proc.stdout
    unknown = subprocess.run([sys.executable, "-m", "segcontrast", "evalute"],
                             capture_output=True, text=True, timeout=120)
    assert unknown.returncode == 2 and "unknown command 'evalute'" in unknown.stderr


def test_a_training_subcommand_without_the_training_extra_names_it(tmp_path):
    # An interpreter that sees only the package (no site-packages): torch and Detectron2 are
    # "not installed" for it, as after `pip install .` without the extra.
    code = (f"import sys; sys.path.insert(0, {str(PACKAGE_ROOT)!r})\n"
            "from segcontrast.cli import main\nsys.exit(main(sys.argv[1:]))")
    for command in ("train", "predict", "tune-threshold"):
        proc = subprocess.run([sys.executable, "-S", "-c", code, command, "--help"],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr
        assert f"segcontrast {command} needs the training extra" in lines[0]
        assert "pip install 'segcontrast[train]'" in lines[0]
        assert "install_detectron2.py" in lines[0]


def test_the_api_on_dicts_equals_the_cli_on_files(files, tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run([sys.executable, "-m", "segcontrast", "evaluate", "--gt",
                           str(files["gt"]), "--results", str(files["results"]), "--output",
                           str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cli = json.loads((out / "metrics.json").read_text())
    gt = json.loads(Path(files["gt"]).read_text())
    results = json.loads(Path(files["results"]).read_text())
    api = evaluate(gt, results).metrics
    groups = [k for k, v in cli.items() if isinstance(v, dict) and k not in ("details", "source")]
    assert groups and all(api[g] == cli[g] for g in groups)
    assert api["details"]["per_class"] == cli["details"]["per_class"]
    assert api["settings"] == cli["settings"]


def test_the_accumulator_in_two_processes_merged_equals_one(files, tmp_path):
    gt = GroundTruthSet.from_coco(files["gt"])
    results = json.loads(Path(files["results"]).read_text())
    ids = sorted(gt.records)
    one = accumulate(gt, results, ids).compute().metrics
    reference = evaluate(files["gt"], files["results"]).metrics  # the same results, from a file
    for group in ("semantic", "instance", "segm", "contrast", "panoptic", "accounting"):
        assert one[group] == reference[group], group
    # The second half in another process; its state comes back pickled, as across processes.
    script = tmp_path / "half.py"
    script.write_text(
        "import json, pickle, sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from tests.evaluation.feed import accumulate\n"
        "from segcontrast.evaluation.ground_truth import GroundTruthSet\n"
        f"gt = GroundTruthSet.from_coco({str(files['gt'])!r})\n"
        f"results = json.load(open({str(files['results'])!r}))\n"
        f"acc = accumulate(gt, results, {ids[len(ids) // 2:]!r})\n"
        f"open({str(tmp_path / 'state.pkl')!r}, 'wb').write(pickle.dumps(acc.state))\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = accumulate(gt, results, ids[: len(ids) // 2])
    first.add_state(pickle.loads((tmp_path / "state.pkl").read_bytes()))
    assert first.compute().metrics == one


def test_settings_are_one_dataclass_with_checked_values():
    assert EvalSettings().score_threshold == 0.5  # one default for every face
    assert EvalSettings(iou_threshold=1).iou_threshold == 1.0  # (0, 1], an int accepted
    with pytest.raises(ValueError, match=r"IOU_THRESHOLD = 0 is not allowed.*\(0, 1\]"):
        EvalSettings(iou_threshold=0)
    with pytest.raises(ValueError, match="unknown setting"):
        EvalSettings().replace(iou_treshold=0.5)
    overridden = EvalSettings().with_overrides(["TEST.SEGCONTRAST.IOU_THRESHOLD", "0.75",
                                                "TEST.SEGCONTRAST.BOUNDARY_IOU", "False"])
    assert overridden.iou_threshold == 0.75 and overridden.boundary_iou is False
