"""SegContrast: mask losses for Detectron2's Mask R-CNN and an evaluator that contrasts
semantic and instance segmentation scores.

Importing this package first makes the installed Detectron2 usable (see :mod:`.compat`), then
registers the project's mask heads in ``ROI_MASK_HEAD_REGISTRY``.
"""

from . import compat

compat.apply()

from .config import add_segcontrast_config  # noqa: E402

__all__ = ["add_segcontrast_config"]
__version__ = "0.1.0"
