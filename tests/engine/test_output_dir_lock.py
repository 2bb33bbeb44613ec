"""A run's output folder: refused at once when unusable, and locked by one process at a time."""

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from segcontrast.utils.output_dir import (
    LOCK_FILE_NAME,
    OutputDirError,
    OutputDirInUseError,
    OutputDirLock,
    check_output_dir_usable,
)

PACKAGE = Path(__file__).resolve().parents[2] / "projects" / "SegContrast"
HOLDER = """
import sys, time
from segcontrast.utils.output_dir import OutputDirLock
lock = OutputDirLock(sys.argv[1], description="the holder test")
lock.acquire()
print("locked", flush=True)
time.sleep(600)
"""


def test_usable_folder_is_created_and_returned(tmp_path):
    folder = check_output_dir_usable(tmp_path / "a" / "b")
    assert folder == str(tmp_path / "a" / "b") and os.path.isdir(folder)
    assert os.listdir(folder) == []  # the write probe is removed


def test_a_file_and_a_folder_under_a_file_are_refused_naming_the_path(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(OutputDirError, match=f"OUTPUT_DIR {a_file} is a file"):
        check_output_dir_usable(a_file)
    with pytest.raises(OutputDirError, match=f"--output {a_file / 'sub'} cannot be created"):
        check_output_dir_usable(a_file / "sub", "--output")
    with pytest.raises(OutputDirError, match="OUTPUT_DIR is empty"):
        check_output_dir_usable("")


def test_a_folder_that_cannot_be_written_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "read_only"
    folder.mkdir()
    if os.geteuid() != 0:  # root writes anywhere: there the write itself is made to fail
        folder.chmod(0o500)
    else:
        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(tempfile, "mkstemp", refuse)
    try:
        with pytest.raises(OutputDirError, match=f"OUTPUT_DIR {folder} is not writable"):
            check_output_dir_usable(folder)
    finally:
        folder.chmod(0o700)


def test_a_second_process_cannot_take_the_lock_and_learns_the_holders_pid(tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{PACKAGE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputDirInUseError) as info:
            OutputDirLock(tmp_path).acquire()
        message = str(info.value)
        assert f"pid {holder.pid}: the holder test" in message
        assert str(tmp_path) in message and "choose another OUTPUT_DIR" in message
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    # The OS ends the lock with its process, even on kill -9: no stale lock to clean up.
    with OutputDirLock(tmp_path, description="second") as lock:
        assert lock.held
        assert (tmp_path / LOCK_FILE_NAME).read_text() == f"{os.getpid()} second\n"
    assert not lock.held


def test_the_lock_is_exclusive_between_two_holders_in_one_process(tmp_path):
    with OutputDirLock(tmp_path):
        with pytest.raises(OutputDirInUseError, match=f"pid {os.getpid()}"):
            OutputDirLock(tmp_path).acquire()
    OutputDirLock(tmp_path).acquire()  # released by the first one's exit
