"""The ground truth the evaluator scores against: a validated COCO instances file, per image.

:class:`GroundTruthSet` comes from a COCO file or an already parsed COCO dict (validated like any
dataset: every problem at once, image files read only when an image root is given), or from
Detectron2 dataset dicts that are validated already (the Detectron2 evaluator's case).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..data.coco_loader import load_coco_file
from ..data.validation import DatasetValidationError, ValidationReport, log_corrections
from .metrics.semantic import check_num_classes

__all__ = ["GroundTruthSet"]

logger = logging.getLogger(__name__)


@dataclass
class GroundTruthSet:
    """A dataset's ground truth, as the evaluator reads it.

    Attributes:
        name: how logs and reports name it (the file's name for a file).
        records: image id -> Detectron2-style dict (``file_name``, ``height``, ``width``,
            ``image_id``, ``annotations`` with contiguous ``category_id``, ``segmentation``,
            ``iscrowd``, ``area``, ``id``), in image-id order. Read only.
        class_names: K names, contiguous order.
        id_map: the file's category id -> contiguous class id (empty when unknown).
        json_file: the file it came from (None for a dict or dataset dicts).
        has_images: the records' ``file_name``s are image files that were checked (an image
            root was given, or Detectron2's dataset): overlays are drawn on them.
        left_out_categories: category ids of the file that are no class -> why (Roboflow's
            placeholder category): a result using one is refused with that reason.
        report: the validation report (what was dropped or changed), when validated here.
    """

    name: str
    records: dict[Any, dict]
    class_names: list[str]
    id_map: dict[int, int]
    json_file: str | None = None
    has_images: bool = False
    left_out_categories: dict[int, str] = field(default_factory=dict)
    report: ValidationReport | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_num_classes(len(self.class_names))

    @property
    def num_classes(self) -> int:
        """K."""
        return len(self.class_names)

    # Made once (the records are read only): callers look single images up in them, and
    # building them per look-up made a loop over the images quadratic.
    @functools.cached_property
    def images(self) -> dict[Any, tuple[int, int]]:
        """Image id -> (height, width). Read only."""
        return {i: (int(r["height"]), int(r["width"])) for i, r in self.records.items()}

    @functools.cached_property
    def file_names(self) -> dict[Any, str]:
        """Image id -> image file (under the image root, or next to the JSON). Read only."""
        return {i: r.get("file_name", "") for i, r in self.records.items()}

    @classmethod
    def from_coco(cls, source: str | os.PathLike | Mapping, images: str | os.PathLike | None = None,
                  *, allow_outside_root: bool = False, image_files_optional: bool = False,
                  name: str | None = None) -> GroundTruthSet:
        """Validate a COCO instances file (or its parsed dict) and read it per image.

        Args:
            source: the file, or the parsed COCO dict (``images``, ``annotations``,
                ``categories``).
            images: the image root: its files are checked (they exist, are complete, have the
                JSON's sizes); None checks the JSON alone (sizes are the JSON's).
            allow_outside_root: let ``file_name``s leave the image root.
            image_files_optional: the images are only drawn (overlays): a missing or
                unreadable file, or one of another size, is a change (not fatal), and an image
                entry without ``height``/``width`` takes its file's size.
            name: how logs and reports name it (default: the file's name, or "ground truth").

        Returns:
            The ground truth (what validation dropped or changed is logged).

        Raises:
            DatasetValidationError: every fatal problem of the file, naming each item.
        """
        if isinstance(source, Mapping):
            json_file, data = name or "ground truth", dict(source)
            default_root = os.getcwd()
        else:
            json_file, data = os.path.abspath(os.fspath(source)), None
            default_root = os.path.dirname(json_file)
        label = name or (os.path.basename(json_file) if data is None else json_file)
        loaded = load_coco_file(json_file, os.fspath(images) if images else default_root,
                                allow_outside_root=allow_outside_root,
                                check_image_files=images is not None,
                                image_files_optional=image_files_optional, data=data)
        if not loaded.report.ok:
            raise DatasetValidationError(loaded.report)
        log_corrections(loaded.report, f"Ground truth {label!r}", logger)
        return cls(
            name=label,
            records={d["image_id"]: d for d in loaded.dicts},
            class_names=list(loaded.thing_classes),
            id_map=dict(loaded.id_map),
            json_file=json_file if data is None else None,
            has_images=images is not None,
            left_out_categories=dict(loaded.report.left_out_categories),
            report=loaded.report,
        )

    @classmethod
    def from_records(cls, name: str, dicts: Sequence[dict], class_names: Sequence[str],
                     id_map: Mapping[int, int] | None = None) -> GroundTruthSet:
        """Dataset dicts that are valid already (Detectron2's ``DatasetCatalog``).

        Args:
            name: the dataset's name.
            dicts: Detectron2 dicts with contiguous ``category_id`` (not copied: read only).
            class_names: K names.
            id_map: the original category id -> contiguous id (None: unknown).
        """
        return cls(name=name, records={d["image_id"]: d for d in dicts},
                   class_names=list(class_names), id_map=dict(id_map or {}), has_images=True)
