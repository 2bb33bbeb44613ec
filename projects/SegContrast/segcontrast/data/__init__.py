"""Datasets: COCO registration and validation, built-in datasets, the dataset mapper.

The rules the validator applies, and their problem codes, are listed in ``datasets/README.md``.

Names are imported on first use (PEP 562): ``detectron2.data`` and ``torchvision`` cost seconds
at start-up, and ``tools/validate_dataset.py`` needs neither. ``from segcontrast.data import X``
works as usual.
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
    "parse_dataset_arg": ".coco",
    "register_coco_dataset": ".coco",
    "register_datasets_from_config": ".coco",
    "segcontrast_dataset_names": ".coco",
    "validate_dataset": ".coco",
    "SegContrastDatasetMapper": ".mapper",
    "convert_dsb2018": ".dsb2018",
    "ensure_builtin_dataset": ".builtin",
    "register_builtin_datasets": ".builtin",
    "generate_shapes": ".shapes",
}

__all__ = [
    "DatasetProblem",
    "DatasetValidationError",
    "SegContrastDatasetMapper",
    "ValidationReport",
    "convert_dsb2018",
    "parse_dataset_arg",
    "register_coco_dataset",
    "register_datasets_from_config",
    "segcontrast_dataset_names",
    "validate_coco_file",
    "validate_dataset",
    "ensure_builtin_dataset",
    "generate_shapes",
    "register_builtin_datasets",
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
    from ..datasets.builtin import ensure_builtin_dataset, register_builtin_datasets
    from ..datasets.coco import (
        parse_dataset_arg,
        register_coco_dataset,
        register_datasets_from_config,
        segcontrast_dataset_names,
        validate_dataset,
    )
    from .coco_loader import validate_coco_file
    from .dsb2018 import convert_dsb2018
    from ..datasets.mapper import SegContrastDatasetMapper
    from .shapes import generate_shapes
    from .validation import DatasetProblem, DatasetValidationError, ValidationReport
