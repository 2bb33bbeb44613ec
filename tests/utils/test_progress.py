"""The progress bar appears only once a job has run a moment, and counts from where it is."""

import subprocess
import sys
import time

from segcontrast.utils.progress import Progress


def test_a_job_longer_than_the_delay_shows_tqdms_bar_with_every_item(capsys):
    with Progress(10, "scoring x.json", "img", show_after=0.05) as bar:
        bar.update(3)  # before the delay: nothing shown
        assert capsys.readouterr().err == ""
        time.sleep(0.06)
        for _ in range(7):
            bar.update(1)
    err = capsys.readouterr().err
    assert "scoring x.json" in err and "10/10" in err and "img/s" in err


def test_a_quick_job_prints_nothing_and_never_imports_tqdm():
    code = ("import sys\n"
            "from segcontrast.utils.progress import Progress\n"
            "with Progress(5, 'scoring', 'img', show_after=60) as bar:\n"
            "    bar.update(5)\n"
            "print('tqdm' in sys.modules, bar.count)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert proc.stdout.split() == ["False", "5"] and proc.stderr == ""


def test_a_disabled_bar_never_shows(capsys):
    with Progress(4, "scoring", "img", enabled=False, show_after=0) as bar:
        bar.update(4)
    assert capsys.readouterr().err == "" and bar.count == 4
