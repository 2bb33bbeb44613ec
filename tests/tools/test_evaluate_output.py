"""tools/evaluate.py when things go wrong (issue 19): whose folder --output is, one run at a
time, an interrupted swap, Ctrl-C, how many GT images a results file covers, and --images that
only the overlays need. Every test runs the real command and looks at the files on disk, the
output and the exit code."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from segcontrast.cli.evaluate import main

from tests.evaluation.results_files import write_synthetic_files

from .conftest import REPO, run_cli, run_tool, terminal_job, tool_env

CATEGORY_IDS = [3, 7, 11, 20]
MANIFEST_NAME = ".segcontrast-output.json"  # what marks a folder tools/evaluate.py wrote
FAST = ["TEST.SEGCONTRAST.NUM_WORST_IMAGES", "0"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small GT file (8 images) and its results file."""
    folder = tmp_path_factory.mktemp("evaluate_output")
    gt, results, dicts = write_synthetic_files(folder, 8, num_classes=4,
                                               category_ids=CATEGORY_IDS, height=72,
                                               width=96, instances_per_image=5, seed=4)
    return {"gt": gt, "results": results, "dicts": dicts, "folder": folder,
            "list": json.loads(results.read_text())}


def _evaluate(*argv, fast: bool = True):
    """tools/evaluate.py as a process."""
    return run_tool("evaluate.py", *map(str, argv), *(FAST if fast else []))


def _evaluate_here(*argv):
    """tools/evaluate.py's main() in this process (to set up a state quickly)."""
    return run_cli(main, [*map(str, argv), *FAST])


