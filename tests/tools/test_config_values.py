"""Config values as people type them (issue 19, items 8 and 11).

* An int where a float is meant (``TEST.SEGCONTRAST.SCORE_THRESHOLD 0``, ``BASE_LR: 1`` in a yaml
  file) is that number, in every tool; an integral float where an int is meant too; any other
  bad value is exit code 2 and one line naming the key and the value.
* A flag after the ``KEY VALUE`` overrides is named, with where flags go.
* The schedule message never suggests a ``SOLVER.STEPS`` that it would refuse.

The tools that read a config run as real processes (their exit code and output); refusals, which
come before any work, are also checked by calling ``main()`` here.
"""

from __future__ import annotations

import json
import re
import subprocess
from argparse import Namespace
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from segcontrast.cli.evaluate import main as evaluate_main
from segcontrast.engine.train_cli import UserInputError, check_solver_schedule
from segcontrast.engine.train_cli import main as train_main

from tests.evaluation.results_files import write_synthetic_files

from .conftest import REPO, CliResult, dataset_args, run_cli, run_tool, tool_module

pytestmark = pytest.mark.slow

SHAPES_FOCAL = str(REPO / "configs" / "shapes" / "mask_rcnn_focal.yaml")  # SOLVER.STEPS (400,)


def _tool(script: str):
    return tool_module(script)


def _ok(result: subprocess.CompletedProcess | CliResult) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def _refused(result: subprocess.CompletedProcess | CliResult, *fragments: str) -> str:
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def scoring_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("values_files")
    gt, results, _ = write_synthetic_files(folder, 4, num_classes=3, height=40, width=48,
                                           instances_per_image=3, seed=2)
    return {"gt": str(gt), "results": str(results), "folder": folder}


@pytest.fixture(scope="module")
def processes(trained_run, tiny_data, scoring_files, tmp_path_factory):
    """The real processes of this module, two at a time. {name: (process, its output folder)}."""
    focal = trained_run("mask_rcnn_focal")
    folder = tmp_path_factory.mktemp("values_runs")
    # A yaml file with ints at float keys, on top of the tiny config.
    ints = folder / "ints.yaml"
    ints.write_text(f'_BASE_: "{focal.config}"\nMODEL:\n  ROI_HEADS:\n    SCORE_THRESH_TEST: 0\n'
                    "TEST:\n  SEGCONTRAST:\n    SCORE_THRESHOLD: 0\n    MASK_THRESHOLD: 0.5\n")
    weights = str(focal.out / "model_final.pth")
    commands = {
        "eval_only": ["train_net.py", "--config", str(ints), "--eval-only",
                      *dataset_args(tiny_data), "MODEL.WEIGHTS", weights,
                      "SOLVER.BASE_LR", "1",
                      "TEST.SEGCONTRAST.NUM_WORST_IMAGES", "0.0",
                      "OUTPUT_DIR", str(folder / "eval_only")],
        "evaluate": ["evaluate.py", "--gt", scoring_files["gt"],
                     "--results", scoring_files["results"], "--output", str(folder / "evaluate"),
                     "TEST.SEGCONTRAST.SCORE_THRESHOLD", "0",
                     "TEST.SEGCONTRAST.NUM_WORST_IMAGES", "0"],
        "flag_after": ["train_net.py", "--config", focal.config, *dataset_args(tiny_data),
                       "SOLVER.MAX_ITER", "30", "OUTPUT_DIR", str(folder / "flag_after"),
                       "--resume"],
        "max_iter_1": ["train_net.py", "--config", SHAPES_FOCAL, "SOLVER.MAX_ITER", "1",
                       "OUTPUT_DIR", str(folder / "max_iter_1")],
    }
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda command: run_tool(*command), commands.values()))
    return {name: (result, folder / name)
            for name, result in zip(commands, results, strict=True)}


def test_ints_at_float_keys_in_yaml_and_on_the_command_line_train_net(processes):
    result, out = processes["eval_only"]
    _ok(result)
    metrics = json.loads((out / "inference" / "tiny_val" / "metrics.json").read_text())
    assert metrics["settings"]["score_threshold"] == 0.0
    config = (out / "config.yaml").read_text()
    assert re.search(r"SCORE_THRESH_TEST: 0\.0\b", config), config
    assert re.search(r"NUM_WORST_IMAGES: 0\n", config)  # 0.0 at an int key is the int 0


def test_int_at_a_float_key_evaluate(processes, scoring_files, tmp_path):
    result, out = processes["evaluate"]
    _ok(result)
    with_int = json.loads((out / "metrics.json").read_text())
    assert with_int["settings"]["score_threshold"] == 0.0
    # the same numbers as with 0.0 (in this process: a new one would prove nothing more)
    _ok(run_cli(evaluate_main, ["--gt", scoring_files["gt"], "--results",
                                scoring_files["results"], "--output", str(tmp_path / "float"),
                                "TEST.SEGCONTRAST.SCORE_THRESHOLD", "0.0",
                                "TEST.SEGCONTRAST.NUM_WORST_IMAGES", "0"]))
    with_float = json.loads((tmp_path / "float" / "metrics.json").read_text())
    for group in ("semantic", "instance", "segm", "contrast", "settings"):
        assert with_int[group] == with_float[group], group


