"""Image reading (image_io) against Detectron2's read_image, and image file checks
(image_check): cheap sizes that match what Detectron2 reads, and every kind of broken file."""

import io
import struct
import zlib

import numpy as np
import pytest
from detectron2.data.detection_utils import read_image as d2_read_image
from PIL import Image
from segcontrast.data.image_check import ImageCheckError, inspect_image, resolve_image_path
from segcontrast.data.image_io import to_8bit
from segcontrast.datasets.image_reader import read_image


def _picture(height=30, width=44, seed=0):
    rng = np.random.default_rng(seed)
    image = (rng.random((height, width, 3)) * 255).astype(np.uint8)
    image[: height // 3, : width // 4] = (255, 0, 0)  # an asymmetric mark: flips show
    return image


def _save_with_orientation(path, array, orientation, fmt):
    exif = Image.Exif()
    exif[274] = orientation
    Image.fromarray(array).save(path, fmt, exif=exif.tobytes(), **(
        {"quality": 95} if fmt == "JPEG" else {}))


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_matches_detectron2(tmp_path, orientation, fmt):
    path = tmp_path / f"o{orientation}.{fmt.lower()}"
    _save_with_orientation(path, _picture(), orientation, fmt)
    for format in ("BGR", "RGB", "L", None):
        ours = read_image(str(path), format=format)
        reference = d2_read_image(str(path), format=format)
        assert ours.shape == reference.shape
        assert np.array_equal(ours, reference)
    info = inspect_image(str(path))
    height, width = d2_read_image(str(path), format="BGR").shape[:2]
    assert (info.width, info.height) == (width, height)
    assert info.orientation == orientation


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "1", "CMYK"])
def test_other_8bit_modes_match_detectron2(tmp_path, mode):
    image = Image.fromarray(_picture()).convert(mode)
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    image.save(path)
    for format in ("BGR", "RGB", "L"):
        assert np.array_equal(read_image(str(path), format), d2_read_image(str(path), format))


def test_16bit_png_is_rescaled_where_detectron2_clips(tmp_path):
    values = np.linspace(1000, 41000, 30 * 44).reshape(30, 44).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I;16")
    ours = read_image(str(path), "BGR")
    clipped = d2_read_image(str(path), "BGR")
    assert (clipped == 255).mean() > 0.99  # Detectron2: a white square
    assert ours.dtype == np.uint8 and ours.shape == (30, 44, 3)
    expected = np.rint((values.astype(np.float64) - 1000) * 255 / 40000).astype(np.uint8)
    assert np.array_equal(ours[..., 0], expected)
    assert np.array_equal(ours[..., 0], ours[..., 2])


def test_to_8bit_edge_cases():
    flat = Image.fromarray(np.full((4, 5), 700, dtype=np.uint16))
    assert np.asarray(to_8bit(flat)).max() == 0
    floats = Image.fromarray(np.array([[0.0, np.nan], [np.inf, 2.0]], dtype=np.float32))
    assert np.asarray(to_8bit(floats)).tolist() == [[0, 0], [0, 255]]
    rgb = Image.new("RGB", (2, 2))
    assert to_8bit(rgb) is rgb


