"""Losses and the heads that use them: mask heads and semantic heads (registered on import)."""

from .. import compat

compat.apply()  # before Detectron2 is imported: makes the registry's Detectron2 usable

from . import sem_seg_heads  # noqa: E402, F401  (registers the semantic heads)
from .losses import (  # noqa: E402
    auto_pos_weight,
    focal_loss_with_logits,
    pos_weighted_bce_with_logits,
)
from .mask_heads import (  # noqa: E402
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
