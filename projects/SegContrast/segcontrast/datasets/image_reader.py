"""The Detectron2 side's one image reader: Detectron2's ``read_image``, 16-bit safe.

The rules (16-bit rescaling, EXIF orientation) are :mod:`segcontrast.data.image_io`'s; this adds
Detectron2's path handling (``PathManager``) and its format conversion.
"""

from __future__ import annotations

import numpy as np
from detectron2.data.detection_utils import convert_PIL_to_numpy
from detectron2.utils.file_io import PathManager

from ..data.image_io import decode_image_bytes

__all__ = ["read_image"]


def read_image(file_name: str, format: str | None = None) -> np.ndarray:
    """Read an image like ``detectron2.data.detection_utils.read_image``, 16-bit safe.

    Args:
        file_name: path of the image (any path Detectron2's ``PathManager`` opens).
        format: "BGR", "RGB", "L" or another PIL mode, as in Detectron2 (None: keep the mode).

    Returns:
        ``(H, W, C)`` uint8 array (``(H, W)`` for ``format=None`` and a one-channel image),
        oriented by its EXIF tag; images deeper than 8 bits rescaled by the module's rule.

    Raises:
        OSError: the file cannot be read or decoded (Pillow may also raise ValueError or
            SyntaxError for damaged files, as Detectron2's reader does).
    """
    with PathManager.open(file_name, "rb") as f:
        data = f.read()
    return convert_PIL_to_numpy(decode_image_bytes(data, file_name), format)
