"""Mask heads (registered in ROI_MASK_HEAD_REGISTRY on import)."""

from . import sem_seg_heads  # noqa: F401  (registers the semantic heads in SEM_SEG_HEADS_REGISTRY)
from .mask_heads import (
    FocalLossMaskHead,
    MaskTargets,
    PosWeightedBCEMaskHead,
    build_mask_targets,
    log_mask_metrics,
)

__all__ = [
    "FocalLossMaskHead",
    "MaskTargets",
    "PosWeightedBCEMaskHead",
    "build_mask_targets",
    "log_mask_metrics",
]
