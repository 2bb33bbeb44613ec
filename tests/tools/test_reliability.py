"""What a new user meets when things go wrong (issue 12), through the real tools.

One real training run on a dataset with category ids 3, 5 and 9 is shared: while it holds its
OUTPUT_DIR, a second run into the same folder is started (and refused); its stdout and log.txt
must hold the evaluator's report and the set-up notes, each once; its weights then go to
tools/predict.py and to a 2-process eval-only run. Refusals (exit code 2, one line, no
traceback) are checked by calling the tools' main() in this process.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from segcontrast.config import load_config
from segcontrast.engine import prediction_overlays as overlays_module
from segcontrast.engine.predictor import Predictor, predict_images
from segcontrast.engine.train_cli import main as train_net_main
from segcontrast.utils.known_warnings import KNOWN_LOG_MESSAGES, KNOWN_WARNINGS

from tests.in_process import state_put_back

from .conftest import REPO, dataset_args, run_tool, tool_module


@pytest.fixture(autouse=True)
def _main_calls_leave_nothing_behind():
    """Tests here call tools' main() directly (reading capsys): forget what each registers."""
    with state_put_back():
        yield

pytestmark = pytest.mark.slow

# The tiny shapes dataset's categories 1..3 (circle, square, triangle) become 3 date, 5 fig and
# 9 kiwi: no dataset id equals a contiguous index (0..2), so a missed mapping cannot hide.
FRUIT = {1: (3, "date"), 2: (5, "fig"), 3: (9, "kiwi")}
FRUIT_IDS = {3, 5, 9}
TOOL_ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def _load_tool(script: str):
    return tool_module(script)


@pytest.fixture(scope="module")
def fruit(tmp_path_factory, tiny_data):
    """The tiny dataset with category ids 3, 5, 9; the training split has one empty mask."""
    folder = tmp_path_factory.mktemp("fruit")
    paths = {"image_root": tiny_data["image_root"]}
    for split in ("train", "val"):
        coco = json.loads(Path(tiny_data[split]).read_text())
        coco["categories"] = [{"id": FRUIT[c["id"]][0], "name": FRUIT[c["id"]][1]}
                              for c in coco["categories"]]
        for ann in coco["annotations"]:
            ann["category_id"] = FRUIT[ann["category_id"]][0]
        if split == "train":  # dropped with a count when the dataset is validated
            empty = {**coco["annotations"][0], "segmentation": [],
                     "id": max(a["id"] for a in coco["annotations"]) + 1}
            coco["annotations"].append(empty)
        paths[split] = str(folder / f"{split}.json")
        Path(paths[split]).write_text(json.dumps(coco))
    return paths


def _fruit_args(fruit) -> list[str]:
    root = fruit["image_root"]
    return ["--dataset", f"fruit_train={fruit['train']}:{root}",
            "--dataset", f"fruit_val={fruit['val']}:{root}",
            "DATASETS.TRAIN", "('fruit_train',)", "DATASETS.TEST", "('fruit_val',)"]


@dataclass
class Run:
    out: Path
    pid: int
    returncode: int
    stdout: str
    stderr: str
    second: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def fruit_run(tmp_path_factory, fruit, tiny_config):
    """A 3-iteration training run; a second run is started while the first holds the lock."""
    out = tmp_path_factory.mktemp("fruit_run")
    args = ["--config", tiny_config("mask_rcnn_bce"), *_fruit_args(fruit), "SOLVER.MAX_ITER", "3",
            "OUTPUT_DIR", str(out)]
    first = subprocess.Popen([sys.executable, str(REPO / "tools" / "train_net.py"), *args],
                             cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=TOOL_ENV)
    lock_file = out / ".segcontrast.lock"
    deadline = time.time() + 240
    while first.poll() is None and not (
        lock_file.exists() and lock_file.read_text().split()[:1] == [str(first.pid)]
    ):
        assert time.time() < deadline, "the first run took no lock within 240 s"
        time.sleep(0.05)
    if first.poll() is not None:
        stdout, stderr = first.communicate()
        pytest.fail(f"the first run ended (exit code {first.returncode}) without holding a lock "
                    f"on its OUTPUT_DIR:\n{stdout[-2000:]}{stderr[-2000:]}")
    # Stopped, the first run keeps its lock however slow the second one is to start.
    os.kill(first.pid, signal.SIGSTOP)
    try:
        second = run_tool("train_net.py", *args)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    stdout, stderr = first.communicate(timeout=600)
    return Run(out, first.pid, first.returncode, stdout, stderr, second)


