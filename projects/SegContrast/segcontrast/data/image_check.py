"""Checking image files cheaply: inside the image root, present, complete, their size and depth.

The size is read from the file's header and turned by its EXIF orientation exactly as
:func:`segcontrast.datasets.image_reader.read_image` (and Detectron2) will turn the pixels.
Pixels are decoded only where that is the cheapest way to find a truncated file:

* PNG: every chunk is walked and its CRC checked (no decompression); the file must reach its
  ``IEND`` chunk.
* JPEG: a file that ends with the end-of-image marker is complete. Otherwise (a truncated
  file, or data appended after the image) it is decoded at 1/8 scale, which still reads every
  compressed byte but costs little.
* Any other format is decoded in full.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .limits import image_size_problem

if TYPE_CHECKING:
    from PIL import Image

# Pillow (and image_io, which imports it) load when the first image is checked: scoring a
# results file without --images never needs them.

__all__ = ["ImageCheckError", "ImageFileInfo", "inspect_image", "resolve_image_path"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Chunks Pillow reads EXIF orientation from (eXIf, raw EXIF profiles in text chunks, XMP).
_PNG_METADATA_CHUNKS = (b"eXIf", b"tEXt", b"zTXt", b"iTXt")
_JPEG_EOI = b"\xff\xd9"
_READ_BLOCK = 1 << 20


class ImageCheckError(Exception):
    """An image file that cannot be used; ``code`` names the problem (datasets/README.md)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ImageFileInfo:
    """What the header of a complete image file says.

    Attributes:
        width: width after the EXIF orientation is applied (what Detectron2 sees).
        height: height after the EXIF orientation is applied.
        orientation: the EXIF orientation tag, None when absent.
        format: Pillow's format name, e.g. "PNG".
        bit_depth: the file's sample depth and colour kind, e.g. "16-bit grayscale" (files
            deeper than 8 bits are rescaled by ``image_io.read_image``'s rule).
    """

    width: int
    height: int
    orientation: int | None
    format: str
    bit_depth: str = "8-bit RGB"


def resolve_image_path(image_root: str, file_name: str, *, allow_outside_root: bool) -> str:
    """Join an image's ``file_name`` to the image root, refusing paths that leave the root.

    The check is on the path as written (``..`` components and absolute paths), so the file
    is never opened when it is refused. Symbolic links inside the root are followed: they are
    part of the user's own file system, not of the (possibly untrusted) JSON.

    Args:
        image_root: the dataset's image folder.
        file_name: the image's ``file_name`` from the JSON.
        allow_outside_root: accept paths outside ``image_root``.

    Returns:
        The normalised absolute path.

    Raises:
        ImageCheckError: code "image_outside_root".
    """
    root = os.path.abspath(image_root)
    path = os.path.normpath(os.path.join(root, file_name))
    if not allow_outside_root and os.path.commonpath([root, path]) != root:
        how = "is an absolute path" if os.path.isabs(file_name) else "climbs out with '..'"
        raise ImageCheckError(
            "image_outside_root",
            f"file_name {file_name!r} {how} and resolves to {path}, outside the image root "
            f"{root}; files outside the root are not opened unless allowed "
            "(--allow-outside-root, or allow_outside_root=True)",
        )
    return path


def _truncated(what: str) -> ImageCheckError:
    return ImageCheckError("image_truncated", f"truncated {what}")


def _scan_png(f) -> bool:
    """Walk a PNG's chunks and check their CRCs.

    Returns:
        Whether metadata chunks (where Pillow looks for an orientation) follow the pixel data.
    """
    f.seek(0)
    if f.read(len(_PNG_SIGNATURE)) != _PNG_SIGNATURE:
        raise ImageCheckError("image_corrupt", "PNG signature is damaged")
    seen_pixels = late_metadata = False
    while True:
        offset = f.tell()
        head = f.read(8)
        if len(head) < 8:
            raise _truncated(f"PNG file: it ends at byte {offset} before its IEND chunk")
        length, kind = struct.unpack(">I4s", head)
        crc = zlib.crc32(kind)
        remaining = length
        while remaining:
            block = f.read(min(remaining, _READ_BLOCK))
            if not block:
                raise _truncated(
                    f"PNG file: chunk {kind.decode('latin-1')!r} at byte {offset} declares "
                    f"{length} bytes but the file ends first"
                )
            crc = zlib.crc32(block, crc)
            remaining -= len(block)
        stored = f.read(4)
        if len(stored) < 4:
            raise _truncated(f"PNG file: it ends inside chunk {kind.decode('latin-1')!r}")
        if struct.unpack(">I", stored)[0] != crc:
            raise ImageCheckError(
                "image_corrupt",
                f"PNG chunk {kind.decode('latin-1')!r} at byte {offset} fails its CRC check "
                "(the file is damaged)",
            )
        if kind == b"IDAT":
            seen_pixels = True
        elif seen_pixels and kind in _PNG_METADATA_CHUNKS:
            late_metadata = True
        elif kind == b"IEND":
            return late_metadata