def _png_with_late_exif(array, orientation) -> bytes:
    """A PNG whose eXIf chunk comes after the pixel data (Pillow writes it before)."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    data = buf.getvalue()
    exif = Image.Exif()
    exif[274] = orientation
    payload = exif.tobytes()[6:] if exif.tobytes().startswith(b"Exif") else exif.tobytes()
    chunk = struct.pack(">I", len(payload)) + b"eXIf" + payload
    chunk += struct.pack(">I", zlib.crc32(b"eXIf" + payload))
    iend = data.rindex(b"IEND") - 4
    return data[:iend] + chunk + data[iend:]


def test_png_metadata_after_the_pixels_is_found(tmp_path):
    path = tmp_path / "late.png"
    path.write_bytes(_png_with_late_exif(_picture(), 6))
    reference = d2_read_image(str(path), "BGR")
    assert reference.shape[:2] == (44, 30)  # Detectron2 turns it
    info = inspect_image(str(path))
    assert (info.width, info.height) == (30, 44) and info.orientation == 6
    assert np.array_equal(read_image(str(path), "BGR"), reference)


def _jpeg(array, **kw):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "JPEG", **kw)
    return buf.getvalue()


@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.95])
def test_truncated_jpeg_is_detected(tmp_path, progressive, fraction):
    data = _jpeg(_picture(120, 160), quality=95, progressive=progressive)
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ImageCheckError) as info:
        inspect_image(str(path))
    assert info.value.code == "image_truncated"


def test_jpeg_with_data_after_the_image_is_fine(tmp_path):
    path = tmp_path / "trailer.jpg"
    path.write_bytes(_jpeg(_picture()) + b"appended by a camera" * 10)
    info = inspect_image(str(path))
    assert (info.width, info.height) == (44, 30)


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.99])
def test_truncated_png_is_detected(tmp_path, fraction):
    buf = io.BytesIO()
    Image.fromarray(_picture()).save(buf, "PNG")
    data = buf.getvalue()
    path = tmp_path / "cut.png"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ImageCheckError) as info:
        inspect_image(str(path))
    assert info.value.code in ("image_truncated", "image_corrupt")


def test_damaged_png_fails_its_crc(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(_picture()).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    idat = data.index(b"IDAT")
    data[idat + 20] ^= 0xFF
    path = tmp_path / "bad.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageCheckError) as info:
        inspect_image(str(path))
    assert info.value.code == "image_corrupt" and "CRC" in str(info.value)


def test_other_formats_are_decoded(tmp_path):
    Image.fromarray(_picture()).save(tmp_path / "ok.bmp")
    assert inspect_image(str(tmp_path / "ok.bmp")).width == 44
    data = (tmp_path / "ok.bmp").read_bytes()
    (tmp_path / "cut.bmp").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageCheckError) as info:
        inspect_image(str(tmp_path / "cut.bmp"))
    assert info.value.code in ("image_truncated", "image_corrupt")


@pytest.mark.parametrize(
    "content, code",
    [(None, "image_missing"), (b"", "image_empty"), (b"hello, not an image\n", "image_not_image"),
     (b"\x89PNG\r\n\x1a\n", "image_corrupt"),
     (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image_corrupt|image_truncated")],
)
def test_broken_files(tmp_path, content, code):
    path = tmp_path / "x.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageCheckError) as info:
        inspect_image(str(path))
    assert info.value.code in code.split("|")
    assert str(path) in str(info.value)


def test_a_folder_is_not_an_image(tmp_path):
    with pytest.raises(ImageCheckError) as info:
        inspect_image(str(tmp_path))
    assert info.value.code == "image_missing"


@pytest.mark.parametrize(
    "file_name, inside",
    [("a.png", True), ("sub/../a.png", True), ("sub dir/ñ.png", True), ("../a.png", False),
     ("sub/../../a.png", False), ("/etc/passwd", False), ("..", False), ("./../images/x", True)],
)
def test_paths_that_leave_the_root_are_refused(tmp_path, file_name, inside):
    root = tmp_path / "images"
    if inside:
        assert resolve_image_path(str(root), file_name, allow_outside_root=False).startswith(
            str(root))
    else:
        with pytest.raises(ImageCheckError) as info:
            resolve_image_path(str(root), file_name, allow_outside_root=False)
        assert info.value.code == "image_outside_root"
        assert resolve_image_path(str(root), file_name, allow_outside_root=True)


def test_absolute_path_inside_the_root_is_accepted(tmp_path):
    path = str(tmp_path / "a.png")
    assert resolve_image_path(str(tmp_path), path, allow_outside_root=False) == path
