#!/usr/bin/env python
"""The bad-input corpus: small COCO datasets, each with one expected outcome.

    python tests/data/make_corpus.py OUT_DIR      # writes OUT_DIR/<case>/ and prints the table

Every case is a folder with ``annotations.json`` (or the file the case is about) and
``images/``. Outcomes: "works" (no problem at all), "dropped" (usable; the listed codes are
dropped with a count), "changed" (usable; the listed items are kept in a corrected form, with a
count), "error" (the listed codes are fatal; the message names the file and the image /
annotation ids given). The output is deterministic and small (about 1 MB).

Nothing here imports segcontrast: the corpus is made independently of the code it tests.
"""

from __future__ import annotations

import copy
import io
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pycocotools.mask as mask_util
from PIL import Image

WIDTH, HEIGHT = 48, 40


@dataclass(frozen=True)
class Case:
    """One corpus case.

    Attributes:
        name: folder name and test id.
        outcome: "works", "dropped", "changed" or "error".
        codes: the problem codes expected (dropped codes for "dropped", changed codes for
            "changed", fatal codes for "error"); empty for "works".
        image_id: the image id an error message must name (None: not an image-level problem).
        annotation_id: the annotation id an error message must name.
        allow_outside_root: validate with ``allow_outside_root=True``.
        description: one line for the table.
        json_file: set by :func:`make_corpus`.
        image_root: set by :func:`make_corpus`.
    """

    name: str
    outcome: str
    codes: tuple[str, ...]
    description: str
    image_id: int | None = None
    annotation_id: int | None = None
    allow_outside_root: bool = False
    json_file: Path | None = field(default=None, compare=False)
    image_root: Path | None = field(default=None, compare=False)


_BUILDERS: dict[str, Callable[[Path, dict], dict | str | bytes]] = {}
CASES: list[Case] = []


def case(name: str, outcome: str, codes: tuple[str, ...] = (), description: str = "", **kw):
    """Register a builder: ``build(case_dir, coco) -> coco dict, or raw JSON text/bytes``."""

    def register(build):
        CASES.append(Case(name, outcome, codes, description, **kw))
        _BUILDERS[name] = build
        return build

    return register


# ----------------------------------------------------------------------------------------------
# The base dataset: two 48x40 images, non-contiguous and unsorted category ids, three squares.

def _rgb(seed: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = (rng.random((height, width, 3)) * 60 + 40).astype(np.uint8)
    image[4:20, 4:20] = (200, 60, 60)
    image[8:30, 24:40] = (60, 200, 60)
    return image


def _square(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def base_coco() -> dict:
    """The valid dataset every case starts from."""
    return {
        "info": {"description": "segcontrast test corpus"},
        "images": [
            {"id": 1, "file_name": "img1.png", "height": HEIGHT, "width": WIDTH},
            {"id": 2, "file_name": "img2.png", "height": HEIGHT, "width": WIDTH},
        ],
        "categories": [{"id": 7, "name": "square"}, {"id": 3, "name": "patch"}],
        "annotations": [
            {"id": 11, "image_id": 1, "category_id": 7, "iscrowd": 0, "area": 256.0,
             "bbox": [4, 4, 16, 16], "segmentation": _square(4, 4, 20, 20)},
            {"id": 12, "image_id": 1, "category_id": 3, "iscrowd": 0, "area": 352.0,
             "bbox": [24, 8, 16, 22], "segmentation": _square(24, 8, 40, 30)},
            {"id": 21, "image_id": 2, "category_id": 7, "iscrowd": 0, "area": 400.0,
             "bbox": [10, 10, 20, 20], "segmentation": _square(10, 10, 30, 30)},
        ],
    }


def _write_base_images(images: Path) -> None:
    images.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_rgb(1)).save(images / "img1.png")
    Image.fromarray(_rgb(2)).save(images / "img2.png")


def _ann(coco: dict, ann_id: int) -> dict:
    return next(a for a in coco["annotations"] if a["id"] == ann_id)


def _rle_of_ann12(compressed: bool = True) -> dict:
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8, order="F")
    mask[8:30, 24:40] = 1
    rle = mask_util.encode(mask)
    if compressed:
        return {"size": [HEIGHT, WIDTH], "counts": rle["counts"].decode("ascii")}
    runs, flat, current, count = [], mask.flatten(order="F"), 0, 0
    for value in flat:
        if value != current:
            runs.append(count)
            current, count = value, 0
        count += 1
    runs.append(count)
    return {"size": [HEIGHT, WIDTH], "counts": runs}


