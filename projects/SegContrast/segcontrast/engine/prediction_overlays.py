"""``tools/predict.py``'s overlays, drawn at a bounded size.

Detectron2's ``Visualizer`` renders through a matplotlib canvas of the output's size, with
several full-size copies of the image: on an 8000x8000 photo that alone took some 10 GB. Here
the image and the predictions are scaled down first (by default to a longest side of
:data:`DEFAULT_OVERLAY_SIZE` pixels, never up), one mask at a time, so that drawing costs memory
in proportion to the overlay, not to the input. The results file and the label PNGs keep the
input's full size.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from detectron2.data.catalog import Metadata
from detectron2.structures import Boxes, Instances
from detectron2.utils.visualizer import ColorMode, Visualizer

__all__ = [
    "DEFAULT_OVERLAY_SIZE",
    "argmax_labels",
    "draw_instances",
    "draw_semantic",
    "overlay_shape",
]

# Longest side of an overlay, in pixels, unless the image is smaller (--overlay-size).
DEFAULT_OVERLAY_SIZE = 1600
# Rows of semantic logits turned into labels at once: bounds argmax's int64 temporaries.
_ARGMAX_ROWS = 256


def overlay_shape(height: int, width: int, longest_side: int | None) -> tuple[int, int]:
    """The (height, width) of an image's overlay.

    Args:
        height: the image's height.
        width: its width.
        longest_side: the overlay's longest side at most (None: the image's own size).

    Returns:
        The image's size scaled down, keeping its aspect ratio, so that its longest side is at
        most ``longest_side`` (each side at least 1 pixel); never larger than the image.
    """
    if longest_side is None or max(height, width) <= longest_side:
        return height, width
    scale = longest_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def argmax_labels(logits: torch.Tensor) -> np.ndarray:
    """Per-pixel labels of (K + 1, H, W) logits as (H, W) uint8, a band of rows at a time."""
    height = logits.shape[1]
    labels = np.empty(tuple(logits.shape[1:]), np.uint8)
    for top in range(0, height, _ARGMAX_ROWS):
        band = logits[:, top:top + _ARGMAX_ROWS].argmax(dim=0)
        labels[top:top + _ARGMAX_ROWS] = band.to(torch.uint8).numpy()
    return labels


def _resize(image: np.ndarray, shape: tuple[int, int], *, labels: bool = False) -> np.ndarray:
    if image.shape[:2] == shape:
        return image
    # Area averaging for pictures and masks (a 0/1 mask stays 0/1: averages round to the
    # nearer); nearest neighbour for label values.
    how = cv2.INTER_NEAREST if labels else cv2.INTER_AREA
    return cv2.resize(image, (shape[1], shape[0]), interpolation=how)


def _scaled_instances(instances: Instances, keep: torch.Tensor,
                      shape: tuple[int, int]) -> Instances:
    """The kept predictions at another image size: boxes scaled, masks resized one by one."""
    height, width = instances.image_size
    out = Instances(shape)
    sy, sx = shape[0] / height, shape[1] / width
    if instances.has("pred_boxes"):
        boxes = instances.pred_boxes.tensor[keep].clone()
        out.pred_boxes = Boxes(boxes * boxes.new_tensor([sx, sy, sx, sy]))
    for name in ("scores", "pred_classes"):
        if instances.has(name):
            out.set(name, instances.get(name)[keep])
    if instances.has("pred_masks"):
        masks = np.zeros((len(keep), *shape), bool)
        for row, index in enumerate(keep.tolist()):
            mask = instances.pred_masks[index].numpy()
            masks[row] = _resize(mask.view(np.uint8), shape) > 0
        out.pred_masks = torch.from_numpy(masks)
    return out


def draw_instances(image_bgr: np.ndarray, instances: Instances, metadata: Metadata,
                   confidence: float, longest_side: int | None) -> np.ndarray:
    """An overlay of the predictions scoring at least ``confidence``.

    Args:
        image_bgr: (H, W, 3) uint8, the image as the model saw it.
        instances: the model's predictions at (H, W) (pred_masks (N, H, W) bool).
        metadata: class names and colours for Detectron2's ``Visualizer``.
        confidence: predictions below this score are not drawn.
        longest_side: see :func:`overlay_shape`.

    Returns:
        (h, w, 3) uint8 RGB, the size :func:`overlay_shape` gives.
    """
    shape = overlay_shape(*image_bgr.shape[:2], longest_side)
    rgb = np.ascontiguousarray(_resize(image_bgr, shape)[:, :, ::-1])
    keep = torch.nonzero(instances.scores >= confidence).flatten()
    drawn = Visualizer(rgb, metadata, instance_mode=ColorMode.IMAGE)
    return drawn.draw_instance_predictions(_scaled_instances(instances, keep, shape)).get_image()


def draw_semantic(image_bgr: np.ndarray, labels: np.ndarray, metadata: Metadata,
                  longest_side: int | None) -> np.ndarray:
    """A semantic model's labels over the image: each thing class in its colour, background bare.

    Detectron2's ``draw_sem_seg`` names labels by ``stuff_classes``; here label k + 1 is thing
    class k, and background (0) is moved past the named labels so that it is not drawn.

    Args:
        image_bgr: (H, W, 3) uint8.
        labels: (H, W) uint8, 0 background, class k as k + 1.
        metadata: ``thing_classes`` (and ``thing_colors`` if any).
        longest_side: see :func:`overlay_shape`.

    Returns:
        (h, w, 3) uint8 RGB.
    """
    shape = overlay_shape(*image_bgr.shape[:2], longest_side)
    rgb = np.ascontiguousarray(_resize(image_bgr, shape)[:, :, ::-1])
    small = _resize(labels, shape, labels=True).astype(np.int64)
    thing_classes = list(metadata.thing_classes)
    shifted = np.where(small == 0, len(thing_classes), small - 1)
    names = Metadata(stuff_classes=thing_classes)
    colors = metadata.get("thing_colors", None)
    if colors:
        names.stuff_colors = list(colors)
    return Visualizer(rgb, names).draw_sem_seg(shifted).get_image()
