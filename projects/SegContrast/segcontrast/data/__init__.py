"""COCO files: reading and validating them, decoding masks, the built-in dataset generators.

Nothing here imports torch or Detectron2 (registering datasets in Detectron2's catalogs is
:mod:`segcontrast.datasets`). The rules the validator applies, and their problem codes, are
listed in ``datasets/README.md``.

Names are imported on first use (PEP 562), so ``import segcontrast.data`` costs nothing until a
name is used. ``from segcontrast.data import X`` works as usual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Public name -> the submodule that defines it.
_EXPORTS = {
    "DatasetProblem": ".validation",
    "DatasetValidationError": ".validation",
    "ValidationReport": ".validation",
    "validate_coco_file": ".coco_loader",
    "convert_dsb2018": ".dsb2018",
    "generate_shapes": ".shapes",
}

__all__ = [
    "DatasetProblem",
    "DatasetValidationError",
    "ValidationReport",
    "convert_dsb2018",
    "validate_coco_file",
    "generate_shapes",
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
    from .coco_loader import validate_coco_file
    from .dsb2018 import convert_dsb2018
    from .shapes import generate_shapes
    from .validation import DatasetProblem, DatasetValidationError, ValidationReport
