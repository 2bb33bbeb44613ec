"""Reading a COCO instances file into Detectron2 dataset dicts, validating everything on the way.

The JSON is read here, never by pycocotools or ``load_coco_json`` (which assert, raise
``KeyError`` or crash in C on bad input). Every problem is collected into one
:class:`ValidationReport`; the dicts are built only when nothing is fatal. The rules and their
codes are listed in ``datasets/README.md``.
"""

from __future__ import annotations

import operator
import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..utils.collector import collector_paused
from ..utils.native import kernels
from .coco_json import read_coco_json
from .image_check import ImageCheckError, ImageFileInfo, inspect_image, resolve_image_path
from .limits import MAX_POLYGON_POINTS, image_size_problem
from .segmentation import (
    EDGE_TOLERANCE,
    BoxCheck,
    SegmentationCheck,
    check_bbox,
    check_segmentation,
    is_number,
)
from .validation import ValidationReport

__all__ = ["LoadedCOCO", "load_coco_file", "validate_coco_file"]

# Image files are checked by this many threads (the work is file reading and Pillow's C code).
_IMAGE_CHECK_THREADS = 4


@dataclass
class LoadedCOCO:
    """A validated COCO file.

    Attributes:
        report: every problem found, plus counts, categories and mask format.
        dicts: Detectron2 dataset dicts (droppable items dropped), sorted by image id; empty
            when ``report`` has fatal problems.
        thing_classes: category names in contiguous-id order (sorted by JSON id).
        id_map: JSON category id -> contiguous id.
    """

    report: ValidationReport
    dicts: list[dict] = field(default_factory=list)
    thing_classes: list[str] = field(default_factory=list)
    id_map: dict[int, int] = field(default_factory=dict)


@dataclass
class _Image:
    image_id: int
    file_name: str | None
    height: int | None
    width: int | None
    path: str | None = None


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _as_size(value: Any) -> int | None:
    """A positive integer size (integral floats such as 480.0 accepted), else None."""
    if is_number(value) and value > 0 and float(value).is_integer():
        return int(value)
    return None


def _shown_id(value: Any) -> Any:
    return value if _is_id(value) else None


def _join(values: list) -> str:
    """``"3 and 7"``, ``"3, 5 and 7"``."""
    text = [str(v) for v in values]
    return text[0] if len(text) == 1 else ", ".join(text[:-1]) + " and " + text[-1]


def _file_names_by_id(images: list) -> dict[int, str]:
    """The ``file_name`` of each image id used once, to name images in every message."""
    count: dict[int, int] = defaultdict(int)
    names: dict[int, str] = {}
    for img in images:
        if isinstance(img, dict) and _is_id(img.get("id")):
            count[img["id"]] += 1
            if isinstance(img.get("file_name"), str) and img["file_name"].strip():
                names[img["id"]] = img["file_name"]
    return {i: n for i, n in names.items() if count[i] == 1}


def _check_categories(categories: list, annotations: list, report: ValidationReport
                      ) -> tuple[dict, list, set]:
    """The categories that are classes: id -> contiguous id, names, and every id defined.

    Args:
        categories: the JSON's ``categories``.
        annotations: the JSON's ``annotations`` (read only when two categories share a name).
        report: receives the problems.
    """
    names: dict[int, str] = {}
    known: set[int] = set()
    count: dict[int, int] = defaultdict(int)
    for i, cat in enumerate(categories):
        if not isinstance(cat, dict) or not _is_id(cat.get("id")):
            found = cat.get("id") if isinstance(cat, dict) else cat
            report.add("fatal", "category_invalid",
                       f"categories[{i}] has id {found!r}; expected an object with an integer "
                       "'id' and a string 'name'")
            continue
        cid = cat["id"]
        known.add(cid)
        count[cid] += 1
        name = cat.get("name")
        if not isinstance(name, str) or not name.strip():
            report.add("fatal", "category_invalid",
                       f"category id {cid} (categories[{i}]) has name {name!r}; expected a "
                       "non-empty string")
        elif cid not in names:
            names[cid] = name
    for cid, n in sorted(count.items()):
        if n > 1:
            report.add("fatal", "category_duplicate_id",
                       f"category id {cid} is defined {n} times")
    by_name: dict[str, list[int]] = defaultdict(list)
    for cid, name in names.items():
        by_name[name].append(cid)
    shared = sorted((name, ids) for name, ids in by_name.items() if len(ids) > 1)
    used = {a.get("category_id") for a in annotations
            if isinstance(a, dict) and _is_id(a.get("category_id"))} if shared else set()
    for name, ids in shared:
        _leave_out_unused_namesakes(name, sorted(ids), used, names, report)
    if not categories:
        report.add("fatal", "no_categories", "'categories' is empty; at least one is needed")
    ordered = sorted(names)
    report.categories = [(cid, names[cid]) for cid in ordered]
    return {cid: k for k, cid in enumerate(ordered)}, [names[c] for c in ordered], known


