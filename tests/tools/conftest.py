"""The tools' tests use the suite's shared fixtures and helpers (tests/conftest.py); these names
are importable from here as well (``from .conftest import dataset_args, run_tool``)."""

import signal
from typing import Any

from ..conftest import (  # noqa: F401
    REPO,
    TINY,
    TINY_CONFIG,
    CliResult,
    TrainedRun,
    TrainedRuns,
    dataset_args,
    run_cli,
    run_tool,
    tool_env,
    tool_module,
)


def _sigint_as_at_a_terminal() -> None:
    # A shell starts background jobs with SIGINT ignored, and Python then installs no
    # KeyboardInterrupt handler: the suite run in the background must still test Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def terminal_job() -> dict[str, Any]:
    """``subprocess.Popen`` arguments for a tool run as a terminal's foreground job.

    Its own process group (Ctrl-C, i.e. SIGINT to the group, reaches every process in it) with
    SIGINT's default action, whatever the suite's own process inherited.
    """
    return {"start_new_session": True, "preexec_fn": _sigint_as_at_a_terminal}
