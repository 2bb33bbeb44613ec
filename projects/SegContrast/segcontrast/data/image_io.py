"""Reading images the way Detectron2 does, plus what it gets wrong for high bit depths.

Detectron2's ``read_image`` applies the EXIF orientation, then ``PIL.Image.convert``. For a
16-bit PNG (mode "I;16") Pillow's conversion to RGB clips every value above 255, which turns
most microscopy images into a white square. :func:`read_image` here rescales 16-bit, 32-bit
and float images to 8 bits first (per image, from its minimum to its maximum); every other
mode is handled exactly as Detectron2 handles it, and the EXIF orientation is applied with the
same table as Detectron2's ``_apply_exif_orientation``.
"""

from __future__ import annotations

import numpy as np
from detectron2.utils.file_io import PathManager
from PIL import Image

__all__ = [
    "EXIF_ORIENTATION_TAG",
    "HIGH_BIT_DEPTH_MODES",
    "SWAPPING_ORIENTATIONS",
    "apply_exif_orientation",
    "exif_orientation",
    "orientation_from_exif",
    "oriented_size",
    "read_image",
    "to_8bit",
]

EXIF_ORIENTATION_TAG = 274
# EXIF orientations that swap width and height (transpose and the 90-degree rotations).
SWAPPING_ORIENTATIONS = (5, 6, 7, 8)
# Orientation -> the transpose that undoes it (the table Detectron2 uses).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
HIGH_BIT_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def exif_orientation(image: Image.Image) -> int | None:
    """The EXIF orientation tag, read exactly as Detectron2 reads it (None when absent)."""
    try:
        exif = image.getexif()
    except Exception:  # Detectron2 ignores unreadable EXIF too (its issue 1885).
        return None
    return orientation_from_exif(exif)


def orientation_from_exif(exif: Image.Exif | None) -> int | None:
    """The orientation value of an EXIF block when it is an integer, else None."""
    value = exif.get(EXIF_ORIENTATION_TAG) if exif is not None else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def apply_exif_orientation(image: Image.Image, orientation: int | None = None) -> Image.Image:
    """Turn the image upright according to its EXIF orientation, as Detectron2 does.

    Args:
        image: an opened image.
        orientation: the orientation when already known (read from ``image`` when None).

    Returns:
        The transposed image (``image`` itself for orientation 1, unknown or absent).
    """
    if orientation is None:
        orientation = exif_orientation(image)
    method = _TRANSPOSE.get(orientation) if orientation is not None else None
    return image.transpose(method) if method is not None else image


def oriented_size(image: Image.Image, orientation: int | None = None) -> tuple[int, int]:
    """``(width, height)`` of the image after Detectron2 applies its EXIF orientation.

    Args:
        image: an opened image (only its header is used).
        orientation: the orientation when already known (read from ``image`` when None).
    """
    if orientation is None:
        orientation = exif_orientation(image)
    width, height = image.size
    if orientation in SWAPPING_ORIENTATIONS:
        return height, width
    return width, height


def to_8bit(image: Image.Image) -> Image.Image:
    """Rescale a high-bit-depth image to an 8-bit grayscale one; others are returned as is.

    The image's own minimum maps to 0 and its maximum to 255 (a constant image becomes 0):
    12-bit data stored in 16-bit files, common in microscopy, then uses the full range.
    """
    if image.mode not in HIGH_BIT_DEPTH_MODES:
        return image
    values = np.asarray(image, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return Image.new("L", image.size)
    low, high = values[finite].min(), values[finite].max()
    scaled = np.zeros(values.shape, dtype=np.float64)
    if high > low:
        scaled = (np.where(finite, values, low) - low) * (255.0 / (high - low))
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))


def read_image(file_name: str, format: str | None = None) -> np.ndarray:
    """Read an image like ``detectron2.data.detection_utils.read_image``, 16-bit safe.

    Args:
        file_name: path of the image.
        format: "BGR", "RGB", "L" or another PIL mode, as in Detectron2 (None: keep the mode).

    Returns:
        ``(H, W, C)`` uint8 array (``(H, W)`` for ``format=None`` and a one-channel image),
        oriented by its EXIF tag.
    """
    # Imported here: detectron2.data costs a second at import time, which the validator
    # (tools/validate_dataset.py, image_check) does not need.
    from detectron2.data.detection_utils import convert_PIL_to_numpy

    with PathManager.open(file_name, "rb") as f:
        image = Image.open(f)
        image = apply_exif_orientation(image)
        return convert_PIL_to_numpy(to_8bit(image), format)
