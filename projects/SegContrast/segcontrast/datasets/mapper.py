"""Detectron2's ``DatasetMapper`` with SegContrast's image reading (16-bit safe, EXIF as D2)."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from ..config import model_has_instances, model_needs_sem_seg
from ..data.semantic_gt import semantic_gt_from_record
from .image_reader import read_image

__all__ = ["SegContrastDatasetMapper"]


class SegContrastDatasetMapper(DatasetMapper):
    """Map a dataset dict to the model's input, like ``detectron2.data.DatasetMapper``.

    Built the same way (``SegContrastDatasetMapper(cfg, is_train)`` or with keyword
    arguments, see ``DatasetMapper.__init__``), with the same augmentations and annotation
    handling. The differences:

    * images are read with :func:`segcontrast.datasets.image_reader.read_image`: 16-bit and float
      images are rescaled to 8 bits instead of clipped; grayscale, RGBA and palette images are
      converted as Detectron2 converts them; the EXIF orientation is applied as Detectron2 does,
      so ``utils.check_image_size`` still compares against the oriented size in the JSON.
    * an RLE annotation with ``INPUT.MASK_FORMAT`` "polygon" raises an error that names the
      image and the fix, instead of Detectron2's generic one; a size that differs from the
      record's names the file and the image id.
    * in training, for a model with a semantic head (``SemanticSegmentor``, ``PanopticFPN``),
      a record without ``sem_seg_file_name`` gets its ``"sem_seg"`` target painted from its
      instance annotations by the evaluator's rule (:mod:`.semantic_gt`), at the original image
      size before the augmentations, which then resize and flip it as Detectron2 does a label
      PNG (nearest neighbour). A ``SemanticSegmentor`` needs no ``"instances"``: none are made.

    Args (besides ``DatasetMapper``'s):
        semantic_targets: paint ``"sem_seg"`` from the annotations in training (default from
            ``cfg``: the meta-architecture has a semantic head).
        num_thing_classes: K, the classes of the painted labels (``cfg``:
            ``MODEL.SEM_SEG_HEAD.NUM_CLASSES - 1``); needed with ``semantic_targets``.
        instance_targets: build ``"instances"`` in training (``cfg``: not a
            ``SemanticSegmentor``).
    """

    @configurable
    def __init__(
        self,
        is_train: bool,
        *,
        semantic_targets: bool = False,
        num_thing_classes: int | None = None,
        instance_targets: bool = True,
        **kwargs: Any,
    ) -> None:
        if semantic_targets and not (num_thing_classes and num_thing_classes > 0):
            raise ValueError("semantic_targets needs num_thing_classes (K >= 1)")
        super().__init__(is_train, **kwargs)
        self.semantic_targets = bool(semantic_targets)
        self.num_thing_classes = num_thing_classes
        self.instance_targets = bool(instance_targets)

    @classmethod
    def from_config(cls, cfg, is_train: bool = True) -> dict[str, Any]:
        """``DatasetMapper``'s arguments plus the semantic and instance target switches."""
        ret = super().from_config(cfg, is_train)
        ret["semantic_targets"] = model_needs_sem_seg(cfg)
        ret["num_thing_classes"] = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES - 1
        ret["instance_targets"] = model_has_instances(cfg)
        return ret

    def __call__(self, dataset_dict: dict[str, Any]) -> dict[str, Any]:
        """Read, augment and convert one image and its annotations.

        Args:
            dataset_dict: one record of a Detectron2 dataset (not modified).

        Returns:
            The record with "image" ``(C, H, W)`` uint8 tensor in ``INPUT.FORMAT``, and in
            training "instances" (``gt_boxes``, ``gt_classes``, ``gt_masks``; not for a
            ``SemanticSegmentor``); "sem_seg" ``(H, W)`` long labels when the record has
            ``sem_seg_file_name``, and in training for a model with a semantic head.
        """
        record = copy.deepcopy(dataset_dict)
        image = read_image(record["file_name"], format=self.image_format)
        self._check_size(record, image)
        sem_seg = None
        if "sem_seg_file_name" in record:
            sem_seg = read_image(record.pop("sem_seg_file_name"), "L").squeeze(2)
        elif self.is_train and self.semantic_targets:
            assert self.num_thing_classes is not None
            sem_seg = semantic_gt_from_record(record, self.num_thing_classes)

        aug_input = T.AugInput(image, sem_seg=sem_seg)
        transforms = self.augmentations(aug_input)
        image, sem_seg = aug_input.image, aug_input.sem_seg
        image_shape = image.shape[:2]
        record["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if sem_seg is not None:
            record["sem_seg"] = torch.as_tensor(sem_seg.astype("long"))
        if self.proposal_topk is not None:
            utils.transform_proposals(record, image_shape, transforms,
                                      proposal_topk=self.proposal_topk)

        if not self.is_train:
            record.pop("annotations", None)
            record.pop("sem_seg_file_name", None)
            return record
        if not self.instance_targets:
            record.pop("annotations", None)
        if "annotations" in record:
            self._check_mask_format(record)
            self._transform_annotations(record, transforms, image_shape)
        return record

    @staticmethod
    def _check_size(record: dict[str, Any], image: np.ndarray) -> None:
        """Detectron2's size check, with a message that names the file and the image id."""
        try:
            utils.check_image_size(record, image)
        except utils.SizeMismatchError:
            raise utils.SizeMismatchError(
                f"Mismatched image shape: {record['file_name']} (image "
                f"{record.get('image_id')!r}) is {image.shape[1]}x{image.shape[0]} (width x "
                f"height) as read, the dataset says {record.get('width')}x{record.get('height')}"
            ) from None

    def _check_mask_format(self, record: dict[str, Any]) -> None:
        if not self.use_instance_mask or self.instance_mask_format != "polygon":
            return
        for anno in record["annotations"]:
            if isinstance(anno.get("segmentation"), dict) and not anno.get("iscrowd", 0):
                raise ValueError(
                    f"{record['file_name']} (image {record.get('image_id')!r}, annotation "
                    f"{anno.get('id')!r}) has an RLE mask but INPUT.MASK_FORMAT is 'polygon'; "
                    "set INPUT.MASK_FORMAT bitmask (train_net.py does this for datasets whose "
                    "metadata mask_format is 'bitmask')"
                )
