"""Install Detectron2 into the running Python environment, or keep the one already there.

Detectron2's authors do not publish it on the package registry. In order of preference:

1. an importable detectron2 is already installed (e.g. a user's official build with compiled
   ops): keep it;
2. ``D2_SOURCE`` is set (an official detectron2 git URL or a local checkout): ``pip install`` it
   (built against the installed torch, so without build isolation);
3. otherwise take the registry's ``pb1-detectron2==0.6`` sdist (detectron2 v0.6's Python sources,
   Apache-2.0, without its C++ sources), drop its extension build and install it with
   ``--no-build-isolation --no-deps`` (its dependency pins, e.g. ``black==21.4b2``, are not
   wanted; requirements.txt pins what it needs at run time).

Prints what it did in one line; exits non-zero when detectron2 does not import afterwards.

Usage: python tools/install_detectron2.py   (with the target environment's python)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SDIST_REQUIREMENT = "pb1-detectron2==0.6"

# Edits that turn the sdist's setup.py into a pure-Python build. Each must apply exactly once,
# so a changed sdist fails loudly here instead of installing something half-built.
SETUP_PY_EDITS = (
    ("    ext_modules=get_extensions(),\n", ""),
    ('    cmdclass={"build_ext": torch.utils.cpp_extension.BuildExtension},\n', ""),
    # The sdist ships the model-zoo yaml files inside the package, where the original
    # get_model_zoo_configs() (which looks for a top-level configs/ folder) does not find them.
    (
        'package_data={"detectron2.model_zoo": get_model_zoo_configs()}',
        'package_data={"detectron2.model_zoo": ["configs/**/*.yaml", "configs/**/*.py"]}',
    ),
)

CHECK_IMPORT = (
    "import detectron2, os, sys; "
    "from detectron2.config import get_cfg; "
    "get_cfg(); "
    "zoo = os.path.join(os.path.dirname(detectron2.__file__), 'model_zoo', 'configs'); "
    "ok = os.path.isfile(os.path.join(zoo, 'Base-RCNN-FPN.yaml')); "
    "print(detectron2.__version__, os.path.dirname(detectron2.__file__)); "
    "sys.exit(0 if ok else 3)"
)


class InstallError(RuntimeError):
    """The installation failed; the message says at which step."""


def _run(cmd: list[str], cwd: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def detectron2_import_status() -> tuple[bool, str]:
    """Whether detectron2 imports in this environment (in a fresh interpreter).

    Returns:
        (imports, detail): detail is "<version> <path>" or the error's last line.
    """
    result = _run([sys.executable, "-c", CHECK_IMPORT])
    if result.returncode == 0:
        return True, result.stdout.strip()
    lines = (result.stderr or result.stdout).strip().splitlines()
    if result.returncode == 3:
        return False, "imports, but its model-zoo configs are missing"
    return False, lines[-1] if lines else f"exit code {result.returncode}"


def _pip(*args: str, cwd: str | None = None) -> None:
    cmd = [sys.executable, "-m", "pip", *args]
    result = _run(cmd, cwd=cwd)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise InstallError(f"`{' '.join(cmd)}` failed:\n{tail}")


def patch_setup_py(setup_py: Path) -> None:
    """Remove the C++ extension build from the sdist's setup.py.

    Args:
        setup_py: path of the extracted sdist's setup.py; rewritten in place.

    Raises:
        InstallError: when an expected line is not found exactly once.
    """
    text = setup_py.read_text()
    for old, new in SETUP_PY_EDITS:
        count = text.count(old)
        if count != 1:
            raise InstallError(
                f"{setup_py}: expected to find {old.strip()!r} once, found it {count} times; "
                f"the {SDIST_REQUIREMENT} sdist is not the one this script knows"
            )
        text = text.replace(old, new)
    setup_py.write_text(text)


def install_from_sdist() -> None:
    """Download the pure-Python sdist, strip its extension build and install it."""
    with tempfile.TemporaryDirectory(prefix="d2-sdist-") as tmp:
        # Preparing the sdist's metadata runs its setup.py, which imports torch: use the
        # environment's torch (installed from requirements.txt first), not an isolated one.
        _pip(
            "download", "--no-deps", "--no-build-isolation", "--no-binary", ":all:",
            SDIST_REQUIREMENT, "-d", tmp,
        )
        archives = sorted(Path(tmp).glob("*.tar.gz"))
        if len(archives) != 1:
            raise InstallError(f"expected one sdist archive in {tmp}, found {len(archives)}")
        with tarfile.open(archives[0]) as tar:
            tar.extractall(tmp, filter="data")
        source_dirs = [p for p in Path(tmp).iterdir() if (p / "setup.py").is_file()]
        if len(source_dirs) != 1:
            raise InstallError(f"expected one source folder with setup.py in {tmp}")
        patch_setup_py(source_dirs[0] / "setup.py")
        _pip("install", "--no-build-isolation", "--no-deps", str(source_dirs[0]))


def main() -> int:
    imports, detail = detectron2_import_status()
    if imports:
        print(f"install_detectron2: detectron2 {detail} is already installed; nothing to do.")
        return 0
    source = os.environ.get("D2_SOURCE", "").strip()
    try:
        if source:
            # pip needs the git+ prefix for a repository URL; a local checkout goes as it is.
            is_repo_url = source.startswith(("https://", "http://")) and source.endswith(".git")
            target = f"git+{source}" if is_repo_url else source
            _pip("install", "--no-build-isolation", target)
            what = f"installed detectron2 from D2_SOURCE={source}"
        else:
            install_from_sdist()
            what = f"installed {SDIST_REQUIREMENT} (Python sources, compiled extension removed)"
    except InstallError as err:
        print(f"install_detectron2: FAILED: {err}", file=sys.stderr)
        return 1
    imports, detail = detectron2_import_status()
    if not imports:
        print(f"install_detectron2: FAILED: {what}, but it does not import: {detail}",
              file=sys.stderr)
        return 1
    print(f"install_detectron2: {what}: detectron2 {detail}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