def _leave_out_unused_namesakes(name: str, ids: list[int], used: set, names: dict[int, str],
                                report: ValidationReport) -> None:
    """Categories sharing a name: those without annotations are left out, when one is left.

    Roboflow exports carry a placeholder category (id 0) named like a real one, without
    annotations. Results are keyed by class name, so two categories with annotations and one
    name stay an error; a namesake without annotations is no class (every table would show an
    empty row under the name of a real one). When no namesake has annotations, the one with
    the largest id stays (Roboflow's placeholder is the smallest).
    """
    with_annotations = [cid for cid in ids if cid in used]
    if len(with_annotations) > 1:
        report.add("fatal", "category_duplicate_name",
                   f"category name {name!r} is used by category ids {_join(with_annotations)}, "
                   f"each with annotations; results are keyed by class name (IoU-{name}, ...), "
                   "so each category needs its own name")
        return
    kept = with_annotations[0] if with_annotations else ids[-1]
    for cid in ids:
        if cid == kept:
            continue
        reason = (f"category id {cid} ({name!r}) has no annotations and its name is that of "
                  f"category id {kept}{'' if with_annotations else ' (which has none either)'}: "
                  f"left out, not a class (as Roboflow's placeholder category); results must "
                  f"use category id {kept}")
        report.add("dropped", "category_duplicate_name_unused", reason)
        report.left_out_categories[cid] = reason
        del names[cid]


def _image_entry_errors(img: dict, sizes_from_files: bool = False) -> list[str]:
    errors = []
    file_name = img.get("file_name")
    if not isinstance(file_name, str) or not file_name.strip() or "\x00" in file_name:
        errors.append(f"file_name is {file_name!r}; expected a non-empty path")
    for key in ("height", "width"):
        if sizes_from_files and img.get(key) is None:
            continue  # taken from the image file
        if _as_size(img.get(key)) is None:
            errors.append(f"{key} is {img.get(key)!r}; expected a positive integer")
    return errors


def _check_images(images: list, report: ValidationReport, sizes_from_files: bool = False
                  ) -> tuple[dict[int, _Image], list[_Image]]:
    """Check the image entries; return the image of each id, and every valid entry.

    With ``sizes_from_files`` an entry may leave out ``height`` and ``width`` (or give null):
    its image's size is then None until :func:`_check_image_files` reads it from the file.
    """
    entries: dict[int, list[_Image]] = defaultdict(list)
    for i, img in enumerate(images):
        if not isinstance(img, dict) or not _is_id(img.get("id")):
            found = img.get("id") if isinstance(img, dict) else img
            report.add("fatal", "image_invalid",
                       f"images[{i}] has id {found!r}; expected an object with an integer 'id'")
            continue
        errors = _image_entry_errors(img, sizes_from_files)
        if errors:
            report.add("fatal", "image_invalid", "; ".join(errors), image_id=img["id"])
            entries[img["id"]].append(_Image(img["id"], None, None, None))
            continue
        width, height = _as_size(img.get("width")), _as_size(img.get("height"))
        too_large = (image_size_problem(width, height)
                     if width is not None and height is not None else None)
        if too_large:
            # Neither its file nor its annotations are looked at: both would cost memory in
            # proportion to the size.
            report.add("fatal", "image_too_large", too_large, image_id=img["id"])
            entries[img["id"]].append(_Image(img["id"], None, None, None))
            continue
        entries[img["id"]].append(_Image(img["id"], img["file_name"],
                                         _as_size(img.get("height")), _as_size(img.get("width"))))
    by_id = {}
    for image_id, same in sorted(entries.items()):
        by_id[image_id] = same[0]
        if len(same) > 1:
            names = sorted(repr(e.file_name) for e in same)
            report.add("fatal", "image_duplicate_id",
                       f"image id {image_id} is used by {len(same)} images "
                       f"(file_names {', '.join(names)})", image_id=image_id)
            # Which entry the annotations belong to is ambiguous: their geometry is not
            # checked against either (the report would depend on the order of the entries).
            by_id[image_id] = _Image(image_id, None, None, None)
    return by_id, [e for same in entries.values() for e in same if e.file_name is not None]