def _snapshot(folder: Path) -> dict:
    """Every file under ``folder`` and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _progress_free_lines(stderr: str) -> list[str]:
    # tqdm's bars ("12%|", "[00:01<00:02") are not messages.
    return [line for line in re.split(r"[\r\n]+", stderr)
            if line.strip() and not re.search(r"\d+%\||\[\d+:\d+[,<]", line)]


def _one_line_error(result, *fragments) -> str:
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr + result.stdout
    lines = _progress_free_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    return result.stderr


def _hidden_leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


# ---------------------------------------------------------------------------------------------
# Item 1: --output is replaced only when it is this tool's own folder and holds nothing else.

def test_a_training_folder_is_refused_and_left_as_it_was(files, tmp_path):
    run = tmp_path / "my_run"  # what tools/train_net.py leaves in OUTPUT_DIR
    (run / "inference" / "val").mkdir(parents=True)
    for name, content in (("model_final.pth", b"weights"), ("model_0000999.pth", b"earlier"),
                          ("last_checkpoint", b"model_final.pth"), ("config.yaml", b"MODEL: {}"),
                          ("metrics.json", b'{"iteration": 999}\n'), ("log.txt", b"log"),
                          ("inference/val/metrics.json", b"{}")):
        (run / name).write_bytes(content)
    before = _snapshot(run)
    result = _evaluate("--gt", files["gt"], "--results", files["results"], "--output", run)
    _one_line_error(result, f"--output {run} is not a folder tools/evaluate.py wrote",
                    "model_final.pth", "last_checkpoint", "config.yaml", "inference/")
    assert _snapshot(run) == before
    assert _hidden_leftovers(tmp_path, "my_run") == []


def test_user_files_next_to_an_earlier_evaluation_are_refused(files, tmp_path):
    out = tmp_path / "ev"
    assert _evaluate_here("--gt", files["gt"], "--results", files["results"],
                          "--output", out).returncode == 0
    (out / "notes.txt").write_text("my notes")
    (out / "worst_images").mkdir(exist_ok=True)
    (out / "worst_images" / "kept.png").write_bytes(b"mine")
    before = _snapshot(out)
    result = _evaluate("--gt", files["gt"], "--results", files["results"], "--output", out)
    _one_line_error(result, f"--output {out} holds an earlier tools/evaluate.py output and also "
                    "entries tools/evaluate.py did not write", "notes.txt",
                    "worst_images/")
    assert _snapshot(out) == before
    # a results file kept inside --output is the user's too
    (out / "notes.txt").unlink()
    shutil.rmtree(out / "worst_images")
    kept = out / "predictions.json"
    shutil.copy(files["results"], kept)
    before = _snapshot(out)
    result = _evaluate_here("--gt", files["gt"], "--results", kept, "--output", out)
    _one_line_error(result, "predictions.json")
    assert _snapshot(out) == before
    assert _hidden_leftovers(tmp_path, "ev") == []


def test_an_own_folder_is_replaced_and_lists_what_it_holds(files, tmp_path):
    out = tmp_path / "ev"
    other = files["folder"] / "half.json"
    other.write_text(json.dumps(files["list"][: len(files["list"]) // 2]))
    assert _evaluate_here("--gt", files["gt"], "--results", other, "--output",
                          out).returncode == 0
    result = _evaluate("--gt", files["gt"], "--results", files["results"], "--output", out)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["source"]["results_file"] == str(files["results"])
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["tool"] == "tools/evaluate.py" and manifest["complete"] is True
    on_disk = sorted(
        str(p.relative_to(out)) + ("/" if p.is_dir() else "") for p in out.rglob("*")
        if p.name != MANIFEST_NAME)
    assert manifest["entries"] == on_disk
    assert {"metrics.json", "per_image.csv", "report.html", "log.txt"} <= set(on_disk)
    assert _hidden_leftovers(tmp_path, "ev") == []  # no staging folder, no lock file left


def test_a_panoptic_out_inside_output_is_refused(files, tmp_path):
    out = tmp_path / "ev"
    assert _evaluate_here("--gt", files["gt"], "--results", files["results"],
                          "--output", out).returncode == 0
    before = _snapshot(out)
    result = _evaluate("--gt", files["gt"], "--results", files["results"], "--output", out,
                       "--panoptic-out", out / "panoptic")
    _one_line_error(result, f"--panoptic-out {out / 'panoptic'}", f"overlaps --output {out}",
                    "choose a --panoptic-out outside it")
    assert _snapshot(out) == before
    assert not (out / "panoptic").exists()


def test_a_second_run_into_the_same_output_is_refused_while_the_first_holds_it(files, tmp_path):
    out = tmp_path / "ev"
    lock = tmp_path / ".ev.segcontrast.lock"
    first = subprocess.Popen(
        [sys.executable, str(REPO / "tools" / "evaluate.py"), "--gt", str(files["gt"]),
         "--results", str(files["results"]), "--output", str(out), *FAST],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=tool_env())
    try:
        deadline = time.time() + 240
        while first.poll() is None and not (
                lock.exists() and lock.read_text().split()[:1] == [str(first.pid)]):
            assert time.time() < deadline, "the first run took no lock within 240 s"
            time.sleep(0.02)
        assert first.poll() is None, "the first run ended without a lock next to --output"
        os.kill(first.pid, signal.SIGSTOP)  # it holds the lock however slow the second run is
        try:
            second = _evaluate("--gt", files["gt"], "--results", files["results"],
                               "--output", out)
        finally:
            os.kill(first.pid, signal.SIGCONT)
        stdout, stderr = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    _one_line_error(second, f"--output {out} is in use by another run (pid {first.pid}",
                    "tools/evaluate.py --results")
    assert first.returncode == 0, stdout[-2000:] + stderr[-2000:]
    assert "scored ->" in stdout and (out / "report.html").is_file()
    assert not lock.exists()


def test_an_interrupted_swap_is_finished_by_the_next_run(files, tmp_path):
    """A run killed between the two renames left the new folder hidden and the old one too."""
    out, new = tmp_path / "ev", tmp_path / "new"
    other = files["folder"] / "third.json"
    other.write_text(json.dumps(files["list"][::3]))
    assert _evaluate_here("--gt", files["gt"], "--results", files["results"],
                          "--output", out).returncode == 0
    assert _evaluate_here("--gt", files["gt"], "--results", other,
                          "--output", new).returncode == 0
    expected = _snapshot(new)
    new.rename(tmp_path / ".ev.k2x9q0ab.tmp")   # the complete new evaluation, not yet in place
    out.rename(tmp_path / ".ev.7hd0m1zz.old")   # the old one, already moved aside
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    result = _evaluate("--gt", files["gt"], "--results", bad, "--output", out)
    assert result.returncode == 2 and "results file is not valid JSON" in result.stderr
    assert (f"--output {out}: an interrupted run had left it mid-swap; finished publishing the "
            "evaluation it had built (.ev.k2x9q0ab.tmp)") in result.stdout
    assert _snapshot(out) == expected
    assert _hidden_leftovers(tmp_path, "ev") == []


def test_an_interrupted_swap_before_the_new_folder_was_complete_is_undone(files, tmp_path):
    out = tmp_path / "ev"
    assert _evaluate_here("--gt", files["gt"], "--results", files["results"],
                          "--output", out).returncode == 0
    expected = _snapshot(out)
    out.rename(tmp_path / ".ev.7hd0m1zz.old")
    # Staging folders runs were still writing: before and after the evaluator wrote its files.
    for name, writer in ((".ev.q8w2e4r6.tmp", "tools/evaluate.py"),
                         (".ev.z0z0z0z0.tmp", "SegContrastEvaluator")):
        building = tmp_path / name
        building.mkdir()
        (building / MANIFEST_NAME).write_text(json.dumps(
            {"tool": writer, "complete": writer == "SegContrastEvaluator", "entries": []}))
        (building / "metrics.json").write_text('{"semantic": ')
    result = _evaluate("--gt", files["gt"], "--results", files["results"], "--output", out,
                       "--bootstrap", "0")
    _one_line_error(result, "--bootstrap 0")  # refused before the folder is touched
    assert _snapshot(out) == {} and not out.exists()
    result = _evaluate("--gt", files["gt"], "--results", files["results"], "--output", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert ("put back the previous folder it had moved to .ev.7hd0m1zz.old; removed its "
            "unfinished or replaced folder(s) .ev.q8w2e4r6.tmp, .ev.z0z0z0z0.tmp"
            ) in result.stdout
    assert "an interrupted run had left it mid-swap" in (out / "log.txt").read_text()
    assert _hidden_leftovers(tmp_path, "ev") == []
    assert set(_snapshot(out)) == set(expected)


# ---------------------------------------------------------------------------------------------
# Item 10: Ctrl-C prints one line, exits 130, and leaves the previous evaluation as it was.

@pytest.fixture(scope="module")
def big_files(files):
    """400 images (the 8 images of ``files`` repeated): scoring takes seconds, not milliseconds."""
    gt = json.loads(files["gt"].read_text())
    images, annotations, results = [], [], []
    for copy in range(50):
        offset = 1000 * copy
        images += [{**i, "id": i["id"] + offset, "file_name": f"{copy}_{i['file_name']}"}
                   for i in gt["images"]]
        annotations += [{**a, "id": a["id"] + 100 * offset, "image_id": a["image_id"] + offset}
                        for a in gt["annotations"]]
        results += [{**r, "image_id": r["image_id"] + offset} for r in files["list"]]
    folder = files["folder"]
    (folder / "big_gt.json").write_text(json.dumps({**gt, "images": images,
                                                     "annotations": annotations}))
    (folder / "big_results.json").write_text(json.dumps(results))
    return folder / "big_gt.json", folder / "big_results.json", len(images)


class _Reader(threading.Thread):
    """Collects a pipe's bytes as they come (tqdm's bar ends no line)."""

    def __init__(self, pipe):
        super().__init__(daemon=True)
        self.pipe, self.chunks = pipe, []

    def run(self):
        while chunk := os.read(self.pipe.fileno(), 65536):
            self.chunks.append(chunk.decode("utf-8", "replace"))

    @property
    def text(self) -> str:
        return "".join(self.chunks)


def test_ctrl_c_while_scoring_prints_one_line_and_changes_nothing(files, big_files, tmp_path):
    gt, results, num_images = big_files
    out = tmp_path / "ev"
    assert _evaluate_here("--gt", files["gt"], "--results", files["results"],
                          "--output", out).returncode == 0
    before = _snapshot(out)
    # Its own process group, as a terminal's foreground job: Ctrl-C reaches every process in it.
    process = subprocess.Popen(
        [sys.executable, str(REPO / "tools" / "evaluate.py"), "--gt", str(gt), "--results",
         str(results), "--output", str(out), "--workers", "2", *FAST],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=tool_env(),
        **terminal_job())
    stdout, stderr = _Reader(process.stdout), _Reader(process.stderr)
    stdout.start()
    stderr.start()
    try:
        deadline = time.time() + 300
        while True:  # the workers have scored some images: work is under way
            done = re.findall(rf"scoring big_results\.json:.*?(\d+)/{num_images}", stderr.text)
            if done and int(done[-1]) >= 16:
                break
            assert process.poll() is None, stdout.text[-2000:] + stderr.text[-2000:]
            assert time.time() < deadline, "scoring did not start within 300 s"
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    stdout.join(10)
    stderr.join(10)
    assert process.returncode == 130, stdout.text[-2000:] + stderr.text[-3000:]
    assert "Traceback" not in stderr.text + stdout.text, stderr.text
    assert _progress_free_lines(stderr.text) == [
        f"interrupted: nothing written; the previous evaluation in {out} is unchanged"]
    assert _snapshot(out) == before
    assert _hidden_leftovers(tmp_path, "ev") == []  # no staging folder, no lock file
    with pytest.raises(ProcessLookupError):  # no worker outlived it
        os.killpg(process.pid, 0)


# ---------------------------------------------------------------------------------------------
# Item 5: how many GT images each results file covers.

def _results_of(files, image_ids) -> list[dict]:
    return [r for r in files["list"] if r["image_id"] in image_ids]


def _covered(files) -> list[int]:
    image_ids = sorted({r["image_id"] for r in files["list"]})
    assert len(image_ids) == len(files["dicts"]) == 8  # the full file covers every image
    return image_ids


def test_partial_coverage_is_stated_in_the_log_metrics_and_report(files, tmp_path):
    covered = set(_covered(files)[:2])
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps(_results_of(files, covered)))
    out = tmp_path / "ev"
    result = _evaluate("--gt", files["gt"], "--results", partial, "--output", out)
    assert result.returncode == 0, result.stderr[-3000:]
    sentence = ("The results cover only 2 of the 8 GT images (25.0%): the other 6 are scored as "
                "images without predictions (every object on them counts as missed).")
    assert f"Coverage of {partial}: {sentence}" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["source"]["coverage"] == {
        "gt_images": 8, "images_with_results": 2, "images_without_results": 6,
        "scored_images": 8, "common_images_only": False}
    assert metrics["source"]["images_with_results"] == 2  # the key as before
    page = (out / "report.html").read_text()
    assert f'<p class="warning" id="coverage">{sentence}</p>' in page
    # a file of every image says so, without a warning
    full = tmp_path / "full"
    assert _evaluate_here("--gt", files["gt"], "--results", files["results"],
                          "--output", full).returncode == 0
    assert ('<p class="note" id="coverage">The results cover all 8 GT images.</p>'
            in (full / "report.html").read_text())


def test_compare_over_different_images_is_refused_unless_common_images(files, tmp_path):
    image_ids = _covered(files)
    a_ids, b_ids = set(image_ids[:5]), set(image_ids[3:])
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_results_of(files, a_ids)))
    b.write_text(json.dumps(_results_of(files, b_ids)))
    out = tmp_path / "ab"
    result = _evaluate("--gt", files["gt"], "--results", a, "--compare", b, "--output", out)
    _one_line_error(result, f"--results {a} has results for 5 of the 8 GT images and --compare "
                    f"{b} for 5", f"3 only in {a} (image ids 1, 2, 3)",
                    f"3 only in {b} (image ids 6, 7, 8)", "--common-images",
                    "the 2 images both cover")
    assert not out.exists()
    result = _evaluate("--gt", files["gt"], "--results", a, "--compare", b, "--common-images",
                       "--bootstrap", "50", "--output", out)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    comparison = json.loads((out / "comparison.json").read_text())
    assert metrics["details"]["num_images"] == 2 and comparison["num_images"] == 2
    assert metrics["source"]["coverage"]["common_images_only"] is True
    assert metrics["source"]["coverage"]["scored_images"] == 2
    assert comparison["coverage"] == {"gt_images": 8, "compared_images": 2,
                                      "common_images_only": True}
    assert "Scored on the 2 of the 8 GT images that both results files cover" in result.stdout
    assert "Compared on the 2 GT images that both files cover" in (out / "report.html").read_text()
    # The same numbers as scoring a GT file of just those 2 images (an independent route).
    common = a_ids & b_ids
    gt = json.loads(files["gt"].read_text())
    gt["images"] = [i for i in gt["images"] if i["id"] in common]
    gt["annotations"] = [x for x in gt["annotations"] if x["image_id"] in common]
    small_gt = tmp_path / "gt.json"  # the same file name: the same dataset name in the outputs
    small_gt.write_text(json.dumps(gt))
    alone = tmp_path / "alone"
    a_common = tmp_path / "a_common.json"
    a_common.write_text(json.dumps(_results_of(files, common)))
    assert _evaluate_here("--gt", small_gt, "--results", a_common, "--output",
                          alone).returncode == 0
    reference = json.loads((alone / "metrics.json").read_text())
    for group in ("semantic", "instance", "segm", "contrast", "panoptic", "accounting"):
        assert metrics[group] == reference[group], group


# ---------------------------------------------------------------------------------------------
# Item 11: --images only for the overlays; the log names --output, not the hidden folder.

def _write_images(root: Path, gt: Path, skip: int | None = None) -> list[str]:
    names = []
    for n, image in enumerate(json.loads(gt.read_text())["images"]):
        if n == skip:
            continue
        pixels = np.full((image["height"], image["width"], 3), 40 + 20 * n, np.uint8)
        Image.fromarray(pixels).save(root / image["file_name"])
        names.append(image["file_name"])
    return names


def test_a_missing_image_file_warns_and_scoring_goes_on(files, tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    _write_images(root, files["gt"], skip=2)
    missing = json.loads(files["gt"].read_text())["images"][2]
    out = tmp_path / "ev"
    result = _evaluate("--gt", files["gt"], "--results", files["results"], "--images", root,
                       "--output", out, "TEST.SEGCONTRAST.NUM_WORST_IMAGES", "8", fast=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "1 item(s) changed (image_missing: 1)" in result.stdout
    assert str(root / missing["file_name"]) in result.stdout
    assert len(list((out / "worst_images").glob("*.png"))) == 8  # drawn on a grey canvas
    metrics = json.loads((out / "metrics.json").read_text())
    assert any("1 image file(s) under --images" in n for n in metrics["source"]["notes"])
    assert "their overlays are drawn on a grey canvas" in (out / "report.html").read_text()
    plain = tmp_path / "plain"
    assert _evaluate_here("--gt", files["gt"], "--results", files["results"],
                          "--output", plain).returncode == 0
    without = json.loads((plain / "metrics.json").read_text())
    for group in ("semantic", "instance", "segm", "contrast", "panoptic", "accounting"):
        assert metrics[group] == without[group], group


def test_gt_images_without_a_size_take_it_from_images(files, tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    _write_images(root, files["gt"])
    gt = json.loads(files["gt"].read_text())
    del gt["images"][1]["height"], gt["images"][1]["width"]
    gt["images"][4]["height"] = None
    unsized = tmp_path / "gt.json"
    unsized.write_text(json.dumps(gt))
    result = _evaluate_here("--gt", unsized, "--results", files["results"],
                            "--output", tmp_path / "no_images")
    assert result.returncode == 2 and "height is None; expected a positive integer" in (
        result.stderr)  # without --images the sizes can only come from the JSON
    out = tmp_path / "ev"
    result = _evaluate("--gt", unsized, "--results", files["results"], "--images", root,
                       "--output", out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "2 item(s) changed (image_size_from_file: 2)" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    plain = tmp_path / "plain"
    assert _evaluate_here("--gt", files["gt"], "--results", files["results"],
                          "--output", plain).returncode == 0
    without = json.loads((plain / "metrics.json").read_text())
    for group in ("semantic", "instance", "segm", "contrast"):
        assert metrics[group] == without[group], group


def test_the_log_names_output_not_the_hidden_folder(files, tmp_path):
    out = tmp_path / "ev"
    result = _evaluate("--gt", files["gt"], "--results", files["results"], "--compare",
                       files["results"], "--bootstrap", "20", "--output", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"report.html written to {out}\n" in result.stdout
    assert f"report.html written to {out / 'compare'}\n" in result.stdout
    assert ".ev." not in result.stdout + result.stderr
    assert ".ev." not in (out / "log.txt").read_text()
