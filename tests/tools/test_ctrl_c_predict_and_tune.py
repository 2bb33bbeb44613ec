"""Ctrl-C in tools/predict.py and tools/tune_mask_threshold.py (issue 19, item 10).

Each tool runs as a real process in a process group of its own and gets SIGINT on the whole group,
as a terminal's Ctrl-C sends it, once it is at work (an overlay on disk; the sweep's progress
bar). It must print one line, exit 130 and leave only complete files.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from .conftest import REPO, run_cli, terminal_job, tool_env, tool_module

pytestmark = pytest.mark.slow

NUM_IMAGES = 40


@pytest.fixture(scope="module")
def focal(trained_run):
    return trained_run("mask_rcnn_focal")


@pytest.fixture(scope="module")
def many(tmp_path_factory, tiny_data) -> dict[str, Path]:
    """40 copies of a validation image (640x640 JPEGs), and a dataset of 40 copies of one."""
    folder = tmp_path_factory.mktemp("many")
    images = folder / "images"
    images.mkdir()
    val = sorted((Path(tiny_data["image_root"]) / "val").glob("*.png"))
    Image.open(val[1]).convert("RGB").resize((640, 640)).save(images / "img_000.jpg", quality=90)
    for i in range(1, NUM_IMAGES):
        (images / f"img_{i:03d}.jpg").write_bytes((images / "img_000.jpg").read_bytes())
    coco = json.loads(Path(tiny_data["val"]).read_text())
    first = coco["images"][0]
    anns = [a for a in coco["annotations"] if a["image_id"] == first["id"]]
    coco["images"] = [{**first, "id": n + 1} for n in range(NUM_IMAGES)]
    coco["annotations"] = [{**a, "id": n * 100 + k + 1, "image_id": n + 1}
                           for n in range(NUM_IMAGES) for k, a in enumerate(anns)]
    dataset = folder / "many_val.json"
    dataset.write_text(json.dumps(coco))
    return {"images": images, "dataset": dataset, "image_root": Path(tiny_data["image_root"])}


class _Output(threading.Thread):
    """Collects what a pipe delivers while the process runs."""

    def __init__(self, stream) -> None:
        super().__init__(daemon=True)
        self.stream, self.text = stream, ""

    def run(self) -> None:
        for chunk in iter(lambda: self.stream.read(1), ""):
            self.text += chunk


def _interrupt_when(args: list[str], at_work) -> tuple[int, str, str]:
    """Start a tool, press Ctrl-C once ``at_work(stderr_so_far)``; its exit code and output."""
    process = subprocess.Popen([sys.executable, *args], cwd=REPO, env=tool_env(), text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               **terminal_job())
    out, err = _Output(process.stdout), _Output(process.stderr)
    out.start()
    err.start()
    deadline = time.time() + 300
    while not at_work(err.text):
        assert process.poll() is None, f"it ended first:\n{out.text[-2000:]}\n{err.text[-2000:]}"
        assert time.time() < deadline, "not at work within 300 s"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGINT)
    code = process.wait(timeout=120)
    out.join(10)
    err.join(10)
    return code, out.text, err.text


def _message_lines(stderr: str) -> list[str]:
    # tqdm's progress bars (stderr: "12%|", "[00:01<00:02") are not messages.
    return [line for line in re.split(r"[\r\n]+", stderr)
            if line.strip() and not re.search(r"\d+%\||\[\d+:\d+[,<]", line)]


def test_predict_prints_one_line_exits_130_and_leaves_complete_files(focal, many, tmp_path):
    out = tmp_path / "out"
    code, stdout, stderr = _interrupt_when(
        [str(REPO / "tools" / "predict.py"), "--config", focal.config,
         "--weights", str(focal.out / "model_final.pth"), "--input", str(many["images"]),
         "--output", str(out)],
        lambda _: any(out.glob("*.overlay.png")))
    assert code == 130, stdout[-2000:] + stderr[-2000:]
    assert "Traceback" not in stderr + stdout
    lines = _message_lines(stderr)
    assert len(lines) == 1 and lines[0].startswith("predict: interrupted;"), stderr
    assert "predictions.json is written only at the end" in lines[0]
    assert not (out / "predictions.json").exists()
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")], os.listdir(out)
    overlays = sorted(p.name for p in out.glob("*.overlay.png"))
    assert 0 < len(overlays) < NUM_IMAGES
    for name in overlays:
        with Image.open(out / name) as image:
            image.load()  # complete
    manifest = json.loads((out / "predict_outputs.json").read_text())
    assert manifest["complete"] is False
    assert set(manifest["files"]) == {*overlays, "predict_outputs.json"}

    # The interrupted run's files do not stop a rerun into the same folder (in this process:
    # a new one would prove nothing more).
    predict = tool_module("predict.py")
    again = run_cli(predict.main, ["--config", focal.config,
                                   "--weights", str(focal.out / "model_final.pth"),
                                   "--input", str(many["images"]), "--output", str(out),
                                   "--no-overlays"])
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    manifest = json.loads((out / "predict_outputs.json").read_text())
    assert manifest["complete"] is True
    assert set(manifest["files"]) == {*overlays, "predict_outputs.json", "predictions.json"}


def test_tune_mask_threshold_prints_one_line_and_exits_130(focal, many, tmp_path):
    out = tmp_path / "sweep"
    code, stdout, stderr = _interrupt_when(
        [str(REPO / "tools" / "tune_mask_threshold.py"), "--config", focal.config,
         "--weights", str(focal.out / "model_final.pth"),
         "--dataset", f"tiny_val={many['dataset']}:{many['image_root']}",
         "--output", str(out)],
        lambda stderr: "threshold sweep" in stderr)
    assert code == 130, stdout[-2000:] + stderr[-2000:]
    assert "Traceback" not in stderr + stdout
    lines = _message_lines(stderr)
    assert lines == ["tune_mask_threshold: interrupted during the sweep; its files are written "
                     "only at the end, so none was written"], stderr
    assert not list(out.glob("threshold_sweep*")) and not list(out.glob(".*.tmp"))