def test_int_at_a_float_key_predict_and_tune(trained_run, tiny_data, tmp_path):
    focal = trained_run("mask_rcnn_focal")
    model = ["--config", focal.config, "--weights", str(focal.out / "model_final.pth")]
    ints = ["TEST.SEGCONTRAST.SCORE_THRESHOLD", "0", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0"]
    predicted = run_cli(_tool("predict.py").main, [
        *model, "--input", str(Path(tiny_data["image_root"]) / "val"), "--limit", "1",
        "--output", str(tmp_path / "predict"), "--semantic-png", *ints])
    _ok(predicted)
    assert json.loads((tmp_path / "predict" / "predictions.json").read_text())
    swept = run_cli(_tool("tune_mask_threshold.py").main, [
        *model, *dataset_args(tiny_data), "--thresholds", "0.5",
        "--output", str(tmp_path / "sweep"), *ints])
    _ok(swept)
    assert (tmp_path / "sweep" / "threshold_sweep.json").is_file()


def test_bad_values_are_one_line_naming_key_and_value(tiny_data, scoring_files, tmp_path):
    base = ["--config", SHAPES_FOCAL, *dataset_args(tiny_data)]
    cases = [
        (["SOLVER.MAX_ITER", "1.5"], "SOLVER.MAX_ITER = 1.5 is not allowed: expected a whole "
         "number"),
        (["SOLVER.BASE_LR", "fast"], "SOLVER.BASE_LR = 'fast' is not allowed: expected a number"),
        (["TEST.SEGCONTRAST.BOUNDARY_IOU", "1"],
         "TEST.SEGCONTRAST.BOUNDARY_IOU = 1 is not allowed: expected True or False"),
    ]
    for opts, message in cases:
        _refused(run_cli(train_main, [*base, *opts, "OUTPUT_DIR", str(tmp_path / "o")]),
                 message)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text(f'_BASE_: "{SHAPES_FOCAL}"\nTEST:\n  SEGCONTRAST:\n'
                        "    SCORE_THRESHOLD: half\n")
    _refused(run_cli(train_main, ["--config", str(bad_yaml), "OUTPUT_DIR", str(tmp_path / "o")]),
             f"{bad_yaml}: TEST.SEGCONTRAST.SCORE_THRESHOLD = 'half' is not allowed: expected "
             "a number")
    _refused(run_cli(evaluate_main, ["--gt", scoring_files["gt"], "--results",
                                     scoring_files["results"], "--output", str(tmp_path / "e"),
                                     "TEST.SEGCONTRAST.SCORE_THRESHOLD", "none"]),
             "TEST.SEGCONTRAST.SCORE_THRESHOLD = 'none' is not allowed: expected a number")
    assert not (tmp_path / "o").exists() and not (tmp_path / "e").exists()


def test_a_flag_after_the_overrides_is_named(processes, tiny_data, scoring_files, tmp_path):
    result, out = processes["flag_after"]
    _refused(result, "--resume comes after the KEY VALUE config overrides",
             "put flags before the overrides")
    assert not out.exists()
    base = ["--config", SHAPES_FOCAL, *dataset_args(tiny_data)]
    _refused(run_cli(train_main, [*base, "OUTPUT_DIR", str(tmp_path / "o"), "--eval-only"]),
             "--eval-only comes after the KEY VALUE config overrides (after "
             f"'OUTPUT_DIR {tmp_path / 'o'}')")
    _refused(run_cli(train_main, [*base, "SOLVER.MAX_ITER"]), "end with SOLVER.MAX_ITER, a key "
             "without a value")
    _refused(run_cli(evaluate_main, ["--gt", scoring_files["gt"], "--results",
                                     scoring_files["results"], "--output", str(tmp_path / "e"),
                                     "TEST.SEGCONTRAST.IOU_THRESHOLD", "0.5", "--workers", "2"]),
             "--workers comes after the KEY VALUE config overrides")


def _suggested_steps(message: str) -> tuple[int, ...] | None:
    found = re.search(r'SOLVER\.STEPS "\((\d+),\)"', message)
    return (int(found.group(1)),) if found else None


def test_the_schedule_message_suggests_only_steps_it_accepts(processes):
    result, out = processes["max_iter_1"]
    message = _refused(result, "SOLVER.MAX_ITER is 1", 'SOLVER.STEPS "()" for no drop')
    assert _suggested_steps(message) is None, message
    assert not out.exists()
    # Every suggestion, taken as given, passes the same check.
    cfg_of = {}
    for max_iter in [*range(1, 60), 100, 499, 500]:
        cfg = Namespace(SOLVER=Namespace(LR_SCHEDULER_NAME="WarmupMultiStepLR",
                                         MAX_ITER=max_iter, STEPS=(400 + max_iter,)))
        with pytest.raises(UserInputError) as refused:
            check_solver_schedule(cfg, Namespace(eval_only=False))
        steps = _suggested_steps(str(refused.value))
        cfg_of[max_iter] = steps
        if steps is not None:
            cfg.SOLVER.STEPS = steps
            check_solver_schedule(cfg, Namespace(eval_only=False))
    assert cfg_of[1] is None and cfg_of[2] == (1,) and cfg_of[100] == (80,)