def _inspect(path: str) -> ImageFileInfo | ImageCheckError:
    try:
        return inspect_image(path)
    except ImageCheckError as err:
        return err


def _size_message(info: ImageFileInfo, image: _Image) -> str:
    from .image_io import SWAPPING_ORIENTATIONS  # Pillow: only when an image is checked

    message = (f"image file is {info.width}x{info.height} (width x height) as Detectron2 reads "
               f"it, the JSON says {image.width}x{image.height}")
    if info.orientation in SWAPPING_ORIENTATIONS and (info.height, info.width) == (
        image.width, image.height
    ):
        message += (f"; the file's EXIF orientation {info.orientation} turns it by 90 degrees "
                    "and the JSON gives the unturned size (Detectron2 applies the orientation, "
                    "so sizes and coordinates must be those of the turned image)")
    return message


def _name_image_files(images: list[_Image], image_root: str) -> None:
    """Paths of images whose files are not checked: joined to the root, never opened."""
    root = os.path.abspath(image_root)
    for image in images:
        image.path = os.path.normpath(os.path.join(root, image.file_name))


def _check_image_files(images: list[_Image], image_root: str, allow_outside_root: bool,
                       report: ValidationReport, optional: bool = False) -> None:
    """Check every image file against its entry.

    With ``optional`` (the files are only drawn, never scored) a file that is missing,
    unreadable or of another size than the JSON's is a "changed" problem, not a fatal one,
    and an entry without a size takes its file's (fatal only when the file cannot give it).
    """
    if not os.path.isdir(image_root):
        report.add("fatal", "image_root_missing",
                   f"image root {image_root} does not exist or is not a folder")
        return
    to_check: dict[str, list[_Image]] = defaultdict(list)
    for image in images:
        try:
            image.path = resolve_image_path(image_root, image.file_name,
                                            allow_outside_root=allow_outside_root)
        except ImageCheckError as err:
            report.add("fatal", err.code, str(err), image_id=image.image_id)
            continue
        to_check[image.path].append(image)
    paths = sorted(to_check)
    if len(paths) > 2 * _IMAGE_CHECK_THREADS:
        with ThreadPoolExecutor(_IMAGE_CHECK_THREADS) as pool:
            results = list(pool.map(_inspect, paths))
    else:
        results = [_inspect(p) for p in paths]
    depths: dict[str, int] = defaultdict(int)
    for path, result in zip(paths, results, strict=True):
        if not isinstance(result, ImageCheckError):
            depths[result.bit_depth] += 1
        for image in to_check[path]:
            _check_image_file(image, result, report, optional)
    report.bit_depths = dict(sorted(depths.items()))


_ONLY_DRAWN = "only the worst-image overlays read it: drawn on a grey canvas"