def _jpeg_bytes(array: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "JPEG", quality=95, **kw)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------
# Cases that work.

@case("valid_polygons", "works", description="the base dataset: polygons, ids 7 and 3")
def _valid(d, coco):
    return coco


@case("valid_rle_mixed", "works",
      description="polygon + compressed RLE + uncompressed RLE (crowd) in one file")
def _rle_mixed(d, coco):
    _ann(coco, 12)["segmentation"] = _rle_of_ann12(compressed=True)
    crowd = {"id": 22, "image_id": 2, "category_id": 3, "iscrowd": 1, "area": 352.0,
             "bbox": [24, 8, 16, 22], "segmentation": _rle_of_ann12(compressed=False)}
    coco["annotations"].append(crowd)
    return coco


@case("noncontiguous_category_ids", "works",
      description="category ids 1000 and 5, unsorted; bbox and area left out (computed)")
def _noncontiguous(d, coco):
    coco["categories"] = [{"id": 1000, "name": "big"}, {"id": 5, "name": "small"}]
    for ann in coco["annotations"]:
        ann["category_id"] = 1000 if ann["category_id"] == 7 else 5
        del ann["bbox"], ann["area"]
    return coco


@case("grayscale_png", "works", description="8-bit grayscale PNG (mode L)")
def _gray(d, coco):
    Image.fromarray(_rgb(1)[..., 1]).save(d / "images" / "gray.png")
    coco["images"][0]["file_name"] = "gray.png"
    return coco


@case("rgba_png", "works", description="RGBA PNG")
def _rgba(d, coco):
    rgba = np.dstack([_rgb(1), np.full((HEIGHT, WIDTH), 255, np.uint8)])
    Image.fromarray(rgba).save(d / "images" / "rgba.png")
    coco["images"][0]["file_name"] = "rgba.png"
    return coco


@case("png_16bit", "works", description="16-bit grayscale PNG with values up to 60000")
def _png16(d, coco):
    values = np.linspace(0, 60000, HEIGHT * WIDTH).reshape(HEIGHT, WIDTH).astype(np.uint16)
    Image.fromarray(values).save(d / "images" / "deep.png")
    coco["images"][0]["file_name"] = "deep.png"
    return coco


def _12bit_rgb() -> np.ndarray:
    """(H, W, 3) uint16: 12-bit colour data (values 0..4095), the base image's pattern."""
    return (_rgb(1).astype(np.uint16) * 16)


@case("png_16bit_rgb", "works",
      description="16-bit RGB PNG holding 12-bit data (Pillow alone keeps only the high byte)")
def _png16_rgb(d, coco):
    cv2.imwrite(str(d / "images" / "deep_rgb.png"), _12bit_rgb()[:, :, ::-1])
    coco["images"][0]["file_name"] = "deep_rgb.png"
    return coco


@case("tiff_16bit_gray", "works", description="16-bit grayscale TIFF with values up to 4000")
def _tiff16(d, coco):
    values = np.linspace(0, 4000, HEIGHT * WIDTH).reshape(HEIGHT, WIDTH).astype(np.uint16)
    Image.fromarray(values).save(d / "images" / "deep.tif")
    coco["images"][0]["file_name"] = "deep.tif"
    return coco


@case("tiff_16bit_rgb", "works", description="16-bit RGB TIFF (LZW) holding 12-bit data")
def _tiff16_rgb(d, coco):
    cv2.imwrite(str(d / "images" / "deep_rgb.tif"), _12bit_rgb()[:, :, ::-1])
    coco["images"][1]["file_name"] = "deep_rgb.tif"
    return coco


def _exif_rotated(d: Path) -> str:
    # Stored 40 wide x 48 high with orientation 6: shown (and read by Detectron2) as 48x40.
    stored = np.ascontiguousarray(np.rot90(_rgb(1), k=-1))
    exif = Image.Exif()
    exif[274] = 6
    (d / "images" / "rotated.jpg").write_bytes(_jpeg_bytes(stored, exif=exif.tobytes()))
    return "rotated.jpg"


@case("exif_rotated_jpeg", "works",
      description="JPEG with EXIF orientation 6; the JSON gives the turned 48x40 size")
def _exif_ok(d, coco):
    coco["images"][0]["file_name"] = _exif_rotated(d)
    return coco


@case("names_with_spaces_non_ascii", "works",
      description="file_name 'sub dir/ñandú 東京 image.png'")
