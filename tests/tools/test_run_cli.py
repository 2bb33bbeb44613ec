"""run_cli (tests/conftest.py) calls a tool's main() in the test process: its exit codes are a
process's, and nothing an in-process run leaves behind can make a later test pass or fail."""

import logging
import random

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from segcontrast.datasets.coco import segcontrast_dataset_names
from segcontrast.engine.train_cli import main as train_main

from .conftest import dataset_args, run_cli


def _logging_state() -> dict:
    loggers = [logging.root] + [v for v in logging.root.manager.loggerDict.values()
                                if isinstance(v, logging.Logger)]
    return {lg.name: (list(lg.handlers), lg.level, lg.propagate) for lg in loggers
            if lg.handlers or lg.level or not lg.propagate}


def test_exit_codes_are_those_of_a_process():
    usage = run_cli(train_main, ["--no-such-flag"])  # argparse's SystemExit(2)
    assert usage.returncode == 2 and "unrecognized arguments: --no-such-flag" in usage.stderr
    shown = run_cli(train_main, ["--help"])  # SystemExit(0)
    assert shown.returncode == 0 and "--eval-only" in shown.stdout and not shown.stderr
    assert run_cli(lambda argv: None, []).returncode == 0
    assert run_cli(lambda argv: 3, []).returncode == 3


def test_runs_leave_no_datasets_logging_or_rng_state_behind(tiny_data, tiny_config, tmp_path):
    datasets, metadata = set(DatasetCatalog.list()), set(MetadataCatalog.list())
    ours, logging_before = segcontrast_dataset_names(), _logging_state()
    rng = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    threads = torch.get_num_threads()
    config = tiny_config("mask_rcnn_focal")
    # A run through Detectron2's default_setup (an untrained model on no test dataset): it has
    # set up logging, written log.txt and seeded every RNG by then.
    first = run_cli(train_main, ["--config", config, "--eval-only", "--eval-untrained",
                                 *dataset_args(tiny_data), "DATASETS.TEST", "()",
                                 "OUTPUT_DIR", str(tmp_path / "a")])
    assert first.returncode == 0, first.stderr
    assert "Rank of current process" in first.stdout  # the console logger wrote to the capture
    first_log = (tmp_path / "a" / "log.txt").read_text()
    assert "Rank of current process" in first_log

    assert set(DatasetCatalog.list()) == datasets and set(MetadataCatalog.list()) == metadata
    assert segcontrast_dataset_names() == ours and "tiny_train" not in ours
    assert _logging_state() == logging_before
    assert random.getstate() == rng[0]
    assert (np.random.get_state()[1] == rng[1]).all()
    assert torch.equal(torch.get_rng_state(), rng[2])
    assert torch.get_num_threads() == threads

    # The same names with other files: refused for the second run's own reason (its broken
    # file), not because the first run's registration of tiny_train is still there; and the
    # second run logs to its own log.txt and console only.
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    second = run_cli(train_main, ["--config", config,
                                  "--dataset", f"tiny_train={broken}:{tiny_data['image_root']}",
                                  "--dataset", f"tiny_val={tiny_data['val']}:"
                                  f"{tiny_data['image_root']}",
                                  "OUTPUT_DIR", str(tmp_path / "b")])
    assert second.returncode == 2 and str(broken) in second.stderr
    assert "already registered" not in second.stderr
    eval_only = run_cli(train_main, ["--config", config, "--eval-only", *dataset_args(tiny_data),
                                     "OUTPUT_DIR", str(tmp_path / "c")])
    assert eval_only.returncode == 2 and "MODEL.WEIGHTS is empty" in eval_only.stderr
    assert (tmp_path / "a" / "log.txt").read_text() == first_log
    assert "SegContrast uses detectron2" in (tmp_path / "c" / "log.txt").read_text()
    assert str(tmp_path / "a") not in eval_only.stdout
