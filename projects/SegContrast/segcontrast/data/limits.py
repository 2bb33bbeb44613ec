"""Size limits of images and polygons, far above any real dataset, checked before any work.

Beyond them the tools would not fail cleanly: pycocotools keeps a mask's pixel count in 32
bits (a 100000x100000 image wraps around, and a correct RLE then looks wrong), and its polygon
rasteriser spends time and memory in proportion to the number of points times the image size
(a 200,000-point polygon took 29 s and 5.5 GB). Each limit is documented in datasets/README.md
and the README; a file over one is refused with exit code 2, naming the file, the item and the
limit.

This module imports neither torch nor Detectron2.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "MAX_IMAGE_PIXELS",
    "MAX_IMAGE_SIDE",
    "MAX_POLYGON_POINTS",
    "image_size_problem",
    "polygon_points",
    "polygon_points_problem",
]

# The longest image side, in pixels: COCO's images have 640, whole microscopy or satellite
# scenes a few 10,000 (and are tiled for training).
MAX_IMAGE_SIDE = 50_000
# Pixels of one image (width * height): one gigapixel, a quarter of what fits pycocotools'
# 32-bit pixel counts.
MAX_IMAGE_PIXELS = 1_000_000_000
# Points (x, y pairs) of one annotation's or one result's polygons together: COCO's largest
# annotations have a few hundred, a pixel-exact outline of a 10,000-pixel-wide object some
# 40,000. Larger masks belong in RLE, which has no such cost.
MAX_POLYGON_POINTS = 50_000


def image_size_problem(width: int, height: int) -> str | None:
    """Why an image of this size is refused, or None when it is within the limits.

    Args:
        width: the image's width in pixels.
        height: its height.

    Returns:
        A message fragment naming the size and the limit it exceeds.
    """
    if max(width, height) > MAX_IMAGE_SIDE:
        return (f"the image is {width}x{height} (width x height), above the limit of "
                f"{MAX_IMAGE_SIDE:,} pixels a side (MAX_IMAGE_SIDE); split it into tiles")
    if width * height > MAX_IMAGE_PIXELS:
        return (f"the image is {width}x{height} (width x height), {width * height:,} pixels, "
                f"above the limit of {MAX_IMAGE_PIXELS:,} pixels (MAX_IMAGE_PIXELS); split it "
                "into tiles")
    return None


def polygon_points(segmentation: list) -> int:
    """Points (x, y pairs) of a polygon segmentation ``[[x1, y1, ...], ...]``, all together."""
    return sum(len(poly) // 2 for poly in segmentation if isinstance(poly, list))


def polygon_points_problem(segmentation: Any) -> str | None:
    """Why a polygon segmentation is refused for its size, or None.

    Args:
        segmentation: an annotation's or result's ``segmentation`` (only lists are counted).

    Returns:
        A message fragment naming the number of points and the limit.
    """
    if not isinstance(segmentation, list):
        return None
    points = polygon_points(segmentation)
    if points <= MAX_POLYGON_POINTS:
        return None
    return (f"its polygons have {points:,} points in all, above the limit of "
            f"{MAX_POLYGON_POINTS:,} (MAX_POLYGON_POINTS); simplify the outline (e.g. "
            "cv2.approxPolyDP) or store the mask as RLE")
