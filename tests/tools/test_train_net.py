"""tools/train_net.py end to end on a tiny generated dataset: training with each mask head,
checkpoints, eval-only equal to the end of training, resuming, kill -9, two CPU processes, and the
refusals (no weights, bad data, wrong class count, another run's checkpoints).

The trainings that several tests read come from the session's ``trained_run`` (one real process
per mask head). Refusals and runs whose proof does not need a new process call the CLI's main()
in this process (``run_cli``); the real-process tests are: the three trainings, eval-only equal
to the end of training, kill -9 then resume, two CPU processes, one refusal, and predict and the
threshold sweep (eval-only, predict and the sweep run side by side, see ``weights_runs``)."""

import contextlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from panopticapi.evaluation import pq_compute
from segcontrast.engine.train_cli import main as train_main
from segcontrast.utils.output_dir import OutputDirLock

from .conftest import REPO, dataset_args, run_cli, run_tool, terminal_job, tool_env

pytestmark = pytest.mark.slow

HEADS = {
    "mask_rcnn_bce": "MaskRCNNConvUpsampleHead",
    "mask_rcnn_focal": "FocalLossMaskHead",
    "mask_rcnn_posbce": "PosWeightedBCEMaskHead",
}


def _contrast_metrics(output_dir: Path) -> dict:
    return json.loads((output_dir / "inference" / "tiny_val" / "metrics.json").read_text())


def _training_iterations(output_dir: Path) -> list[int]:
    """Iterations that Detectron2's JSONWriter logged training losses for."""
    rows = [json.loads(line) for line in (output_dir / "metrics.json").read_text().splitlines()]
    return [row["iteration"] for row in rows if "total_loss" in row]


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder``: (size, mtime in ns); not the lock file, which any run that
    looks at the folder takes (and which says who holds it)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".segcontrast.lock"}


def _assert_ok(result) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def _assert_refused(result, *fragments: str) -> None:
    """Exit code 2, the fragments in stderr, no traceback anywhere (process or in-process run)."""
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


@pytest.mark.parametrize("leaf", list(HEADS))
def test_training_writes_logs_checkpoints_and_evaluation(trained_run, leaf):
    # The three heads' runs are trained side by side on the first case.
    run = trained_run.many(*HEADS)[leaf]
    out, result = run.out, run.result
    log = (out / "log.txt").read_text()
    assert f"NAME: {HEADS[leaf]}" in (out / "config.yaml").read_text()
    assert (out / "last_checkpoint").read_text() == "model_final.pth"
    assert {"model_0000009.pth", "model_final.pth"} <= {p.name for p in out.glob("*.pth")}
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))
    assert list(out.glob("events.out.tfevents.*"))
    assert _training_iterations(out)[-1] == 19
    metrics = _contrast_metrics(out)
    for group in ("semantic", "instance", "segm", "contrast"):
        assert group in metrics
    assert (out / "inference" / "tiny_val" / "per_image.csv").is_file()
    assert "semantic" in result.stdout + result.stderr + log
    # The evaluation table reaches the console (the process's stdout) and log.txt.
    for task in ("semantic", "instance", "segm", "contrast"):
        assert f"copypaste: Task: {task}" in result.stdout, task
        assert f"copypaste: Task: {task}" in log, task


@pytest.fixture(scope="module")
def weights_runs(trained_run, tiny_data, tmp_path_factory):
    """Eval-only, predict and the threshold sweep on the session's final weights: three real
    processes, run side by side (one thread each). {name: (process, its output folder)}."""
    runs = trained_run.many("mask_rcnn_focal", "mask_rcnn_posbce")
    focal, posbce = runs["mask_rcnn_focal"], runs["mask_rcnn_posbce"]
    folder = tmp_path_factory.mktemp("weights_runs")
    commands = {
        "eval_only": ["train_net.py", "--config", focal.config, "--eval-only",
                      *dataset_args(tiny_data), "--panoptic-out", str(folder / "panoptic"),
                      "MODEL.WEIGHTS", str(focal.out / "model_final.pth"),
                      "OUTPUT_DIR", str(folder / "eval_only")],
        "predict": ["predict.py", "--config", focal.config,
                    "--weights", str(focal.out / "model_final.pth"),
                    "--input", str(Path(tiny_data["image_root"]) / "val"),
                    "--output", str(folder / "predict"), "--semantic-png", "--confidence", "0.0"],
        "sweep": ["tune_mask_threshold.py", "--config", posbce.config, *dataset_args(tiny_data),
                  "--weights", str(posbce.out / "model_final.pth"),
                  "--thresholds", "0.3,0.5,0.7", "--metric", "semantic/mIoU",
                  "--output", str(folder / "sweep")],
    }
    with ThreadPoolExecutor(len(commands)) as pool:
        results = list(pool.map(lambda command: run_tool(*command), commands.values()))
    return {name: (result, folder / name)
            for name, result in zip(commands, results, strict=True)}


