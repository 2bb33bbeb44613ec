"""The ``segcontrast`` logger on the Detectron2 side: Detectron2's handlers, its rank.

Detectron2's ``default_setup`` configures only the ``detectron2`` and ``fvcore`` loggers;
without this every ``segcontrast.*`` record (the evaluator's table, the dataset notes, the
device note) would reach no handler. The handling itself (records held until the folder is
known, nothing doubled, the logger put back after a run) is
:mod:`segcontrast.utils.logging_setup`'s; here the handlers come from Detectron2's own
``setup_logger`` (so the lines look alike, in the ``OUTPUT_DIR/log.txt`` Detectron2's logger
writes too), the rank from ``comm``, and the first line says which Detectron2 is in use.
"""

from __future__ import annotations

import logging
import os

from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..compat import detectron2_description
from ..utils import logging_setup
from ..utils.logging_setup import LOGGER_NAME, segcontrast_logging

__all__ = ["LOGGER_NAME", "segcontrast_logging", "setup_segcontrast_logging"]


def _detectron2_handlers(folder: str | None, rank: int) -> list[logging.Handler]:
    logger = logging.getLogger(LOGGER_NAME)
    before = list(logger.handlers)
    setup_logger(folder, distributed_rank=rank, name=LOGGER_NAME, abbrev_name=LOGGER_NAME)
    made = [h for h in logger.handlers if h not in before]
    for handler in made:  # the caller attaches them
        logger.removeHandler(handler)
    return made


def setup_segcontrast_logging(
    output_dir: str | os.PathLike | None = None,
    *,
    distributed_rank: int | None = None,
    announce: bool = True,
) -> logging.Logger:
    """Send ``segcontrast.*`` records to the console (main process) and ``output_dir/log.txt``.

    Args:
        output_dir: the run's folder (``OUTPUT_DIR``); None for the console only.
        distributed_rank: this process's rank (default: ``comm.get_rank()``); only rank 0
            logs to the console, the others write ``log.txt.rank<N>``.
        announce: log which Detectron2 is in use (once per run: the processes a run spawns
            pass False).

    Returns:
        The ``segcontrast`` logger.
    """
    rank = comm.get_rank() if distributed_rank is None else int(distributed_rank)
    line = f"SegContrast uses {detectron2_description()}" if announce else None
    return logging_setup.setup_segcontrast_logging(
        output_dir, distributed_rank=rank, announce=line, handlers=_detectron2_handlers)
