"""The one atomic-write helper: whole files or nothing, never a stray temporary file."""

import os

import pytest
from segcontrast.utils import atomic_write


def test_replaces_the_whole_file_binary_and_text(tmp_path):
    target = tmp_path / "sub" / "f.bin"
    atomic_write(target, lambda f: f.write(b"first"))
    atomic_write(target, lambda f: f.write(b"new content"))
    assert target.read_bytes() == b"new content"
    atomic_write(target, lambda f: f.write("ünïcode"), mode="w")
    assert target.read_text(encoding="utf-8") == "ünïcode"
    assert os.listdir(target.parent) == ["f.bin"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_failing_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "model_final.pth"
    target.write_bytes(b"old")

    def fail(f):
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, fail)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["model_final.pth"]


def test_temporary_name_never_matches_the_target_pattern(tmp_path):
    seen = []

    def spy(f):
        seen.extend(os.listdir(tmp_path))
        assert not list(tmp_path.glob("*.pth"))  # a checkpoint scan sees nothing half-written

    atomic_write(tmp_path / "model_final.pth", spy)
    assert len(seen) == 1
    assert seen[0].startswith(".model_final.pth.") and seen[0].endswith(".tmp")