def _check_image_file(image: _Image, result: ImageFileInfo | ImageCheckError,
                      report: ValidationReport, optional: bool) -> None:
    unsized = image.height is None or image.width is None
    if isinstance(result, ImageCheckError):
        if not optional or unsized:
            why = "; the JSON gives no height/width, so they must come from it" if unsized else ""
            report.add("fatal", result.code, f"{result}{why}", image_id=image.image_id)
        else:
            report.add("changed", result.code, f"{result} ({_ONLY_DRAWN})",
                       image_id=image.image_id)
    elif unsized:
        image.height, image.width = result.height, result.width
        report.add("changed", "image_size_from_file",
                   f"no height/width in the JSON: taken from the image file ({result.width}x"
                   f"{result.height}, width x height)", image_id=image.image_id)
    elif (result.width, result.height) != (image.width, image.height):
        if optional:
            report.add("changed", "image_size_mismatch",
                       f"{_size_message(result, image)} ({_ONLY_DRAWN})", image_id=image.image_id)
        else:
            report.add("fatal", "image_size_mismatch", _size_message(result, image),
                       image_id=image.image_id)


def _annotation_entry_errors(ann: dict) -> list[str]:
    errors = []
    for key in ("id", "image_id", "category_id"):
        if not _is_id(ann.get(key)):
            errors.append(f"{key} is {ann.get(key)!r}; expected an integer")
    if ann.get("iscrowd", 0) not in (0, 1):
        errors.append(f"iscrowd is {ann.get('iscrowd')!r}; expected 0 or 1")
    if "area" in ann and not (is_number(ann["area"]) and ann["area"] >= 0):
        errors.append(f"area is {ann['area']!r}; expected a number >= 0")
    return errors


@dataclass
class _Kept:
    """An annotation that passed its checks; turned into a Detectron2 dict at the end."""

    ann: dict
    segm: SegmentationCheck
    box: BoxCheck | None
    height: int
    width: int
    category: int
    new_id: int | None = None

    @property
    def final_id(self) -> int:
        """The annotation's id in the loaded data (renumbered when the JSON's is 0)."""
        return self.ann["id"] if self.new_id is None else self.new_id

    def to_dict(self, box_mode: Any) -> dict:
        # Rasterising (for a missing area or bbox) waits until the whole file is known to be
        # fine: an image size claimed by the JSON is only trusted once the file confirmed it.
        segm, ann = self.segm, self.ann
        return {
            "bbox": self.box.bbox if self.box is not None else segm.bbox(self.height, self.width),
            "bbox_mode": box_mode,
            "category_id": self.category,
            "iscrowd": int(ann.get("iscrowd", 0)),
            "segmentation": segm.segmentation,
            "area": float(ann["area"]) if "area" in ann else segm.area(self.height, self.width),
            "id": self.final_id,
        }


def _check_annotation(ann: dict, image: _Image, id_map: dict, known_categories: set,
                      report: ValidationReport) -> _Kept | None:
    """Check one structurally valid annotation; return it when it is kept."""
    ann_id, image_id = ann["id"], ann["image_id"]
    issues = []
    cid = ann["category_id"]
    if cid not in known_categories:
        shown = sorted(known_categories)
        listed = ", ".join(map(str, shown[:20])) + (", ..." if len(shown) > 20 else "")
        issues.append(("fatal", "unknown_category",
                       f"category_id {cid} is not in 'categories' (ids: {listed or 'none'})"))
    height, width = image.height, image.width
    box = check_bbox(ann["bbox"], height, width) if "bbox" in ann else None
    if box is not None:
        issues.extend(box.issues)
    segm = None
    if height is not None and width is not None:
        segm = check_segmentation(ann.get("segmentation"), height, width,
                                  present="segmentation" in ann)
        issues.extend(segm.issues)
    for severity, code, message in issues:
        report.add(severity, code, message, image_id=image_id, annotation_id=ann_id)
    # Dropped polygons leave the annotation usable while another polygon is left; any other
    # issue (fatal, empty box) means the annotation is not kept.
    partial = ("polygon_odd_length", "polygon_too_few_points")
    if any(code not in partial for _, code, _ in issues):
        return None
    if segm is None or segm.segmentation is None or cid not in id_map:
        return None
    return _Kept(ann, segm, box, height, width, id_map[cid])


# Tests switch the fast path of _check_annotations off to compare it with every check.
_FAST_PATH = True
_PLAIN_TYPES = frozenset((int, float))
# An ``area`` up to this is taken as it is by the fast path (a float holds it exactly).
_PLAIN_AREA_LIMIT = float(2**53)
_ABSENT = object()