def test_eval_only_on_final_weights_equals_end_of_training(trained_run, weights_runs):
    out = trained_run("mask_rcnn_focal").out
    result, again_dir = weights_runs["eval_only"]
    _assert_ok(result)
    at_end, again = _contrast_metrics(out), _contrast_metrics(again_dir)
    for group in ("semantic", "instance", "segm", "contrast", "panoptic", "accounting"):
        assert again[group] == at_end[group], group
    # the log opens the report with the sentence and has the error-type and PQ tables
    log = (again_dir / "log.txt").read_text()
    assert again["details"]["explanation"] in log
    assert "Panoptic quality" in log and "Error types" in log
    # --panoptic-out: COCO panoptic files that panopticapi scores as the evaluator did
    folder = again_dir.parent / "panoptic" / "tiny_val"
    gt_json = json.loads((folder / "panoptic_gt.json").read_text())
    assert len(gt_json["annotations"]) == 4
    assert len(list((folder / "panoptic_pred").glob("*.png"))) == 4
    with contextlib.redirect_stdout(io.StringIO()):
        theirs = pq_compute(str(folder / "panoptic_gt.json"), str(folder / "panoptic_pred.json"))
    assert abs(theirs["All"]["pq"] * 100 - again["panoptic"]["PQ_all"]) < 1e-9


def test_resume_continues_from_the_saved_iteration(trained_run, tiny_data, tmp_path):
    session = trained_run("mask_rcnn_bce")
    config = session.config
    # A new run over another run's checkpoints is refused without --resume / --overwrite,
    # and leaves that run's files alone.
    before = _files(session.out)
    refused = run_cli(train_main, ["--config", config, *dataset_args(tiny_data),
                                   "OUTPUT_DIR", str(session.out)])
    _assert_refused(refused, "already holds checkpoints", "--resume", "--overwrite")
    assert _files(session.out) == before

    # Resume a finished 20-iteration run (a copy of the session's) to 30 iterations.
    run = tmp_path / "run"
    shutil.copytree(session.out, run)
    assert _training_iterations(run)[-1] == 19
    resumed = run_cli(train_main, ["--config", config, "--resume", *dataset_args(tiny_data),
                                   "SOLVER.MAX_ITER", "30", "OUTPUT_DIR", str(run)])
    _assert_ok(resumed)
    log = (run / "log.txt").read_text()
    assert "Starting training from iteration 20" in log
    assert _training_iterations(run)[-1] == 29
    assert (run / "last_checkpoint").read_text() == "model_final.pth"
    assert torch.load(run / "model_final.pth", weights_only=True)["iteration"] == 29


def test_ctrl_c_during_training_prints_one_line_and_leaves_only_complete_files(
        tiny_data, tiny_config, tmp_path):
    out = tmp_path / "run"
    log_out, log_err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    # Evaluated every 2 iterations of a run that would not end on its own: the interrupt comes
    # during training or during an evaluation (writing its files), never after the end.
    args = ["--config", tiny_config("mask_rcnn_bce"), *dataset_args(tiny_data),
            "SOLVER.MAX_ITER", "100000", "TEST.EVAL_PERIOD", "2", "OUTPUT_DIR", str(out)]
    with open(log_out, "w") as stdout, open(log_err, "w") as stderr:
        # Its own process group, as a terminal's foreground job: Ctrl-C reaches all of it.
        process = subprocess.Popen([sys.executable, str(REPO / "tools" / "train_net.py"), *args],
                                   cwd=REPO, env=tool_env(), stdout=stdout, stderr=stderr,
                                   **terminal_job())
        try:
            report = out / "inference" / "tiny_val" / "report.html"
            deadline = time.time() + 300
            while not report.exists():  # one evaluation is complete; more are under way
                assert process.poll() is None, log_err.read_text()[-3000:]
                assert time.time() < deadline, "no evaluation within 300 s"
                time.sleep(0.05)
            time.sleep(0.5)
            os.killpg(process.pid, signal.SIGINT)
            process.wait(timeout=120)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    err, printed = log_err.read_text(), log_out.read_text()
    assert process.returncode == 130, printed[-2000:] + err[-3000:]
    assert "Traceback" not in err + printed
    lines = [line for line in re.split(r"[\r\n]+", err)
             if line.strip() and not re.search(r"\d+%\||\[\d+:\d+[,<]", line)]
    assert lines == ["interrupted: training stopped; its checkpoints and evaluation files in "
                     "OUTPUT_DIR are complete (none is half-written): --resume continues from "
                     "the last checkpoint"], err
    # The evaluation folder holds one complete set: what its manifest lists, and a report.html
    # showing the numbers of the metrics.json next to it.
    folder = out / "inference" / "tiny_val"
    manifest = json.loads((folder / ".segcontrast-output.json").read_text())
    on_disk = sorted(str(p.relative_to(folder)) + ("/" if p.is_dir() else "")
                     for p in folder.rglob("*") if p.name != ".segcontrast-output.json")
    assert manifest["entries"] == on_disk
    metrics = json.loads((folder / "metrics.json").read_text())
    page = (folder / "report.html").read_text()
    assert (f'data-group="segm" data-key="AP" data-value="{metrics["segm"]["AP"]!r}"'
            in page)
    leftovers = [str(p) for p in out.rglob("*") if p.name.endswith(".tmp")
                 or p.name.startswith((".segcontrast-staging.", ".segcontrast-old."))]
    assert leftovers == []
    with OutputDirLock(out):  # let go of
        pass