def _unicode(d, coco):
    (d / "images" / "sub dir").mkdir()
    Image.fromarray(_rgb(3)).save(d / "images" / "sub dir" / "ñandú 東京 image.png")
    coco["images"][0]["file_name"] = "sub dir/ñandú 東京 image.png"
    return coco


@case("outside_root_allowed", "works", allow_outside_root=True,
      description="file_name '../outside.png' with allow_outside_root=True")
def _outside_allowed(d, coco):
    Image.fromarray(_rgb(4)).save(d / "outside.png")
    coco["images"][0]["file_name"] = "../outside.png"
    return coco


# ----------------------------------------------------------------------------------------------
# Cases where items are dropped with a count.

@case("polygon_odd_length", "dropped", ("polygon_odd_length",),
      "annotation 12 has a 7-number polygon", image_id=1, annotation_id=12)
def _odd(d, coco):
    _ann(coco, 12)["segmentation"] = [[24, 8, 40, 8, 40, 30, 24]]
    return coco


@case("polygon_too_few_points", "dropped", ("polygon_too_few_points",),
      "annotation 12 has a 2-point polygon", image_id=1, annotation_id=12)
def _short(d, coco):
    _ann(coco, 12)["segmentation"] = [[24, 8, 40, 8]]
    return coco


@case("polygon_partly_degenerate", "dropped", ("polygon_too_few_points",),
      "annotation 12 has a good polygon and a 2-point one (the annotation stays)",
      image_id=1, annotation_id=12)
def _partly(d, coco):
    _ann(coco, 12)["segmentation"] = _square(24, 8, 40, 30) + [[30, 10, 32, 12]]
    return coco


@case("empty_segmentation", "dropped", ("segmentation_empty",),
      "annotation 12 has segmentation []", image_id=1, annotation_id=12)
def _empty_segm(d, coco):
    _ann(coco, 12)["segmentation"] = []
    return coco


@case("segmentation_missing", "dropped", ("segmentation_missing",),
      "annotation 12 has no segmentation key", image_id=1, annotation_id=12)
def _no_segm(d, coco):
    del _ann(coco, 12)["segmentation"]
    return coco


@case("bbox_zero_size", "dropped", ("bbox_empty",),
      "annotation 12 has bbox width 0", image_id=1, annotation_id=12)
def _zero_box(d, coco):
    _ann(coco, 12)["bbox"] = [24, 8, 0, 22]
    return coco


@case("roboflow_placeholder_category", "dropped", ("category_duplicate_name_unused",),
      "Roboflow's export: category 0 'square' without annotations beside category 7 'square' "
      "(left out, not a class); info.year the string '2023'")
def _roboflow(d, coco):
    coco["info"].update(year="2023", url="https://public.roboflow.com")
    coco["categories"].insert(0, {"id": 0, "name": "square", "supercategory": "none"})
    return coco


# ----------------------------------------------------------------------------------------------
# Cases where items are kept in a corrected form, with a count.

@case("annotation_id_zero", "changed", ("annotation_id_zero",),
      "annotation 11 has id 0 (pycocotools reads 0 as 'no match')", image_id=1, annotation_id=0)
def _id_zero(d, coco):
    _ann(coco, 11)["id"] = 0
    return coco


# ----------------------------------------------------------------------------------------------
# Cases that are clear errors: the annotation file as a whole.

@case("empty_file", "error", ("file_empty",), "annotations.json has 0 bytes")
def _empty_file(d, coco):
    return b""


