"""How many processes a tool uses by default."""

from __future__ import annotations

import os

__all__ = ["default_workers"]


def default_workers() -> int:
    """The CPUs this process may use, at most 8."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        available = os.cpu_count() or 1
    return max(1, min(8, available))
