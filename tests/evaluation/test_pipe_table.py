"""The log's tables (report/table.py) are what tabulate's "pipe" format writes, without tabulate."""

import random
import string

import pytest
from segcontrast.evaluation.report.table import pipe_table

tabulate = pytest.importorskip("tabulate").tabulate


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits + " .-+%|é")
                   for _ in range(rng.randint(0, 12)))


def test_random_tables_equal_tabulates_pipe_format():
    rng = random.Random(0)
    for _ in range(2000):
        columns, count = rng.randint(1, 5), rng.randint(0, 4)
        headers = [_text(rng) for _ in range(columns)]
        rows = [[_text(rng) for _ in range(columns)] for _ in range(count)]
        colalign = (None if rng.random() < 0.3
                    else [rng.choice(["left", "right", "center"]) for _ in range(columns)])
        expected = tabulate(rows, headers=headers, tablefmt="pipe", numalign="right",
                            disable_numparse=True, colalign=colalign)
        assert pipe_table(rows, headers, colalign) == expected, (headers, rows, colalign)


def test_wide_characters_keep_the_columns_aligned_on_screen():
    table = pipe_table([["狗", "1.00"], ["e\u0301clair", "23"]], ["class", "AP"],
                       ("left", "right"))
    lines = table.split("\n")
    # every line puts its column separators at the same screen columns
    wide = {"狗": 2, "\u0301": 0}
    screen = ["".join(c * wide.get(c, 1) for c in line) for line in lines]
    bars = {tuple(i for i, c in enumerate(line) if c == "|") for line in screen}
    assert len(bars) == 1, table
    assert lines[2].startswith("| 狗      |") and lines[3].startswith("| e\u0301clair  |")


def test_the_log_loads_no_tabulate():
    import subprocess
    import sys

    code = ("import sys, segcontrast.evaluation.report.text; "
            "print('tabulate' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"
