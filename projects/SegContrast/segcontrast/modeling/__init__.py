"""Mask losses and the mask heads that use them (registered in ROI_MASK_HEAD_REGISTRY on import)."""

from .losses import auto_pos_weight, focal_loss_with_logits, pos_weighted_bce_with_logits
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
    "auto_pos_weight",
    "build_mask_targets",
    "focal_loss_with_logits",
    "log_mask_metrics",
    "pos_weighted_bce_with_logits",
]
