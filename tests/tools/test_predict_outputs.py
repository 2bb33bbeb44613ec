"""tools/predict.py never loses a file, and draws bounded overlays (issue 19, items 2 and 9).

Every input gets its own output names (a.jpg and a.png, b.png and b_semantic.png, two a.png in
two folders); an --output that holds an input file, or a file of an output's name that no earlier
run wrote, is refused before any work and left as it was; a rerun replaces only its own files;
overlays are drawn at a bounded size (their size on disk is checked; memory is measured by
bench/predict_memory.py). Ctrl-C: tests/tools/test_ctrl_c_predict_and_tune.py.
"""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from .conftest import CliResult, run_cli, run_tool, tool_module

pytestmark = pytest.mark.slow


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under a folder (relative path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _one_error_line(result: subprocess.CompletedProcess | CliResult, *fragments: str) -> str:
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def predict():
    """What tools/predict.py runs, for main() in this process (run_cli)."""
    return tool_module("predict.py")


@pytest.fixture(scope="module")
def model(trained_run) -> list[str]:
    """--config and --weights of the session's tiny focal-loss model."""
    run = trained_run("mask_rcnn_focal")
    return ["--config", run.config, "--weights", str(run.out / "model_final.pth")]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_data) -> dict[str, Path]:
    """Input folders: names that collided before, and one wide photo."""
    root = tmp_path_factory.mktemp("predict_inputs")
    val = sorted((Path(tiny_data["image_root"]) / "val").glob("*.png"))
    clash = root / "clash"
    (clash / "sub").mkdir(parents=True)
    Image.open(val[0]).convert("RGB").save(clash / "a.jpg", quality=95)
    (clash / "a.png").write_bytes(val[1].read_bytes())
    (clash / "b.png").write_bytes(val[2].read_bytes())
    (clash / "b_semantic.png").write_bytes(val[3].read_bytes())
    (clash / "sub" / "a.png").write_bytes(val[0].read_bytes())
    large = root / "large"
    large.mkdir()
    Image.open(val[0]).convert("RGB").resize((2000, 1000)).save(large / "wide.jpg", quality=90)
    return {"clash": clash, "large": large}


@pytest.fixture(scope="module")
def runs(model, inputs, tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """The runs of this module as real processes, two at a time. {name: (process, out)}."""
    out = tmp_path_factory.mktemp("predict_outputs")
    large = inputs["large"]
    commands = {
        # A recursive glob: clash/a.jpg, a.png, b.png, b_semantic.png and clash/sub/a.png.
        "clash": ["--input", f"{inputs['clash']}/**/*", "--output", str(out / "clash"),
                  "--semantic-png"],
        # An output folder inside the input folder holds no input: allowed.
        "default_size": ["--input", str(large), "--output", str(large / "out"), "--semantic-png"],
        "size_100": ["--input", str(large), "--output", str(out / "size_100"),
                     "--overlay-size", "100"],
        "full_size": ["--input", str(large), "--output", str(out / "full_size"),
                      "--full-size-overlays"],
        "none": ["--input", str(large), "--output", str(out / "none"), "--no-overlays"],
    }
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda args: run_tool("predict.py", *model, *args),
                                commands.values()))
    folders = {name: Path(args[args.index("--output") + 1]) for name, args in commands.items()}
    return {name: (result, folders[name]) for name, result in zip(commands, results, strict=True)}


def _ok(result: subprocess.CompletedProcess | CliResult) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_every_input_gets_its_own_output_names(runs, inputs):
    result, out = runs["clash"]
    _ok(result)
    names = ["a.jpg", "a.png", "b.png", "b_semantic.png", "a-2.png"]
    expected = {f"{n}.{kind}.png" for n in names for kind in ("overlay", "semantic")}
    assert {p.name for p in out.glob("*.png")} == expected
    inputs_given = [str(inputs["clash"] / n) for n in names[:4]] + [
        str(inputs["clash"] / "sub" / "a.png")]
    # predictions.json names each result's input file as it was given
    predictions = json.loads((out / "predictions.json").read_text())
    assert {p["file_name"] for p in predictions} == set(inputs_given)
    manifest = json.loads((out / "predict_outputs.json").read_text())
    assert manifest["complete"] is True
    assert set(manifest["files"]) == expected | {"predictions.json", "predict_outputs.json"}
    assert [(i["input"], i["overlay"]) for i in manifest["inputs"]] == [
        (path, f"{name}.overlay.png") for path, name in zip(inputs_given, names, strict=True)]
    assert "every file written is listed in" in result.stdout


# Refusals come before the model is loaded: main() in this process shows the same.

def test_an_output_folder_holding_an_input_is_refused_and_left_alone(predict, model, inputs):
    folder = inputs["clash"]
    before = _files(folder)
    result = run_cli(predict.main, [*model, "--input", str(folder), "--output", str(folder)])
    _one_error_line(result, f"--output {folder} holds the input file {folder / 'a.jpg'}",
                    "choose another --output folder")
    assert _files(folder) == before  # not even a log.txt was added


def test_a_file_no_run_wrote_is_never_overwritten(predict, model, inputs, tmp_path):
    folder = tmp_path / "stranger"
    folder.mkdir()
    (folder / "b.png.overlay.png").write_bytes(b"the user's own file")
    (folder / "notes.txt").write_text("mine\n")
    result = run_cli(predict.main, [*model, "--input", str(inputs["clash"]),
                                    "--output", str(folder)])
    _one_error_line(result, f"already holds {folder / 'b.png.overlay.png'}",
                    "no earlier tools/predict.py run into that folder wrote",
                    "predict_outputs.json")
    assert _files(folder) == {"b.png.overlay.png": b"the user's own file",
                              "notes.txt": b"mine\n"}
    # a list of files that is not this tool's does not let it overwrite either
    folder = tmp_path / "not_ours"
    folder.mkdir()
    (folder / "predict_outputs.json").write_text('{"files": ["b.png.overlay.png"]}\n')
    result = run_cli(predict.main, [*model, "--input", str(inputs["clash"]),
                                    "--output", str(folder)])
    _one_error_line(result, f"holds {folder / 'predict_outputs.json'}",
                    "not the list of files an earlier tools/predict.py run wrote")
    assert set(_files(folder)) == {"predict_outputs.json"}


def test_a_rerun_replaces_its_own_files_only(runs, predict, model, inputs):
    _, out = runs["clash"]
    (out / "mine.txt").write_text("a note of the user's\n")
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    again = run_cli(predict.main, [*model, "--input", f"{inputs['clash']}/**/*",
                                   "--output", str(out), "--semantic-png"])
    _ok(again)
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    assert set(after) == set(before) and all(after[n] > before[n] for n in before)
    assert (out / "mine.txt").read_text() == "a note of the user's\n"


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def test_overlays_are_drawn_at_a_bounded_size_unless_asked(runs):
    sizes = {}
    for name in ("default_size", "size_100", "full_size", "none"):
        result, out = runs[name]
        _ok(result)
        assert (out / "predictions.json").is_file()
        overlay = out / "wide.jpg.overlay.png"
        sizes[name] = _size(overlay) if overlay.exists() else None
    assert sizes == {"default_size": (1600, 800), "size_100": (100, 50),
                     "full_size": (2000, 1000), "none": None}
    # label PNGs and results keep the input's size
    _, out = runs["default_size"]
    assert _size(out / "wide.jpg.semantic.png") == (2000, 1000)
    predictions = json.loads((out / "predictions.json").read_text())
    assert predictions and {tuple(p["segmentation"]["size"]) for p in predictions} == {(1000, 2000)}
