"""Mask post-processing: Mask R-CNN's soft masks pasted at a chosen threshold.

Detectron2 always binarises the pasted masks at 0.5; :class:`MaskThresholdModel` makes
``TEST.SEGCONTRAST.MASK_THRESHOLD`` the threshold at which the evaluated masks are made.
"""

from __future__ import annotations

import torch
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Instances

__all__ = ["MaskThresholdModel", "paste_at_threshold"]


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


class MaskThresholdModel(torch.nn.Module):
    """A Mask R-CNN for inference whose masks are binarised at ``mask_threshold``.

    Models without a ``GeneralizedRCNN``-style ``inference(..., do_postprocess=False)`` (and
    any model in training mode) are called unchanged.

    Args:
        model: a ``GeneralizedRCNN`` (or its DDP wrapper).
        mask_threshold: in (0, 1); 0.5 gives exactly Detectron2's outputs.
    """

    def __init__(self, model: torch.nn.Module, mask_threshold: float) -> None:
        super().__init__()
        self.model = model
        self.mask_threshold = mask_threshold

    def forward(self, batched_inputs: list[dict]) -> list[dict]:
        """Predict; the same inputs and outputs as the wrapped model's inference."""
        model = getattr(self.model, "module", self.model)
        if not hasattr(model, "inference") or self.training:
            return self.model(batched_inputs)
        raw = model.inference(batched_inputs, do_postprocess=False)
        return paste_at_threshold(raw, batched_inputs, self.mask_threshold)
