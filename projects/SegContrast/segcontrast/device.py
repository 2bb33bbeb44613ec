"""Which devices this machine has (the Detectron2 side: it imports torch)."""

from __future__ import annotations

import torch

__all__ = ["use_cuda"]


def use_cuda() -> bool:
    """Whether this machine has a usable CUDA device."""
    return torch.cuda.is_available() and torch.cuda.device_count() > 0
