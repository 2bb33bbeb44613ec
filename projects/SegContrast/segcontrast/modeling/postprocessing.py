"""Mask post-processing: Mask R-CNN's soft masks pasted at a chosen threshold.

Detectron2 always binarises the pasted masks at 0.5; :class:`MaskThresholdModel` makes
``TEST.SEGCONTRAST.MASK_THRESHOLD`` the threshold at which the evaluated masks are made. It serves
a ``GeneralizedRCNN`` and a ``PanopticFPN`` (whose semantic logits are post-processed exactly as
its own ``inference`` does); other models (a ``SemanticSegmentor``) are called as they are.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from detectron2.modeling.meta_arch.panoptic_fpn import combine_semantic_and_instance_outputs
from detectron2.modeling.postprocessing import detector_postprocess, sem_seg_postprocess
from detectron2.structures import Instances
from torch import Tensor

__all__ = [
    "MaskThresholdModel",
    "RawOutputs",
    "has_instance_masks",
    "paste_at_threshold",
    "postprocess_at_threshold",
    "raw_outputs",
]


class RawOutputs(NamedTuple):
    """A batch's outputs before post-processing.

    Attributes:
        instances: per image, ``Instances`` at the network's input size, ``pred_masks``
            (N, 1, M, M) probabilities.
        sem_seg: per image, (K + 1, H', W') semantic logits of a ``PanopticFPN`` (padded to the
            batch), or None for a ``GeneralizedRCNN``.
    """

    instances: list[Instances]
    sem_seg: list[Tensor] | None = None


def has_instance_masks(model: torch.nn.Module) -> bool:
    """Whether ``model`` (or its DDP wrapper) predicts instance masks that can be thresholded."""
    model = getattr(model, "module", model)
    roi_heads = getattr(model, "roi_heads", None)
    return hasattr(model, "inference") and bool(getattr(roi_heads, "mask_on", False))


def raw_outputs(model: torch.nn.Module, batched_inputs: list[dict]) -> RawOutputs:
    """``model.inference(batched_inputs, do_postprocess=False)``, in one form for both models.

    Args:
        model: a ``GeneralizedRCNN`` or ``PanopticFPN`` (or its DDP wrapper), in eval mode.
        batched_inputs: the model's inputs.

    Returns:
        The raw detections, and the raw semantic logits of a ``PanopticFPN``.
    """
    model = getattr(model, "module", model)
    out = model.inference(batched_inputs, do_postprocess=False)
    if isinstance(out, tuple):  # PanopticFPN: (detector results, semantic logits)
        instances, sem_seg = out
        return RawOutputs(list(instances), list(sem_seg))
    return RawOutputs(list(out))


def paste_at_threshold(
    raw: list[Instances], batched_inputs: list[dict], mask_threshold: float
) -> list[dict]:
    """Scale raw detections to each input's size and paste their masks at a threshold.

    Exactly Detectron2's ``GeneralizedRCNN._postprocess``, with the threshold as an argument.

    Args:
        raw: per image, ``Instances`` from ``model.inference(..., do_postprocess=False)``
            (pred_masks (N, 1, M, M) probabilities, boxes at the network's input size).
        batched_inputs: the model's inputs (their "height"/"width" are the output size).
        mask_threshold: soft masks >= this are foreground.

    Returns:
        Per image ``{"instances": Instances}`` with pred_masks (N, H, W) bool.
    """
    outputs = []
    for instances, inputs in zip(raw, batched_inputs, strict=True):
        height = inputs.get("height", instances.image_size[0])
        width = inputs.get("width", instances.image_size[1])
        outputs.append({"instances": detector_postprocess(instances, height, width,
                                                          mask_threshold=mask_threshold)})
    return outputs


def postprocess_at_threshold(
    raw: RawOutputs, batched_inputs: list[dict], mask_threshold: float
) -> list[dict]:
    """Post-process raw outputs as the model's own ``inference`` does, masks at a threshold.

    The semantic logits of a ``PanopticFPN`` are cropped to each image's input size and resized
    to its output size (``sem_seg_postprocess``); each detection's ``image_size`` is its image's
    input size, as in ``PanopticFPN.inference``.

    Args:
        raw: from :func:`raw_outputs` (its instances are scaled in place).
        batched_inputs: the model's inputs (their "height"/"width" are the output size).
        mask_threshold: soft masks >= this are foreground.

    Returns:
        Per image ``{"instances"}`` (pred_masks (N, H, W) bool), plus ``"sem_seg"``
        (K + 1, H, W) logits for a ``PanopticFPN``.
    """
    outputs = paste_at_threshold(raw.instances, batched_inputs, mask_threshold)
    if raw.sem_seg is None:
        return outputs
    for out, logits, instances, inputs in zip(outputs, raw.sem_seg, raw.instances,
                                              batched_inputs, strict=True):
        image_size = instances.image_size
        height = inputs.get("height", image_size[0])
        width = inputs.get("width", image_size[1])
        out["sem_seg"] = sem_seg_postprocess(logits, image_size, height, width)
    # The key order of PanopticFPN.inference's outputs.
    return [{"sem_seg": out["sem_seg"], "instances": out["instances"]} for out in outputs]


class MaskThresholdModel(torch.nn.Module):
    """A Mask R-CNN or Panoptic FPN for inference whose masks are binarised at ``mask_threshold``.

    Models without instance masks (a ``SemanticSegmentor``, a box-only model) and any model in
    training mode are called unchanged.

    Args:
        model: a ``GeneralizedRCNN`` or ``PanopticFPN`` (or its DDP wrapper).
        mask_threshold: in (0, 1); 0.5 gives exactly Detectron2's outputs.
        combine_panoptic: a ``PanopticFPN`` also returns ``"panoptic_seg"``, combined from the
            thresholded instances and the semantic labels as its ``inference`` combines them
            (Detectron2 v0.6 always does; pass ``MODEL.PANOPTIC_FPN.COMBINE.ENABLED`` to let the
            config decide). The evaluator does not read it.
    """

    def __init__(
        self, model: torch.nn.Module, mask_threshold: float, *, combine_panoptic: bool = True
    ) -> None:
        super().__init__()
        self.model = model
        self.mask_threshold = mask_threshold
        self.combine_panoptic = combine_panoptic

    def forward(self, batched_inputs: list[dict]) -> list[dict]:
        """Predict; the same inputs and outputs as the wrapped model's inference."""
        if self.training or not has_instance_masks(self.model):
            return self.model(batched_inputs)
        raw = raw_outputs(self.model, batched_inputs)
        outputs = postprocess_at_threshold(raw, batched_inputs, self.mask_threshold)
        if raw.sem_seg is not None and self.combine_panoptic:
            model = getattr(self.model, "module", self.model)
            for out in outputs:
                out["panoptic_seg"] = combine_semantic_and_instance_outputs(
                    out["instances"],
                    out["sem_seg"].argmax(dim=0),
                    model.combine_overlap_thresh,
                    model.combine_stuff_area_thresh,
                    model.combine_instances_score_thresh,
                )
        return outputs