def _png_orientation(path: str, image: Image.Image, late_metadata: bool) -> int | None:
    from PIL import Image

    from .image_io import exif_orientation, orientation_from_exif

    if late_metadata:
        # Pillow decodes the whole image to reach metadata stored after the pixels; so does
        # Detectron2's read_image, so this is the orientation it will apply.
        with open(path, "rb") as f, Image.open(f) as reopened:
            return exif_orientation(reopened)
    # Every metadata chunk came before the pixel data and is already in image.info: the base
    # class reads it without the PNG plugin's full decode.
    try:
        return orientation_from_exif(Image.Image.getexif(image))
    except Exception:  # unreadable EXIF counts as none, as in Detectron2
        return None


def _check_jpeg(f, image: Image.Image, file_size: int) -> None:
    f.seek(max(0, file_size - 64))
    if f.read().rstrip(b"\x00").endswith(_JPEG_EOI):
        return
    width, height = image.size
    try:
        image.draft(image.mode, (max(1, width // 8), max(1, height // 8)))
        image.load()
    except OSError as err:
        raise _truncated(f"JPEG file: {err}") from None
    except Exception as err:
        raise ImageCheckError("image_corrupt", f"JPEG data cannot be decoded: {err}") from None
    f.seek(0)
    if _JPEG_EOI not in f.read():
        raise _truncated("JPEG file: it has no end-of-image marker")


def _load_fully(image: Image.Image) -> None:
    try:
        image.load()
    except OSError as err:
        code = "image_truncated" if "truncated" in str(err) else "image_corrupt"
        raise ImageCheckError(code, f"{image.format} data cannot be decoded: {err}") from None
    except Exception as err:
        raise ImageCheckError(
            "image_corrupt", f"{image.format} data cannot be decoded: {err}"
        ) from None


_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"GIF8": "GIF",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"BM": "BMP",
}


def _signature(path: str) -> str | None:
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WebP"
    return next((kind for magic, kind in _SIGNATURES.items() if head.startswith(magic)), None)


def inspect_image(path: str) -> ImageFileInfo:
    """Check that an image file is present and complete, and read its oriented size.

    Args:
        path: the image file.

    Returns:
        Its size as Detectron2 will read it, orientation and format.

    Raises:
        ImageCheckError: with code "image_missing", "image_empty", "image_not_image",
            "image_truncated", "image_corrupt", "image_too_large" (beyond
            :data:`~.limits.MAX_IMAGE_SIDE` / :data:`~.limits.MAX_IMAGE_PIXELS`, or Pillow's
            decompression-bomb limit) or "image_unreadable".
    """
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        hint = " (the file_name uses '\\' separators)" if "\\" in path else ""
        raise ImageCheckError("image_missing", f"image file {path} does not exist{hint}") from None
    except (OSError, ValueError) as err:
        raise ImageCheckError("image_unreadable", f"image file {path}: {err}") from None
    if not os.path.isfile(path):
        raise ImageCheckError("image_missing", f"{path} is not a regular file")
    if stat.st_size == 0:
        raise ImageCheckError("image_empty", f"image file {path} is empty (0 bytes)")
    from PIL import Image, UnidentifiedImageError

    from .image_io import describe_bit_depth, exif_orientation, oriented_size

    try:
        with open(path, "rb") as f, Image.open(f) as image:
            bit_depth = describe_bit_depth(image)  # before any decoding (see image_io)
            orientation = None
            late_metadata = False
            if image.format == "PNG":
                late_metadata = _scan_png(f)
                orientation = _png_orientation(path, image, late_metadata)
            else:
                orientation = exif_orientation(image)
            width, height = oriented_size(image, orientation)
            too_large = image_size_problem(width, height)
            if too_large:
                raise ImageCheckError("image_too_large", f"image file {path}: {too_large}")
            if image.format in ("JPEG", "MPO"):
                _check_jpeg(f, image, stat.st_size)
            elif image.format != "PNG":
                _load_fully(image)
            return ImageFileInfo(width, height, orientation, image.format or "unknown",
                                 bit_depth)
    except ImageCheckError:
        raise
    except UnidentifiedImageError:
        kind = _signature(path)
        if kind:
            raise ImageCheckError(
                "image_corrupt",
                f"{path} ({stat.st_size} bytes) starts like a {kind} file but its header cannot "
                "be read (truncated or damaged)",
            ) from None
        raise ImageCheckError(
            "image_not_image",
            f"{path} ({stat.st_size} bytes) is not an image file Pillow can read",
        ) from None
    except Image.DecompressionBombError as err:
        # Pillow's own limit (below MAX_IMAGE_PIXELS): Detectron2's reader would refuse it too.
        raise ImageCheckError("image_too_large", f"image file {path}: {err}") from None
    except PermissionError as err:
        raise ImageCheckError("image_unreadable", f"{path}: {err}") from None
    except Exception as err:  # a damaged header: Pillow raises many different types
        code = "image_truncated" if "truncated" in str(err).lower() else "image_corrupt"
        raise ImageCheckError(code, f"{path}: cannot read the image header: {err}") from None
