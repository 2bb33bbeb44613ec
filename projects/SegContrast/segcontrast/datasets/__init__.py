"""Detectron2 datasets: COCO files in ``DatasetCatalog``, built-in datasets, the mapper.

Needs the training extra (torch and Detectron2); reading and validating COCO files without them
is :mod:`segcontrast.data`.
"""

from .. import compat

compat.apply()

from .builtin import ensure_builtin_dataset, register_builtin_datasets  # noqa: E402
from .coco import (  # noqa: E402
    parse_dataset_arg,
    register_coco_dataset,
    register_datasets_from_config,
    segcontrast_dataset_names,
    validate_dataset,
)
from .mapper import SegContrastDatasetMapper  # noqa: E402

__all__ = [
    "SegContrastDatasetMapper",
    "ensure_builtin_dataset",
    "parse_dataset_arg",
    "register_builtin_datasets",
    "register_coco_dataset",
    "register_datasets_from_config",
    "segcontrast_dataset_names",
    "validate_dataset",
]