def _assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    # tqdm's progress bars (stderr: "12%|", "[00:01<00:02", "[00:00, ?B/s]") are not messages.
    lines = [line for line in re.split(r"[\r\n]+", err)
             if line.strip() and not re.search(r"\d+%\||\[\d+:\d+[,<]", line)]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in err, err


# ---------------------------------------------------------------------------------------------
# Item 13: one run per OUTPUT_DIR.

def test_second_run_into_a_held_output_dir_exits_2_naming_the_running_pid(fruit_run):
    second = fruit_run.second
    _assert_one_line_error(second.returncode, second.stderr, "is in use by another run",
                           f"pid {fruit_run.pid}", str(fruit_run.out))
    assert fruit_run.returncode == 0, fruit_run.stdout[-2000:] + fruit_run.stderr[-2000:]
    assert (fruit_run.out / "model_final.pth").is_file()


# ---------------------------------------------------------------------------------------------
# Item 1: the evaluator's report and the set-up notes reach stdout and log.txt, once each.

def test_training_prints_the_report_and_notes_once_on_stdout_and_in_log_txt(fruit_run):
    metrics = json.loads((fruit_run.out / "inference" / "fruit_val" / "metrics.json").read_text())
    explanation = metrics["details"]["explanation"]
    assert explanation.startswith("Semantic mIoU")
    once = [
        "SegContrast evaluation of fruit_val (4 images)",
        "Per class, semantic vs instance:",
        explanation,
        "SegContrast uses detectron2",
        "Training data has RLE masks: using INPUT.MASK_FORMAT bitmask.",
        "1 item(s) dropped (segmentation_empty: 1)",
    ]
    if not torch.cuda.is_available():
        once.append("No CUDA device found: running on the CPU (MODEL.DEVICE cpu).")
    log = (fruit_run.out / "log.txt").read_text()
    for where, text in (("stdout", fruit_run.stdout), ("log.txt", log)):
        for line in once:
            assert text.count(line) == 1, (where, line, text.count(line))
        for name in ("date", "fig", "kiwi"):  # the per-class table uses the dataset's names
            assert re.search(rf"^\| {name}\s+\|", text, re.MULTILINE), (where, name)


# ---------------------------------------------------------------------------------------------
# Item 14: no known third-party noise at start-up.

def _assert_no_known_warnings(stderr: str) -> None:
    for known in KNOWN_WARNINGS:
        assert not re.search(known.message, stderr), known.message
    for known in KNOWN_LOG_MESSAGES:
        assert known.prefix not in stderr


def test_tools_print_none_of_the_known_harmless_warnings(fruit_run, predict_run):
    for stderr in (fruit_run.stderr, fruit_run.second.stderr, predict_run.stderr):
        _assert_no_known_warnings(stderr)


# ---------------------------------------------------------------------------------------------
# Items 2 and 11: predict.py names classes as the dataset does, and skips unreadable files.

@dataclass
class PredictRun:
    out: Path
    good: list[Path]
    bad: list[Path]
    result: subprocess.CompletedProcess

    @property
    def stdout(self) -> str:
        return self.result.stdout

    @property
    def stderr(self) -> str:
        return self.result.stderr


@pytest.fixture(scope="module")
def predict_run(tmp_path_factory, fruit_run, fruit, tiny_config):
    """tools/predict.py on two good images, a text file named .png and a cut PNG."""
    folder = tmp_path_factory.mktemp("predict_input")
    good = sorted((Path(fruit["image_root"]) / "val").glob("*.png"))[:2]
    for path in good:
        (folder / path.name).write_bytes(path.read_bytes())
    bad = [folder / "notes.png", folder / "zz_cut.png"]
    bad[0].write_text("not an image\n")
    bad[1].write_bytes(good[0].read_bytes()[:300])
    out = tmp_path_factory.mktemp("predict_output")
    result = run_tool("predict.py", "--config", tiny_config("mask_rcnn_bce"),
                      "--weights", str(fruit_run.out / "model_final.pth"), "--input", str(folder),
                      "--output", str(out), "--confidence", "0",
                      "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0")
    return PredictRun(out, [folder / p.name for p in good], bad, result)


