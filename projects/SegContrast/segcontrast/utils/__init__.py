"""Small helpers every layer uses: atomic file writes, the error type for bad input."""

from .atomic_io import atomic_write
from .errors import InputError

__all__ = ["InputError", "atomic_write"]