def _plain_record(ann: dict, height: int, width: int, category: int, box_mode: Any
                  ) -> dict | _Kept | None:
    """What :func:`_check_annotation` keeps of an annotation that needs no message at all.

    The common case checked with few Python operations (the ids are checked by the caller): an
    optional plain ``iscrowd``, ``area`` and ``bbox`` within the image, polygons of finite
    numbers within it (at least three points each, not too many in all) or a compressed RLE
    of the image's size with a foreground. Anything else (None) goes through every check.

    Returns:
        The final Detectron2 annotation dict when the JSON gives ``bbox`` and ``area``; a
        :class:`_Kept` when one of them is still to be computed from the mask; None when the
        annotation needs the full checks.
    """
    get = ann.get
    iscrowd = get("iscrowd", 0)
    if type(iscrowd) is not int or not (iscrowd == 0 or iscrowd == 1):
        return None
    area = get("area", _ABSENT)
    if area is not _ABSENT and not (type(area) in _PLAIN_TYPES
                                    and 0 <= area <= _PLAIN_AREA_LIMIT):
        return None
    bbox = get("bbox", _ABSENT)
    if bbox is not _ABSENT:
        if type(bbox) is not list or len(bbox) != 4:
            return None
        x, y, w, h = bbox
        # Worded so that NaN and infinities fail too: the box is then finite and small.
        if not (type(x) in _PLAIN_TYPES and type(y) in _PLAIN_TYPES and type(w) in _PLAIN_TYPES
                and type(h) in _PLAIN_TYPES and w > 0 and h > 0
                and x >= -EDGE_TOLERANCE and y >= -EDGE_TOLERANCE
                and x + w <= width + EDGE_TOLERANCE and y + h <= height + EDGE_TOLERANCE):
            return None
        bbox = [float(x), float(y), float(w), float(h)]
    segm = get("segmentation")
    rle_area = None
    if type(segm) is list:
        segm = kernels.plain_polygons(segm, height, width, EDGE_TOLERANCE, MAX_POLYGON_POINTS)
        if segm is None:
            return None
    elif type(segm) is dict:
        size, counts = segm.get("size"), segm.get("counts")
        if not (type(counts) is str and type(size) is list and len(size) == 2
                and type(size[0]) is int and type(size[1]) is int
                and size[0] == height and size[1] == width):
            return None
        # The kernel decodes exactly as rle_counts_to_runs does, or gives None.
        decoded = kernels.decode_rles([counts], height, width)
        if decoded is None or not decoded[1][0] > 0:
            return None
        rle_area = int(decoded[1][0])
        segm = {"size": [height, width], "counts": counts}
    else:
        return None
    if bbox is _ABSENT or area is _ABSENT:
        checked = SegmentationCheck(segmentation=segm, kind="polygon" if rle_area is None
                                    else "rle", _rle_area=rle_area)
        box = None if bbox is _ABSENT else BoxCheck(bbox=bbox)
        return _Kept(ann, checked, box, height, width, category)
    return {"bbox": bbox, "bbox_mode": box_mode, "category_id": category, "iscrowd": iscrowd,
            "segmentation": segm, "area": float(area), "id": ann["id"]}


