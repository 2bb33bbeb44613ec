"""The contrast evaluator: semantic and instance scores of the same predictions.

Semantic mIoU, per-instance mask IoU, COCO mask AP, PQ, and the accounting that explains where
the two views disagree (definitions: docs/EVALUATION.md). Nothing here imports torch or
Detectron2; the Detectron2 ``DatasetEvaluator`` is :mod:`segcontrast.engine.evaluator`.

Names are imported on first use (PEP 562), so importing one submodule loads only what it needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Public name -> the submodule that defines it.
_EXPORTS = {
    "Accumulator": ".accumulator",
    "EvalSettings": ".settings",
    "EvalState": ".records",
    "EvaluationResult": ".result",
    "GroundTruthSet": ".ground_truth",
    "Summary": ".summary",
    "evaluate": ".api",
    "summarize": ".summary",
}

__all__ = ["Accumulator", "EvalSettings", "EvalState", "EvaluationResult", "GroundTruthSet",
           "Summary", "evaluate", "summarize"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # for type checkers and editors; at run time __getattr__ does the imports
    from .accumulator import Accumulator
    from .api import evaluate
    from .ground_truth import GroundTruthSet
    from .records import EvalState
    from .result import EvaluationResult
    from .settings import EvalSettings
    from .summary import Summary, summarize
