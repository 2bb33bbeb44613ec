"""A progress bar with ETA that appears only once a job has run for a moment.

A job that ends within :data:`SHOW_AFTER_S` prints no bar, and never imports ``tqdm`` (whose
import reads package metadata: 30 ms, a tenth of scoring a small file from the shell). A
longer one gets tqdm's bar, starting from the count reached so far.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

__all__ = ["SHOW_AFTER_S", "Progress"]

SHOW_AFTER_S = 0.3


class Progress:
    """Counts finished items; shows tqdm's bar once :data:`SHOW_AFTER_S` have passed.

    Args:
        total: items in the job.
        desc: the bar's label.
        unit: the items' unit ("img").
        enabled: False shows nothing.
        show_after: seconds before the bar appears (0: at the first update).
    """

    def __init__(self, total: int, desc: str, unit: str, *, enabled: bool = True,
                 show_after: float = SHOW_AFTER_S) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.enabled, self.show_after = enabled, show_after
        self.count = 0
        self._start = time.perf_counter()
        self._bar: Any = None

    def update(self, n: int = 1) -> None:
        """Add ``n`` finished items."""
        self.count += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled and time.perf_counter() - self._start >= self.show_after:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, initial=self.count, desc=self.desc,
                             unit=self.unit, dynamic_ncols=True)

    def close(self) -> None:
        """End the bar (if it was shown)."""
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