def _check_annotations(annotations: list, images: dict[int, _Image], id_map: dict,
                       known_categories: set, report: ValidationReport, box_mode: Any
                       ) -> tuple[dict[int, list[dict | _Kept]], dict[int, Any], set]:
    """Check every annotation.

    Returns:
        What is kept per image id (final dicts, or :class:`_Kept` to finish once the file is
        known to be fine), the image id of each integer annotation id (its first use), and
        the annotation ids used more than once.
    """
    kept: dict[int, list[dict | _Kept]] = defaultdict(list)
    owner: dict[int, Any] = {}  # annotation id -> the image id of its first annotation
    more_owners: dict[int, list[Any]] = defaultdict(list)  # ... of its later ones
    sizes = {i: (image.height, image.width) for i, image in images.items()
             if image.height is not None and image.width is not None} if _FAST_PATH else {}
    for i, ann in enumerate(annotations):
        if not isinstance(ann, dict):
            report.add("fatal", "annotation_invalid",
                       f"annotations[{i}] is {type(ann).__name__}; expected an object")
            continue
        ann_id, image_id, cid = ann.get("id"), ann.get("image_id"), ann.get("category_id")
        if type(ann_id) is int and type(image_id) is int and type(cid) is int:
            size, category = sizes.get(image_id), id_map.get(cid)
            if size is not None and category is not None:
                plain = _plain_record(ann, size[0], size[1], category, box_mode)
                if plain is not None:
                    if ann_id in owner:
                        more_owners[ann_id].append(image_id)
                    else:
                        owner[ann_id] = image_id
                    kept[image_id].append(plain)
                    continue
        errors = _annotation_entry_errors(ann)
        if _is_id(ann_id):
            if ann_id in owner:
                more_owners[ann_id].append(image_id)
            else:
                owner[ann_id] = image_id
        if errors:
            where = "" if _is_id(ann_id) else f"annotations[{i}]: "
            report.add("fatal", "annotation_invalid", where + "; ".join(errors),
                       image_id=_shown_id(image_id), annotation_id=_shown_id(ann_id))
            continue
        image = images.get(image_id)
        if image is None:
            report.add("fatal", "annotation_missing_image",
                       f"image_id {image_id} is not in 'images'",
                       image_id=image_id, annotation_id=ann_id)
            continue
        obj = _check_annotation(ann, image, id_map, known_categories, report)
        if obj is not None:
            kept[image_id].append(obj)
    for ann_id, others in sorted(more_owners.items()):
        image_ids = [owner[ann_id], *others]
        shown = sorted(map(repr, image_ids))
        report.add("fatal", "annotation_duplicate_id",
                   f"annotation id {ann_id} is used by {len(image_ids)} annotations (of "
                   f"images {', '.join(shown)})", annotation_id=ann_id)
    return kept, owner, set(more_owners)


def _renumber_zero_ids(kept: dict[int, list[dict | _Kept]], owner: dict[int, Any],
                       duplicated: set, report: ValidationReport) -> None:
    """Give a kept annotation with id 0 a new, unused id, and count it.

    pycocotools stores the id of the matched ground truth per detection and reads 0 as "no
    match" (so does Detectron2's COCOEvaluator, built on it): a detection matching an object
    with id 0 would count as a false positive.

    Args:
        kept: what :func:`_check_annotations` kept, per image id.
        owner: every integer annotation id.
        duplicated: the annotation ids used more than once (fatal already).
        report: receives the change.
    """
    if 0 not in owner or 0 in duplicated:
        return
    new_id = max(max(owner), 0) + 1
    for image_id, objs in kept.items():
        for obj in objs:
            if type(obj) is dict:
                if obj["id"] != 0:
                    continue
                obj["id"] = new_id
            elif obj.ann["id"] == 0:
                obj.new_id = new_id
            else:
                continue
            report.add("changed", "annotation_id_zero",
                       f"annotation id 0 becomes {new_id} (one more than the largest id): "
                       "pycocotools, and every evaluator built on it, reads an id of 0 as "
                       "'no match', which would count this object's detection as a false "
                       "positive", image_id=image_id, annotation_id=0)


def _sort_key(value: Any) -> tuple:
    if value is None:
        return (0, 0, "")
    if _is_id(value):
        return (1, value, "")
    return (2, 0, repr(value))


_by_id = operator.itemgetter("id")

# The value of Detectron2's ``BoxMode.XYWH_ABS`` (an IntEnum): the box mode of the dicts, which
# the Detectron2 side turns into the enum member itself when it registers a dataset.
XYWH_ABS = 1


