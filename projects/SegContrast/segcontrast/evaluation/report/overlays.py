"""The worst images' overlays: ground truth (left) and prediction (right) over the image, PNG.

Composed with numpy and Pillow (no plotting library): each panel is the image with the masks
blended in by class colour and outlined in white (crowd regions light grey), scaled to a
readable height; a caption over each panel and a title line over both. Written atomically.
"""

from __future__ import annotations

import colorsys
import io
import os
import textwrap

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ...data.image_io import read_rgb
from ...data.masks import MaskCrops
from ...utils import atomic_write
from ..metrics.boundary import mask_boundary

__all__ = ["draw_instances", "overlay_name", "palette", "plot_overlay"]

_PANEL_HEIGHT = 400  # pixels a panel is scaled to (by at most 4x up, down to 1/4)
_GAP = 12
_FONT_SIZE = 13


def palette(n: int) -> np.ndarray:
    """(n, 3) float32 RGB colours, one per class: hues spread by the golden ratio."""
    colours = []
    for i in range(max(n, 1)):
        hue = (0.08 + i * 0.618034) % 1.0
        light = 0.50 if i % 2 == 0 else 0.40
        colours.append(colorsys.hls_to_rgb(hue, light, 0.75))
    return (np.array(colours) * 255).astype(np.float32)


def draw_instances(
    background: np.ndarray,
    masks: MaskCrops,
    classes: np.ndarray,
    colours: np.ndarray,
    crowd: np.ndarray | None = None,
) -> np.ndarray:
    """Blend instance masks (coloured by class) over an image, outlines in white.

    Args:
        background: (H, W, 3) uint8 RGB.
        masks: the instances.
        classes: (N,) their classes.
        colours: (K, 3) colours.
        crowd: (N,) bool; crowd regions are drawn light grey without outline.

    Returns:
        (H, W, 3) uint8.
    """
    out = background.astype(np.float32)
    for i in range(len(masks)):
        if masks.areas[i] == 0:
            continue
        x0, y0, x1, y1 = masks.boxes[i]
        crop = masks.crops[i]
        region = out[y0:y1, x0:x1]
        is_crowd = crowd is not None and bool(crowd[i])
        colour = np.float32(220) if is_crowd else colours[classes[i] % len(colours)]
        region[crop] = 0.45 * region[crop] + 0.55 * colour
        if not is_crowd:
            region[mask_boundary(crop, 1)] = 255.0
    return out.clip(0, 255).astype(np.uint8)


def _load_rgb(file_name: str, height: int, width: int) -> np.ndarray:
    # The project's one reader: EXIF orientation and deep images as training saw them.
    try:
        rgb = read_rgb(file_name)
        if rgb.shape[:2] == (height, width):
            return rgb
    except (OSError, ValueError, SyntaxError):
        pass
    return np.full((height, width, 3), 96, np.uint8)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _scaled(panel: np.ndarray) -> Image.Image:
    image = Image.fromarray(panel)
    h = panel.shape[0]
    scale = min(max(_PANEL_HEIGHT / max(h, 1), 0.25), 4.0)
    if abs(scale - 1.0) < 1e-3:
        return image
    size = (max(1, round(panel.shape[1] * scale)), max(1, round(h * scale)))
    # nearest when enlarging keeps each pixel's mask membership visible
    return image.resize(size, Image.NEAREST if scale > 1 else Image.BILINEAR)


def _wrapped(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont,
             width: int) -> list[str]:
    per_char = max(draw.textlength("x" * 10, font=font) / 10, 1.0)
    return textwrap.wrap(text, max(int(width / per_char), 20)) or [""]


def plot_overlay(
    path: str,
    file_name: str,
    gt: MaskCrops,
    gt_classes: np.ndarray,
    gt_crowd: np.ndarray,
    pred: MaskCrops,
    pred_classes: np.ndarray,
    num_classes: int,
    title: str,
) -> None:
    """Ground truth (left) and prediction (right) drawn over the image, as one PNG.

    Args:
        path: PNG file.
        file_name: the image, read as training reads it (``data.image_io.read_rgb``); a
            grey canvas when it cannot be read at the right size.
        gt: ground-truth instances (crowd regions included).
        gt_classes: their classes.
        gt_crowd: their crowd flags (drawn grey).
        pred: predicted instances.
        pred_classes: their classes.
        num_classes: K (colours).
        title: the line over both panels.
    """
    background = _load_rgb(file_name, gt.height, gt.width)
    colours = palette(num_classes)
    panels = (
        (_scaled(draw_instances(background, gt, gt_classes, colours, gt_crowd)),
         f"ground truth ({int(np.count_nonzero(~gt_crowd))}, crowd regions grey)"),
        (_scaled(draw_instances(background, pred, pred_classes, colours)),
         f"prediction ({len(pred)})"),
    )
    font = _font(_FONT_SIZE)
    line_h = _FONT_SIZE + 5
    panel_w, panel_h = panels[0][0].size
    width = 2 * panel_w + 3 * _GAP
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines = _wrapped(measure, title, font, width - 2 * _GAP)
    top = _GAP + line_h * len(lines) + _GAP // 2 + line_h
    canvas = Image.new("RGB", (width, top + panel_h + _GAP), "white")
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((_GAP, _GAP + i * line_h), line, fill="black", font=font)
    for p, (image, caption) in enumerate(panels):
        x = _GAP + p * (panel_w + _GAP)
        draw.text((x, top - line_h), caption, fill="black", font=font)
        canvas.paste(image, (x, top))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", optimize=False)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def overlay_name(rank: int, image_id: object) -> str:
    """File name of the rank-th worst image's overlay."""
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(image_id))[:60]
    return os.path.join("worst_images", f"{rank:02d}_{safe}.png")
