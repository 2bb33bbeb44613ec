"""The tools' tests use the suite's shared fixtures and helpers (tests/conftest.py); these names
are importable from here as well (``from .conftest import dataset_args, run_tool``)."""

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