def test_kill_9_then_resume_ends_like_an_uninterrupted_run(trained_run, tiny_data, tmp_path):
    # The uninterrupted run of the same config is the session's.
    reference = trained_run("mask_rcnn_bce")
    out = tmp_path / "killed"
    args = ["--config", reference.config, *dataset_args(tiny_data),
            "SOLVER.CHECKPOINT_PERIOD", "5", "OUTPUT_DIR", str(out)]
    process = subprocess.Popen([sys.executable, str(REPO / "tools" / "train_net.py"), *args],
                               cwd=REPO, env=tool_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    # Killed as soon as its first checkpoint is tagged: 15 of its 20 iterations are left.
    deadline = time.time() + 240
    while not (out / "last_checkpoint").exists():
        assert process.poll() is None, "the run ended before its first checkpoint"
        assert time.time() < deadline, "no checkpoint within 240 s"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run ended before it was killed"
    assert not (out / "model_final.pth").exists(), "the run finished before it was killed"
    saved = (out / "last_checkpoint").read_text()
    assert saved.startswith("model_00000") and (out / saved).is_file()

    resumed = run_tool("train_net.py", "--resume", *args)
    _assert_ok(resumed)
    iteration = int(saved[len("model_"):-len(".pth")])
    assert f"Starting training from iteration {iteration + 1}" in (out / "log.txt").read_text()
    assert _training_iterations(out)[-1] == _training_iterations(reference.out)[-1] == 19
    assert (out / "last_checkpoint").read_text() == "model_final.pth"
    final = torch.load(out / "model_final.pth", weights_only=True)
    expected = torch.load(reference.out / "model_final.pth", weights_only=True)
    assert final["iteration"] == expected["iteration"] == 19
    assert ({k: v.shape for k, v in final["model"].items()}
            == {k: v.shape for k, v in expected["model"].items()})
    assert set(_contrast_metrics(out)) == set(_contrast_metrics(reference.out))


def test_two_cpu_processes(tiny_data, tiny_config, tmp_path):
    # The eager loss: each worker would otherwise compile the loss kernel (seconds of CPU), and
    # what is proved here is the two processes' training and evaluation.
    result = run_tool("train_net.py", "--config", tiny_config("mask_rcnn_posbce"),
                      "--num-gpus", "2", *dataset_args(tiny_data), "SOLVER.MAX_ITER", "2",
                      "OUTPUT_DIR", str(tmp_path), timeout=400,
                      extra_env={"SEGCONTRAST_LOSS_BACKEND": "eager"})
    _assert_ok(result)
    assert (tmp_path / "model_final.pth").is_file()
    assert _training_iterations(tmp_path)[-1] == 1
    assert "semantic" in _contrast_metrics(tmp_path)
    # The second process logged too (Detectron2 gives each rank its own log file).
    assert "World size: 2" in (tmp_path / "log.txt.rank1").read_text()


def test_eval_only_refuses_missing_or_unfit_weights(tiny_data, tiny_config, tmp_path, trained_run):
    config = tiny_config("mask_rcnn_focal")
    base = ["--config", config, "--eval-only", *dataset_args(tiny_data)]
    _assert_refused(run_cli(train_main, [*base, "OUTPUT_DIR", str(tmp_path)]),
                    "MODEL.WEIGHTS is empty")
    _assert_refused(run_cli(train_main, [*base, "MODEL.WEIGHTS", str(tmp_path / "nope.pth"),
                                         "OUTPUT_DIR", str(tmp_path)]), "no such file")
    # Weights of a model with another mask head width do not fit.
    out = trained_run("mask_rcnn_focal").out
    _assert_refused(run_cli(train_main, [*base, "MODEL.WEIGHTS", str(out / "model_final.pth"),
                                         "MODEL.ROI_MASK_HEAD.CONV_DIM", "32",
                                         "OUTPUT_DIR", str(tmp_path)]),
                    "does not fit the model")


def test_bad_datasets_and_class_counts_are_refused_before_training(tiny_data, tiny_config,
                                                                   tmp_path):
    config = tiny_config("mask_rcnn_focal")
    wrong_classes = run_cli(train_main, ["--config", config, *dataset_args(tiny_data),
                                         "MODEL.ROI_HEADS.NUM_CLASSES", "5",
                                         "OUTPUT_DIR", str(tmp_path)])
    _assert_refused(wrong_classes, "NUM_CLASSES is 5", "3 categories")

    data = json.loads(Path(tiny_data["train"]).read_text())
    data["images"][1]["file_name"] = "train/missing.png"
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(data))
    # The refusal that runs as a real process: its exit code and stderr are the process's own.
    bad = run_tool("train_net.py", "--config", config,
                   "--dataset", f"tiny_train={broken}:{tiny_data['image_root']}",
                   "--dataset", f"tiny_val={tiny_data['val']}:{tiny_data['image_root']}",
                   "OUTPUT_DIR", str(tmp_path / "out"))
    image_id = data["images"][1]["id"]
    _assert_refused(bad, str(broken), f"image {image_id}", "missing.png")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.pth"))

    bad_spec = run_cli(train_main, ["--config", config, "--dataset", "no-equals-sign"])
    _assert_refused(bad_spec, "NAME=JSON:IMAGE_ROOT")
    bad_value = run_cli(train_main, ["--config", config, *dataset_args(tiny_data),
                                     "MODEL.ROI_MASK_HEAD.POS_WEIGHT", "autoo"])
    _assert_refused(bad_value, "MODEL.ROI_MASK_HEAD.POS_WEIGHT", "auto")


