"""Small helpers used by every layer: atomic file writes, the device check."""

from .atomic_io import atomic_write
from .device import use_cuda

__all__ = ["atomic_write", "use_cuda"]