@case("truncated_json", "error", ("json_truncated",), "annotations.json cut in half")
def _truncated_json(d, coco):
    text = json.dumps(coco)
    return text[: len(text) // 2]


@case("not_json", "error", ("json_invalid",), "annotations.json holds YAML")
def _not_json(d, coco):
    return "images:\n  - id: 1\n    file_name: img1.png\n"


@case("missing_images", "error", ("json_structure",), "no 'images' key")
def _missing_images(d, coco):
    del coco["images"]
    return coco


@case("missing_annotations", "error", ("json_structure",), "no 'annotations' key")
def _missing_annotations(d, coco):
    del coco["annotations"]
    return coco


@case("missing_categories", "error", ("json_structure",), "no 'categories' key")
def _missing_categories(d, coco):
    del coco["categories"]
    return coco


@case("wrong_types", "error", ("json_structure",),
      "'images' is an object and 'annotations' a string")
def _wrong_types(d, coco):
    coco["images"] = {str(img["id"]): img for img in coco["images"]}
    coco["annotations"] = "none"
    return coco


@case("wrong_item_types", "error", ("image_invalid",),
      "image 2 has height \"40\" (a string)", image_id=2)
def _wrong_item_types(d, coco):
    coco["images"][1]["height"] = "40"
    return coco


@case("duplicate_category_names", "error", ("category_duplicate_name",),
      "categories 7 and 3 are both named 'square'")
def _dup_names(d, coco):
    coco["categories"][1]["name"] = "square"
    return coco


@case("category_without_name", "error", ("category_invalid",), "category 3 has no name")
def _category_no_name(d, coco):
    del coco["categories"][1]["name"]
    return coco


# ----------------------------------------------------------------------------------------------
# Clear errors: ids and references.

@case("duplicate_image_ids", "error", ("image_duplicate_id",), "two images with id 1",
      image_id=1)
def _dup_images(d, coco):
    coco["images"][1]["id"] = 1
    _ann(coco, 21)["image_id"] = 1
    return coco


@case("duplicate_annotation_ids", "error", ("annotation_duplicate_id",),
      "two annotations with id 11", annotation_id=11)
def _dup_anns(d, coco):
    _ann(coco, 21)["id"] = 11
    return coco


@case("annotation_missing_image", "error", ("annotation_missing_image",),
      "annotation 21 points to image 99", image_id=99, annotation_id=21)
def _missing_image_ref(d, coco):
    _ann(coco, 21)["image_id"] = 99
    return coco


@case("unknown_category", "error", ("unknown_category",),
      "annotation 12 has category_id 99", image_id=1, annotation_id=12)
def _unknown_category(d, coco):
    _ann(coco, 12)["category_id"] = 99
    return coco


@case("all_annotations_dropped", "error", ("no_annotations_kept",),
      "every annotation has an empty segmentation")
def _all_dropped(d, coco):
    for ann in coco["annotations"]:
        ann["segmentation"] = []
    return coco


# ----------------------------------------------------------------------------------------------
# Clear errors: geometry.

@case("rle_size_mismatch", "error", ("rle_size_mismatch",),
      "annotation 12's RLE is 20x20 on a 48x40 image", image_id=1, annotation_id=12)
def _rle_size(d, coco):
    mask = np.zeros((20, 20), dtype=np.uint8, order="F")
    mask[2:8, 2:8] = 1
    rle = mask_util.encode(mask)
    _ann(coco, 12)["segmentation"] = {"size": [20, 20], "counts": rle["counts"].decode()}
    return coco


@case("rle_malformed_counts", "error", ("rle_malformed",),
      "annotation 12's RLE counts end in the middle of a number", image_id=1, annotation_id=12)
def _rle_malformed(d, coco):
    rle = _rle_of_ann12(compressed=True)
    rle["counts"] += "P"  # 'P' carries the continuation bit: a number that never ends
    _ann(coco, 12)["segmentation"] = rle
    return coco


@case("bbox_negative", "error", ("bbox_negative",),
      "annotation 12 has bbox width -16", image_id=1, annotation_id=12)
def _neg_box(d, coco):
    _ann(coco, 12)["bbox"] = [24, 8, -16, 22]
    return coco


@case("bbox_outside_image", "error", ("bbox_outside_image",),
      "annotation 12's bbox reaches x = 64 on a 48-wide image", image_id=1, annotation_id=12)
def _outside_box(d, coco):
    _ann(coco, 12)["bbox"] = [24, 8, 40, 22]
    return coco


@case("polygon_outside_image", "error", ("polygon_outside_image",),
      "annotation 12's polygon reaches (400, 300)", image_id=1, annotation_id=12)
def _outside_polygon(d, coco):
    _ann(coco, 12)["segmentation"] = _square(24, 8, 400, 300)
    return coco


@case("polygon_too_many_points", "error", ("polygon_too_many_points",),
      "annotation 12's outline has 50,004 points (the limit is 50,000)", image_id=1,
      annotation_id=12)
def _many_points(d, coco):
    # The square's four corners over and over: inside the image, only too long.
    _ann(coco, 12)["segmentation"] = [[24, 8, 40, 8, 40, 30, 24, 30] * 12501]
    return json.dumps(coco)  # one line: indented, each number would take a line of its own


@case("image_too_large", "error", ("image_too_large",),
      "image 2 claims 100000x100000 pixels (the limits: 50,000 a side, 10^9 in all)",
      image_id=2)
def _huge_image(d, coco):
    coco["images"][1].update(width=100000, height=100000)
    return coco


# ----------------------------------------------------------------------------------------------
# Clear errors: image files.

@case("image_missing", "error", ("image_missing",), "img2.png is not there", image_id=2)
def _image_missing(d, coco):
    (d / "images" / "img2.png").unlink()
    return coco


@case("image_zero_byte", "error", ("image_empty",), "img2.png has 0 bytes", image_id=2)
def _zero_byte(d, coco):
    (d / "images" / "img2.png").write_bytes(b"")
    return coco


@case("truncated_jpeg", "error", ("image_truncated",), "a JPEG cut at 60%", image_id=2)
def _truncated_jpeg(d, coco):
    data = _jpeg_bytes(_rgb(2))
    (d / "images" / "cut.jpg").write_bytes(data[: int(len(data) * 0.6)])
    coco["images"][1]["file_name"] = "cut.jpg"
    return coco


@case("truncated_png", "error", ("image_truncated",), "a PNG cut at 70%", image_id=2)
def _truncated_png(d, coco):
    data = (d / "images" / "img2.png").read_bytes()
    (d / "images" / "img2.png").write_bytes(data[: int(len(data) * 0.7)])
    return coco


@case("text_named_jpg", "error", ("image_not_image",), "a text file named photo.jpg",
      image_id=2)
def _text_jpg(d, coco):
    (d / "images" / "photo.jpg").write_text("this is not an image\n")
    coco["images"][1]["file_name"] = "photo.jpg"
    return coco


@case("image_size_mismatch", "error", ("image_size_mismatch",),
      "the JSON says 48x40, the file is 50x40", image_id=2)
def _size_mismatch(d, coco):
    Image.fromarray(_rgb(2, width=50)).save(d / "images" / "img2.png")
    return coco


@case("exif_rotated_unturned_size", "error", ("image_size_mismatch",),
      "EXIF orientation 6, but the JSON gives the stored 40x48 size", image_id=1)
def _exif_wrong(d, coco):
    coco["images"][0].update(file_name=_exif_rotated(d), width=HEIGHT, height=WIDTH)
    return coco


@case("image_root_missing", "error", ("image_root_missing",), "the image folder is absent")
def _root_missing(d, coco):
    for path in (d / "images").iterdir():
        path.unlink()
    (d / "images").rmdir()
    return coco


@case("file_name_dotdot", "error", ("image_outside_root",),
      "file_name '../outside.png' (the file exists)", image_id=1)
def _dotdot(d, coco):
    Image.fromarray(_rgb(4)).save(d / "outside.png")
    coco["images"][0]["file_name"] = "../outside.png"
    return coco


@case("file_name_absolute", "error", ("image_outside_root",),
      "file_name is an absolute path outside the root (the file exists)", image_id=1)
def _absolute(d, coco):
    Image.fromarray(_rgb(4)).save(d / "outside.png")
    coco["images"][0]["file_name"] = str((d / "outside.png").resolve())
    return coco


# ----------------------------------------------------------------------------------------------

def make_corpus(root: str | Path) -> dict[str, Case]:
    """Write every case under ``root``.

    Args:
        root: an empty or new folder.

    Returns:
        Case name -> case, with ``json_file`` and ``image_root`` set.
    """
    root = Path(root)
    cases = {}
    for spec in CASES:
        folder = root / spec.name
        _write_base_images(folder / "images")
        built = _BUILDERS[spec.name](folder, copy.deepcopy(base_coco()))
        json_file = folder / "annotations.json"
        if isinstance(built, bytes):
            json_file.write_bytes(built)
        elif isinstance(built, str):
            json_file.write_text(built, encoding="utf-8")
        else:
            json_file.write_text(json.dumps(built, ensure_ascii=False, indent=1),
                                 encoding="utf-8")
        cases[spec.name] = Case(**{**spec.__dict__, "json_file": json_file,
                                   "image_root": folder / "images"})
    return cases


def corpus_table() -> str:
    """The cases as a Markdown table (case, expected outcome, codes, what is wrong)."""
    rows = ["| case | expected | codes | input |", "|---|---|---|---|"]
    for spec in CASES:
        rows.append(f"| {spec.name} | {spec.outcome} | {', '.join(spec.codes) or '-'} | "
                    f"{spec.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} OUT_DIR")
    make_corpus(sys.argv[1])
    print(corpus_table())
