"""The contrast evaluator: semantic and instance scores of the same predictions.

Semantic mIoU, per-instance mask IoU, COCO mask AP, and counts that explain where the two views
disagree (definitions: docs/EVALUATION.md).
"""

from ..engine.evaluator import SegContrastEvaluator, build_segcontrast_evaluator
from .records import EvalState
from .metrics.semantic import paint_semantic_prediction
from .summary import Summary, summarize

__all__ = [
    "EvalState",
    "SegContrastEvaluator",
    "Summary",
    "build_segcontrast_evaluator",
    "paint_semantic_prediction",
    "summarize",
]
