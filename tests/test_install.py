"""``pip install .`` without the training extra gives a working evaluator (CI's second step).

A fresh virtual environment gets the checkout with a plain ``pip install .`` (its declared
dependencies from the package registry, the package built as a user's pip builds it); then
``segcontrast evaluate`` scores a generated GT and results file there. Its ``metrics.json``
must equal the one this (full) environment writes for the same files, and torch, torchvision
and Detectron2 must not be installed there. Minutes of downloads and building: not part of
``make test``; ``make test-install`` runs it (``.ci/run`` does, after ``make test``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from .evaluation.results_files import write_synthetic_files

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.install


_BUILD_OUTPUTS = {".venv", ".git", "output", "__pycache__", "build", ".pytest_cache",
                  ".ruff_cache", ".hypothesis"}


def _not_in_a_clone(folder: str, names: list[str]) -> set[str]:
    """What a fresh clone does not have: environments, outputs, generated data, builds."""
    generated = {"generated"} if Path(folder).name == "datasets" else set()
    return {n for n in names if n in _BUILD_OUTPUTS | generated or n.endswith((".so",
                                                                              ".egg-info"))}


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)


def test_pip_install_without_the_training_extra_scores_as_the_full_environment(tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True, clear=True)
    python = env_dir / "bin" / "python"
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # A copy of the checkout's sources, as a fresh clone has them (no build outputs of ours).
    source = tmp_path / "checkout"
    shutil.copytree(REPO, source, ignore=_not_in_a_clone)
    install = _run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    str(source)], env=environ, timeout=1500)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]

    missing = _run([python, "-c", "import importlib.util as u; print([m for m in "
                    "('torch', 'torchvision', 'detectron2') if u.find_spec(m)])"],
                   env=environ, timeout=120, cwd=tmp_path)
    assert missing.stdout.strip() == "[]", missing.stdout + missing.stderr

    script = env_dir / "bin" / "segcontrast"
    assert script.is_file(), "pip install . made no segcontrast command"
    helped = _run([script, "evaluate", "--help"], env=environ, timeout=120, cwd=tmp_path)
    assert helped.returncode == 0 and "usage: segcontrast evaluate" in helped.stdout
    refused = _run([script, "train", "--config", "x.yaml"], env=environ, timeout=120,
                   cwd=tmp_path)
    assert refused.returncode == 2 and "needs the training extra" in refused.stderr
    assert "Traceback" not in refused.stderr

    gt, results, _ = write_synthetic_files(tmp_path / "files", 8, num_classes=3, seed=5)
    scored = _run([script, "evaluate", "--gt", gt, "--results", results, "--output",
                   tmp_path / "lean"], env=environ, timeout=600, cwd=tmp_path)
    assert scored.returncode == 0, scored.stdout[-3000:] + scored.stderr[-3000:]
    full = _run([sys.executable, "-m", "segcontrast", "evaluate", "--gt", gt, "--results",
                 results, "--output", tmp_path / "full"], timeout=600, cwd=tmp_path)
    assert full.returncode == 0, full.stderr[-3000:]
    lean = json.loads((tmp_path / "lean" / "metrics.json").read_text())
    reference = json.loads((tmp_path / "full" / "metrics.json").read_text())
    assert lean == reference
