"""Reading images the way Detectron2 does, plus what it gets wrong for high bit depths.

Detectron2's ``read_image`` applies the EXIF orientation, then ``PIL.Image.convert``. Two kinds
of files deeper than 8 bits per sample go wrong there:

* 16-bit grayscale (Pillow mode "I;16"), 32-bit integer ("I") and float ("F"): the conversion
  to RGB clips every value above 255, which turns most microscopy images into a white square.
* 16-bit colour (RGB or RGBA PNG and TIFF, 16-bit grayscale with alpha): Pillow has no such
  mode and keeps only the high byte of each sample, so 12-bit data comes out nearly black.

The one rule of the readers (:func:`read_rgb`, and the Detectron2 side's ``read_image``): an
image deeper than 8 bits is rescaled to 8 bits from its own minimum (0) to its own maximum
(255), linearly and rounded, over all colour channels together (alpha is left out and dropped,
as Detectron2 drops it); a constant image becomes 0. 16-bit colour files are decoded with
OpenCV, which keeps all 16 bits. Every other image is read exactly as Detectron2 reads it, and
the EXIF orientation is applied with the same table as Detectron2's ``_apply_exif_orientation``.
:func:`describe_bit_depth` names a file's depth for the validator's report.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = [
    "EXIF_ORIENTATION_TAG",
    "HIGH_BIT_DEPTH_MODES",
    "SWAPPING_ORIENTATIONS",
    "apply_exif_orientation",
    "describe_bit_depth",
    "exif_orientation",
    "orientation_from_exif",
    "decode_image_bytes",
    "oriented_size",
    "read_rgb",
    "sample_bits",
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


def _rawmode(image: Image.Image) -> str:
    """How the file stores its pixels (e.g. "RGB;16B"), from the not yet decoded tile."""
    tile = getattr(image, "tile", None) or []
    if not tile:
        return ""
    args = tile[0].args if hasattr(tile[0], "args") else tile[0][3]
    if isinstance(args, tuple):
        args = args[0] if args else ""
    return args if isinstance(args, str) else ""


def sample_bits(image: Image.Image) -> int:
    """Bits per sample of an opened (not yet decoded) image file's pixel data.

    Pillow holds 16-bit colour files as 8-bit modes; the file's raw mode still says 16.
    """
    if image.mode == "F":
        return 32
    if image.mode.startswith("I;16"):
        return 16
    rawmode = _rawmode(image)
    if image.mode == "I":
        return 16 if ";16" in rawmode else 32
    if ";16" in rawmode:
        return 16
    return 1 if image.mode == "1" else 8


_KINDS = {"1": "black-and-white", "L": "grayscale", "P": "palette", "LA": "grayscale+alpha",
          "RGB": "RGB", "RGBA": "RGBA", "CMYK": "CMYK", "YCbCr": "YCbCr", "F": "float grayscale"}


def describe_bit_depth(image: Image.Image) -> str:
    """``"16-bit RGB"``, ``"8-bit grayscale"``, ...: an opened (not yet decoded) file's depth.

    Call it before anything decodes the pixels: Pillow forgets the raw mode then.
    """
    kind = _KINDS.get(image.mode, "grayscale" if image.mode.startswith("I") else image.mode)
    return f"{sample_bits(image)}-bit {kind}"


def _truncated_by_pillow(image: Image.Image) -> bool:
    """16-bit samples that Pillow would read as 8-bit ones (it keeps their high byte)."""
    return image.mode not in HIGH_BIT_DEPTH_MODES and sample_bits(image) > 8


def _rescale(values: np.ndarray) -> np.ndarray:
    """Any numeric array to uint8: its finite minimum to 0, its maximum to 255, rounded."""
    values = values.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, np.uint8)
    low, high = values[finite].min(), values[finite].max()
    scaled = np.zeros(values.shape, dtype=np.float64)
    if high > low:
        scaled = (np.where(finite, values, low) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def to_8bit(image: Image.Image) -> Image.Image:
    """Rescale a high-bit-depth grayscale image to 8 bits; others are returned as they are.

    The image's own minimum maps to 0 and its maximum to 255 (a constant image becomes 0):
    12-bit data stored in 16-bit files, common in microscopy, then uses the full range.
    """
    if image.mode not in HIGH_BIT_DEPTH_MODES:
        return image
    return Image.fromarray(_rescale(np.asarray(image)))


def _decode_deep_colour(data: bytes, file_name: str) -> Image.Image:
    """A 16-bit colour file as an 8-bit image (RGB, or L for grayscale+alpha), by the rule."""
    import cv2  # only for these files; OpenCV keeps all 16 bits of each sample

    try:
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        array = None
    if array is None:
        raise OSError(f"{file_name}: a 16-bit colour image that OpenCV cannot decode")
    if array.ndim == 3 and array.shape[2] >= 3:
        colour = array[:, :, 2::-1]  # BGR(A) -> RGB, alpha left out
    elif array.ndim == 3:
        colour = array[:, :, 0]  # grayscale + alpha
    else:
        colour = array
    return Image.fromarray(np.ascontiguousarray(_rescale(colour)))


def decode_image_bytes(data: bytes, file_name: str) -> Image.Image:
    """An image file's pixels as an 8-bit Pillow image, oriented by its EXIF tag."""
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise UnidentifiedImageError(f"{file_name} is not an image file Pillow can read") from None
    # Before anything decodes the pixels (reading a PNG's EXIF may): the raw mode is lost then.
    deep_colour = _truncated_by_pillow(image)
    orientation = exif_orientation(image)
    if deep_colour:
        image = _decode_deep_colour(data, file_name)
    else:
        image = to_8bit(image)
    return apply_exif_orientation(image, orientation)


def read_rgb(file_name: str) -> np.ndarray:
    """Read a local image file as ``(H, W, 3)`` uint8 RGB, by the module's rules.

    What the evaluator's overlays need, without Detectron2.

    Raises:
        OSError: the file cannot be read or decoded.
    """
    with open(file_name, "rb") as f:
        data = f.read()
    return np.asarray(decode_image_bytes(data, file_name).convert("RGB"))