def _copypaste_results(log: str, task: str) -> dict[str, float]:
    """The metrics Detectron2's print_csv_format logged for a task."""
    lines = [line.split("copypaste: ", 1)[1] for line in log.splitlines() if "copypaste: " in line]
    start = lines.index(f"Task: {task}")
    names, values = lines[start + 1].split(","), lines[start + 2].split(",")
    return {n: float(v) for n, v in zip(names, values, strict=True)}


def test_datasets_from_the_config_and_ap_equal_to_coco_evaluator(tiny_data, tiny_config, tmp_path,
                                                                 trained_run):
    config = tmp_path / "with_coco.yaml"
    config.write_text(
        f'_BASE_: "{tiny_config("mask_rcnn_focal")}"\n'
        "DATASETS:\n"
        f'  COCO: [["tiny_val_cfg", "{tiny_data["val"]}", "{tiny_data["image_root"]}"]]\n'
        '  TEST: ("tiny_val_cfg",)\n'
        "TEST:\n"
        "  SEGCONTRAST:\n"
        "    COCO_EVALUATOR: True\n"
    )
    out = trained_run("mask_rcnn_focal").out
    result = run_cli(train_main, ["--config", str(config), "--eval-only",
                                  "MODEL.WEIGHTS", str(out / "model_final.pth"),
                                  "OUTPUT_DIR", str(tmp_path)])
    _assert_ok(result)
    ours = json.loads((tmp_path / "inference" / "tiny_val_cfg" / "metrics.json").read_text())
    log = (tmp_path / "log.txt").read_text()
    theirs = _copypaste_results(log, "coco_segm")
    for key in ("AP", "AP50", "AP75"):
        assert ours["segm"][key] == pytest.approx(theirs[key], abs=1e-3), key


def test_predict_writes_overlays_results_and_label_maps(weights_runs, tiny_data):
    images = Path(tiny_data["image_root"]) / "val"
    result, tmp_path = weights_runs["predict"]
    _assert_ok(result)
    names = sorted(p.name for p in images.glob("*.png"))
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(
        [f"{n}.semantic.png" for n in names] + [f"{n}.overlay.png" for n in names])
    predictions = json.loads((tmp_path / "predictions.json").read_text())
    assert all({"image_id", "category_id", "segmentation", "score"} <= set(p)
               for p in predictions)


def test_mask_threshold_sweep_matches_evaluation_at_its_threshold(trained_run, weights_runs):
    out = trained_run("mask_rcnn_posbce").out
    result, tmp_path = weights_runs["sweep"]
    _assert_ok(result)
    sweep = json.loads((tmp_path / "threshold_sweep.json").read_text())
    assert sweep["thresholds"] == [0.3, 0.5, 0.7]
    assert sweep["best_threshold"] in sweep["thresholds"]
    assert (tmp_path / "threshold_sweep.png").stat().st_size > 0
    assert "best threshold" in result.stdout
    # At 0.5 the sweep pastes masks exactly as training's final evaluation did.
    at_end = _contrast_metrics(out)
    at_half = sweep["results"][1]
    for group in ("semantic", "instance", "segm"):
        assert at_half[group] == at_end[group], group