@collector_paused()
def load_coco_file(json_file: str | os.PathLike, image_root: str | os.PathLike, *,
                   allow_outside_root: bool = False, build_dicts: bool = True,
                   check_image_files: bool = True, image_files_optional: bool = False,
                   data: Any = None, box_mode: Any = XYWH_ABS) -> LoadedCOCO:
    """Validate a COCO instances file and its images, and build Detectron2 dataset dicts.

    Args:
        json_file: the annotation file.
        image_root: the folder that image ``file_name``s are relative to.
        allow_outside_root: accept ``file_name``s that leave ``image_root``.
        build_dicts: False to only validate (``dicts`` stays empty).
        check_image_files: False to validate the JSON alone, for uses that never read the
            images (scoring a results file): image sizes are then the JSON's, and
            ``file_name`` is joined to ``image_root`` without opening anything.
        image_files_optional: with ``check_image_files``, for uses that only draw the images
            (``tools/evaluate.py --images``): a missing or unreadable file, or one of another
            size than the JSON's, is counted as changed and the image kept; an image entry
            without ``height``/``width`` takes its file's size.
        data: the parsed JSON when it is not read from ``json_file`` (which then only names
            it in messages).
        box_mode: the dicts' ``bbox_mode`` (Detectron2 passes ``BoxMode.XYWH_ABS``).

    Returns:
        The report (problems sorted, so independent of the order of items in the file) and,
        when nothing is fatal, the dataset dicts in the format of the project contract:
        absolute ``file_name``, contiguous ``category_id``, compressed RLE with str counts.
    """
    json_file, image_root = os.fspath(json_file), os.fspath(image_root)
    report = ValidationReport(json_file=json_file, image_root=image_root)
    data = read_coco_json(json_file, report, data)
    if data is None:
        return LoadedCOCO(report)
    report.num_images = len(data["images"])
    report.num_annotations = len(data["annotations"])
    report.image_files = _file_names_by_id(data["images"])
    id_map, classes, known = _check_categories(data["categories"], data["annotations"], report)
    sizes_from_files = check_image_files and image_files_optional
    images, entries = _check_images(data["images"], report, sizes_from_files)
    if not data["images"]:
        report.add("fatal", "no_images", "'images' is empty; at least one image is needed")
    if check_image_files:
        _check_image_files(entries, image_root, allow_outside_root, report,
                           image_files_optional)
    else:
        _name_image_files(entries, image_root)
    kept, owner, duplicated = _check_annotations(data["annotations"], images, id_map, known,
                                                 report, box_mode)
    _renumber_zero_ids(kept, owner, duplicated, report)
    num_kept = sum(len(v) for v in kept.values())
    report.num_kept_annotations = num_kept
    if data["annotations"] and not num_kept and not report.fatal:
        report.add("fatal", "no_annotations_kept",
                   f"none of the {len(data['annotations'])} annotations is usable: every one "
                   "was dropped (see the problems above)")
    severity_order = {"fatal": 0, "dropped": 1, "changed": 2}
    report.problems.sort(key=lambda p: (severity_order[p.severity], p.code,
                                        _sort_key(p.image_id), _sort_key(p.annotation_id),
                                        p.message))
    is_rle = any(type(obj["segmentation"]) is dict if type(obj) is dict else obj.segm.kind == "rle"
                 for objs in kept.values() for obj in objs)
    report.mask_format = "bitmask" if is_rle else "polygon"
    if report.fatal or not build_dicts:
        return LoadedCOCO(report, thing_classes=classes, id_map=id_map)
    dicts = []
    for image_id in sorted(images):
        image = images[image_id]
        dicts.append({
            "file_name": image.path,
            "height": image.height,
            "width": image.width,
            "image_id": image_id,
            "annotations": sorted((obj if type(obj) is dict else obj.to_dict(box_mode)
                                   for obj in kept.get(image_id, ())), key=_by_id),
        })
    return LoadedCOCO(report, dicts, classes, id_map)


def validate_coco_file(json_file: str | os.PathLike, image_root: str | os.PathLike, *,
                       allow_outside_root: bool = False) -> ValidationReport:
    """Validate a COCO instances file and its images, reporting every problem at once.

    Args:
        json_file: the annotation file.
        image_root: the folder that image ``file_name``s are relative to.
        allow_outside_root: accept ``file_name``s that leave ``image_root``.

    Returns:
        The report; nothing is raised for bad input (``report.ok`` is False when a problem is
        fatal).
    """
    return load_coco_file(json_file, image_root, allow_outside_root=allow_outside_root,
                          build_dicts=False).report
