"""The contrast evaluator: semantic and instance scores of the same predictions.

Semantic mIoU, per-instance mask IoU, COCO mask AP, PQ, and the accounting that explains where
the two views disagree (definitions: docs/EVALUATION.md). Nothing here imports torch or
Detectron2; the Detectron2 ``DatasetEvaluator`` is :mod:`segcontrast.engine.evaluator`.
"""

from .records import EvalState
from .summary import Summary, summarize

__all__ = ["EvalState", "Summary", "summarize"]
