"""SegContrast: semantic vs instance segmentation scores of the same predictions, and why.

The evaluator needs neither torch nor Detectron2::

    import segcontrast

    result = segcontrast.evaluate("annotations/val.json", "segm_results.json")
    print(result.explanation)
    result.save("eval/")

:class:`Accumulator` scores a validation loop's predictions image by image. The Detectron2 side
(mask heads, training, ``SegContrastEvaluator``) is imported where it is used
(``segcontrast.config``, ``segcontrast.modeling``, ``segcontrast.engine``), which registers the
heads; ``segcontrast.add_segcontrast_config`` imports it on first use.

Names are imported on first use (PEP 562), so ``import segcontrast`` costs nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

# Public name -> the module that defines it.
_EXPORTS = {
    "evaluate": ".evaluation.api",
    "Accumulator": ".evaluation.accumulator",
    "EvalSettings": ".evaluation.settings",
    "EvaluationResult": ".evaluation.result",
    "GroundTruthSet": ".evaluation.ground_truth",
    "InputError": ".utils.errors",
    "add_segcontrast_config": ".config",
}

__all__ = [
    "Accumulator",
    "EvalSettings",
    "EvaluationResult",
    "GroundTruthSet",
    "InputError",
    "__version__",
    "add_segcontrast_config",
    "evaluate",
]


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
    from .config import add_segcontrast_config
    from .evaluation.accumulator import Accumulator
    from .evaluation.api import evaluate
    from .evaluation.ground_truth import GroundTruthSet
    from .evaluation.result import EvaluationResult
    from .evaluation.settings import EvalSettings
    from .utils.errors import InputError
