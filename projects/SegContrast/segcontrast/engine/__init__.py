"""Training and launching: Detectron2's engine, made to work on CPU-only machines too."""

from .launch import launch, use_cuda

__all__ = ["launch", "use_cuda"]