def test_predict_writes_the_dataset_ids_from_the_weights(predict_run):
    assert predict_run.result.returncode == 0, predict_run.stdout + predict_run.stderr
    predictions = json.loads((predict_run.out / "predictions.json").read_text())
    assert predictions
    assert {p["category_id"] for p in predictions} <= FRUIT_IDS
    assert "Class names and category ids (MODEL.WEIGHTS" in predict_run.stdout
    assert "3 date, 5 fig, 9 kiwi" in predict_run.stdout


def test_predict_skips_unreadable_files_naming_each_and_counts_them(predict_run):
    assert predict_run.result.returncode == 0
    assert "Traceback" not in predict_run.stderr
    for path in predict_run.bad:
        assert predict_run.stdout.count(f"Skipped {path}: not a readable image") == 1
    assert "predict: 2 of 4 files predicted, 2 skipped (not readable images)" in predict_run.stdout
    predictions = json.loads((predict_run.out / "predictions.json").read_text())
    assert {p["file_name"] for p in predictions} <= {str(p) for p in predict_run.good}
    written = {p.name for p in predict_run.out.glob("*.png")}
    assert written == {f"{p.name}.overlay.png" for p in predict_run.good}


def test_predict_overlays_are_labelled_with_the_dataset_names(fruit_run, tiny_config, tmp_path,
                                                               monkeypatch):
    cfg = load_config(tiny_config("mask_rcnn_bce"), ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"])
    predictor = Predictor(cfg, str(fruit_run.out / "model_final.pth"))
    assert predictor.metadata.thing_classes == ["date", "fig", "kiwi"]
    assert predictor.classes.dataset_ids == (3, 5, 9)
    labels = []

    class RecordingVisualizer(overlays_module.Visualizer):
        def overlay_instances(self, *args, **kwargs):
            labels.extend(kwargs.get("labels") or [])
            return super().overlay_instances(*args, **kwargs)

    monkeypatch.setattr(overlays_module, "Visualizer", RecordingVisualizer)
    picture = tmp_path / "one.png"
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(picture)
    summary = predict_images(predictor, [picture], str(tmp_path / "out"), confidence=0.0)
    assert summary.predicted == 1 and labels
    assert {label.split(" ")[0] for label in labels} <= {"date", "fig", "kiwi"}


def _predict_args(fruit_run, tiny_config) -> list[str]:
    return ["--config", tiny_config("mask_rcnn_bce"),
            "--weights", str(fruit_run.out / "model_final.pth")]


def test_predict_refuses_unknown_metadata_and_a_class_count_that_differs(
        fruit_run, fruit, tiny_config, tmp_path, capsys):
    predict = _load_tool("predict.py")
    base = [*_predict_args(fruit_run, tiny_config), "--input",
            str(Path(fruit["image_root"]) / "val"), "--limit", "1"]
    code = predict.main([*base, "--output", str(tmp_path / "a"), "--metadata", "never_registered"])
    _assert_one_line_error(code, capsys.readouterr().err, "--metadata never_registered",
                           "no dataset of that name is registered")

    two = json.loads(Path(fruit["val"]).read_text())
    two["categories"] = two["categories"][:2]
    two["annotations"] = [a for a in two["annotations"] if a["category_id"] in (3, 5)]
    two_path = tmp_path / "two.json"
    two_path.write_text(json.dumps(two))
    code = predict.main([*base, "--output", str(tmp_path / "b"),
                         "--dataset", f"two_classes={two_path}:{fruit['image_root']}"])
    _assert_one_line_error(code, capsys.readouterr().err, "--dataset two_classes has 2 classes",
                           "the config's model has 3 (MODEL.ROI_HEADS.NUM_CLASSES")


def test_predict_dataset_overrides_the_weights_classes(fruit_run, fruit, tiny_config, tmp_path,
                                                       capsys):
    renamed = json.loads(Path(fruit["val"]).read_text())
    new_ids = {3: 10, 5: 20, 9: 30}
    renamed["categories"] = [{"id": new_ids[c["id"]], "name": f"other_{c['name']}"}
                             for c in renamed["categories"]]
    for ann in renamed["annotations"]:
        ann["category_id"] = new_ids[ann["category_id"]]
    path = tmp_path / "renamed.json"
    path.write_text(json.dumps(renamed))
    code = _load_tool("predict.py").main([
        *_predict_args(fruit_run, tiny_config),
        "--input", str(Path(fruit["image_root"]) / "val"), "--limit", "1",
        "--output", str(tmp_path / "out"), "--dataset", f"renamed_val={path}:{fruit['image_root']}",
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"])
    out = capsys.readouterr().out
    assert code == 0
    assert "10 other_date, 20 other_fig, 30 other_kiwi" in out
    assert "differ from those the weights were trained on" in out
    predictions = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert predictions and {p["category_id"] for p in predictions} <= {10, 20, 30}


def test_predict_exits_2_when_no_file_is_readable(fruit_run, tiny_config, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.png").write_text("text")
    (folder / "b.jpg").write_bytes(b"")
    code = _load_tool("predict.py").main([
        *_predict_args(fruit_run, tiny_config),
        "--input", str(folder), "--output", str(tmp_path / "out")])
    captured = capsys.readouterr()
    _assert_one_line_error(code, captured.err, "none of the 2 files is a readable image")
    assert captured.out.count("Skipped ") == 2
    assert not (tmp_path / "out" / "predictions.json").exists()


# ---------------------------------------------------------------------------------------------
# Items 1 and 2 with two processes: eval-only reads the weights, logs each note once.

def test_two_process_eval_only_logs_once_and_scores_as_training_did(fruit_run, fruit, tiny_config,
                                                                     tmp_path):
    result = run_tool("train_net.py", "--config", tiny_config("mask_rcnn_bce"), "--eval-only",
                      "--num-gpus", "2", *_fruit_args(fruit),
                      "MODEL.WEIGHTS", str(fruit_run.out / "model_final.pth"),
                      "OUTPUT_DIR", str(tmp_path), timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = (tmp_path / "log.txt").read_text()
    once = ["Per class, semantic vs instance:", "SegContrast uses detectron2",
            "SegContrast evaluation of fruit_val (4 images)"]
    if not torch.cuda.is_available():
        once.append("No CUDA device found")
    for where, text in (("stdout", result.stdout), ("log.txt", log)):
        for line in once:
            assert text.count(line) == 1, (where, line, text.count(line))
    assert "Per class" not in (tmp_path / "log.txt.rank1").read_text()
    ours = json.loads((tmp_path / "inference" / "fruit_val" / "metrics.json").read_text())
    at_end = json.loads((fruit_run.out / "inference" / "fruit_val" / "metrics.json").read_text())
    for group in ("semantic", "instance", "segm", "contrast"):
        assert ours[group] == at_end[group], group
    _assert_no_known_warnings(result.stderr)


# ---------------------------------------------------------------------------------------------
# Items 6-10: exit code 2 and one clear line, before any work.

@pytest.fixture
def train_args(tiny_data, tiny_config, tmp_path):
    def make(*opts: str, leaf: str = "mask_rcnn_bce") -> list[str]:
        return ["--config", tiny_config(leaf), *dataset_args(tiny_data), *opts]
    return make


def test_model_zoo_url_without_network_is_one_clear_line(train_args, tmp_path, capsys,
                                                         monkeypatch):
    monkeypatch.setenv("FVCORE_CACHE", str(tmp_path / "cache"))
    # A port nothing listens on: the download really fails, as without a network.
    unreachable = "http://127.0.0.1:9/weights/model_final.pth"
    code = train_net_main(train_args("MODEL.WEIGHTS", unreachable,
                                     "OUTPUT_DIR", str(tmp_path / "a")))
    _assert_one_line_error(code, capsys.readouterr().err, f"MODEL.WEIGHTS = {unreachable}",
                           "cannot download", "network", "local file", 'MODEL.WEIGHTS ""')

    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError(OSError(101, "Network is unreachable"))

    monkeypatch.setattr(urllib.request, "urlretrieve", no_network)
    zoo = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
    code = train_net_main(train_args("MODEL.WEIGHTS", zoo, "OUTPUT_DIR", str(tmp_path / "b")))
    _assert_one_line_error(
        code, capsys.readouterr().err, zoo,
        "https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/MSRA/R-50.pkl",
        "Network is unreachable", "network connection")
    assert not list((tmp_path / "b").glob("*.pth"))


def test_yaml_syntax_error_names_file_line_and_column(tiny_config, tmp_path, capsys):
    base = tmp_path / "base.yaml"
    base.write_text(f'_BASE_: "{tiny_config("mask_rcnn_bce")}"\nSOLVER:\n  MAX_ITER: 3: 4\n')
    leaf = tmp_path / "leaf.yaml"
    leaf.write_text(f'_BASE_: "{base}"\nSOLVER:\n  BASE_LR: 0.1\n')
    # "  MAX_ITER: 3: 4": the second ':' (line 3, column 14) cannot start a mapping there.
    for config in (base, leaf):
        code = train_net_main(["--config", str(config), "OUTPUT_DIR", str(tmp_path / "out")])
        _assert_one_line_error(code, capsys.readouterr().err,
                               f"{base}, line 3, column 14: not valid yaml")
    assert not (tmp_path / "out").exists()


def test_a_file_that_is_not_a_checkpoint_is_named(train_args, tmp_path, capsys):
    notes = tmp_path / "notes.pth"
    notes.write_text("this is a text file\n")
    for extra in ([], ["--eval-only"]):
        code = train_net_main([*extra, *train_args("MODEL.WEIGHTS", str(notes),
                                                   "OUTPUT_DIR", str(tmp_path / "out"))])
        _assert_one_line_error(code, capsys.readouterr().err,
                               f"{notes} is not a PyTorch checkpoint")


def test_predict_refuses_a_file_that_is_not_a_checkpoint(tiny_config, tiny_data, tmp_path,
                                                         capsys):
    notes = tmp_path / "notes.pth"
    notes.write_text("this is a text file\n")
    code = _load_tool("predict.py").main([
        "--config", tiny_config("mask_rcnn_bce"), "--weights", str(notes),
        "--input", str(Path(tiny_data["image_root"]) / "val"), "--output", str(tmp_path / "o")])
    _assert_one_line_error(code, capsys.readouterr().err, f"{notes} is not a PyTorch checkpoint")


def test_unusable_output_dir_is_named_before_any_work(tiny_config, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    # A dataset that would fail validation: the output folder must be refused first.
    broken = ["--config", tiny_config("mask_rcnn_bce"),
              "--dataset", f"broken_train={tmp_path / 'missing.json'}:{tmp_path}",
              "DATASETS.TRAIN", "('broken_train',)"]
    code = train_net_main([*broken, "OUTPUT_DIR", str(a_file)])
    _assert_one_line_error(code, capsys.readouterr().err, f"OUTPUT_DIR {a_file} is a file")
    code = train_net_main([*broken, "OUTPUT_DIR", str(a_file / "run")])
    _assert_one_line_error(code, capsys.readouterr().err, f"OUTPUT_DIR {a_file / 'run'}",
                           "cannot be created")
    for tool in ("predict.py", "tune_mask_threshold.py"):
        extra = ["--input", str(tmp_path)] if tool == "predict.py" else []
        code = _load_tool(tool).main(["--config", tiny_config("mask_rcnn_bce"), "--weights",
                                      str(tmp_path / "w.pth"), *extra, "--output", str(a_file)])
        _assert_one_line_error(code, capsys.readouterr().err, f"--output {a_file} is a file")


def test_max_iter_at_or_below_a_step_is_refused_at_config_time(tmp_path, capsys):
    config = str(REPO / "configs" / "shapes" / "mask_rcnn_focal.yaml")  # SOLVER.STEPS (400,)
    for max_iter in ("400", "300"):
        code = train_net_main(["--config", config, "SOLVER.MAX_ITER", max_iter,
                               "OUTPUT_DIR", str(tmp_path / max_iter)])
        _assert_one_line_error(code, capsys.readouterr().err,
                               f"SOLVER.MAX_ITER is {max_iter}", "SOLVER.STEPS is (400,)",
                               "milestone(s) 400")
        assert not (tmp_path / max_iter).exists()  # refused before the output folder is made
