"""A COCO results file (``[{"image_id", "category_id", "segmentation", "score", "bbox"?}, ...]``).

:func:`read_results` reads the file once, checks every result against the ground truth's images
and categories (every problem collected, each naming its index in the list, its image id and its
category id) and groups the results per image without decoding a mask. Masks are decoded one
image at a time by :meth:`ResultsFile.predictions`, into the :class:`~.image_eval.Predictions`
that the evaluator scores. The parsed JSON list itself stays in memory; everything derived from
it is per image.

Detection areas for COCO's area ranges (APs, APm, APl) are mask areas by default, as
Detectron2's ``COCOEvaluator`` and MMDetection's ``CocoMetric`` take them (they remove each
result's ``bbox`` before ``loadRes``). ``ap_area="box"`` is pycocotools' ``COCO.loadRes`` on the
file as it is: when the first result has a non-empty ``bbox``, every result's area is its box
``w * h``; otherwise its mask area.

Each result's image is found by its ``image_id``, or by its file name where the results name
their images that way (:mod:`.results_images` decides, or the caller says which).
"""

from __future__ import annotations

import bisect
import math
import os
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data.coco_json import read_json_file
from ..data.masks import annotation_to_rle, crops_from_rles
from ..data.rle import RLEError, rle_counts_to_runs
from ..data.segmentation import is_number, segmentation_problems
from ..data.validation import ValidationReport
from ..utils.collector import collector_paused
from ..utils.errors import InputError
from .metrics.coco_ap import AP_AREAS
from .predictions import Predictions
from .results_images import FileNames, choose_matching, normalized_id, stem_text

__all__ = [
    "ResultProblem",
    "ResultsFile",
    "ResultsFileError",
    "check_results",
    "read_results",
]

_SHOWN_PROBLEMS = 30
_PLAIN_NUMBERS = frozenset((int, float))
_LISTED_IDS = 20  # ids a message lists in full; more are summarised around the one looked for


@dataclass(frozen=True)
class ResultProblem:
    """One problem of a results file.

    Attributes:
        code: a short stable identifier ("unknown_image_id", "rle_size_mismatch", ...).
        message: what was expected and what was found.
        index: the result's position in the list (None for the file as a whole).
        image_id: the result's ``image_id`` when it has one.
        category_id: the result's ``category_id`` when it has one.
    """

    code: str
    message: str
    index: int | None = None
    image_id: Any = None
    category_id: Any = None

    def format(self, file: str) -> str:
        """One line: ``FILE: result 3 (image_id 7, category_id 2): message``."""
        if self.index is None:
            return f"{file}: {self.message}"
        where = [f"image_id {self.image_id!r}"] if self.image_id is not None else []
        if self.category_id is not None:
            where.append(f"category_id {self.category_id!r}")
        shown = f" ({', '.join(where)})" if where else ""
        return f"{file}: result {self.index}{shown}: {self.message}"


class ResultsFileError(InputError):
    """A results file (or a file that goes with it) that cannot be scored; ``str()`` says why.

    Attributes:
        file: the file.
        problems: every problem found.
    """

    def __init__(self, file: str, problems: Sequence[ResultProblem]) -> None:
        self.file = file
        self.problems = list(problems)
        super().__init__(self.summary())

    def summary(self, max_lines: int = _SHOWN_PROBLEMS) -> str:
        """Counts per problem code, then the first ``max_lines`` problems, one per line."""
        if len(self.problems) == 1:
            return self.problems[0].format(self.file)
        counts = Counter(p.code for p in self.problems)
        lines = [f"{self.file}: {len(self.problems)} problems ("
                 + ", ".join(f"{code}: {n}" for code, n in sorted(counts.items())) + ")"]
        lines += ["  " + p.format(self.file) for p in self.problems[:max_lines]]
        if len(self.problems) > max_lines:
            lines.append(f"  ... and {len(self.problems) - max_lines} more")
        return "\n".join(lines)

    @classmethod
    def merge(cls, errors: Sequence[ResultsFileError]) -> ResultsFileError:
        """The problems of several errors about the same file as one error."""
        return cls(errors[0].file, [p for e in errors for p in e.problems])


@dataclass
class ResultsFile:
    """A checked results file, grouped per image, not yet decoded.

    Attributes:
        path: the file.
        results: the parsed list.
        by_image: indices into ``results`` of each image's results, in file order.
        has_boxes: the first result has a non-empty ``bbox`` (pycocotools' ``loadRes`` then
            takes every detection's area from its box).
        ap_area: "mask" (detection areas for APs/APm/APl are mask areas, Detectron2's rule) or
            "box" (box ``w * h`` when ``has_boxes``, pycocotools' raw rule).
        warnings: things a reader of the report must know (an empty list, results matched to
            their images by file name, ...).
    """

    path: str
    results: list
    by_image: dict[Any, list[int]]
    has_boxes: bool
    ap_area: str = "mask"
    warnings: list[str] = field(default_factory=list)

    @property
    def area_from_box(self) -> bool:
        """Detection areas are box ``w * h`` rather than mask areas."""
        return self.ap_area == "box" and self.has_boxes

    def __len__(self) -> int:
        return len(self.results)

    def predictions(self, image_id: Any, height: int, width: int,
                    id_map: Mapping[int, int]) -> Predictions:
        """Decode one image's results.

        Args:
            image_id: the ground truth's image id.
            height: its height.
            width: its width.
            id_map: the ground truth's category id -> contiguous class id.

        Returns:
            The image's predictions in file order (none for an image without results).

        Raises:
            ResultsFileError: a compressed RLE that does not decode (naming each such result).
        """
        index = self.by_image.get(image_id, [])
        if not index:
            empty = np.zeros(0)
            return Predictions(crops_from_rles([], height, width), empty.astype(np.int64),
                               empty, empty)
        results = [self.results[i] for i in index]
        rles = [_to_rle(r["segmentation"], height, width) for r in results]
        try:
            masks = crops_from_rles(rles, height, width)
        except ValueError:
            raise self._decode_error(index, rles, height, width) from None
        classes = np.array([id_map[r["category_id"]] for r in results], np.int64)
        scores = np.array([r["score"] for r in results], np.float64)
        areas = masks.areas.astype(np.float64)
        if self.area_from_box:
            boxes = [r.get("bbox") for r in results]
            # pycocotools: ann['area'] = bb[2] * bb[3], Python floats.
            areas = np.array([float(b[2]) * float(b[3]) if b else float(a)
                              for b, a in zip(boxes, areas, strict=True)], np.float64)
        return Predictions(masks, classes, scores, areas)

    def _decode_error(self, index: list[int], rles: list[dict], height: int,
                      width: int) -> ResultsFileError:
        problems = []
        for i, rle in zip(index, rles, strict=True):
            result = self.results[i]
            try:
                runs, _ = rle_counts_to_runs([rle["counts"]])
                total = int(runs.sum())
                if total != height * width:
                    raise RLEError("rle_malformed", f"RLE counts add up to {total} pixels, "
                                   f"expected height * width = {height * width}")
            except RLEError as err:
                problems.append(ResultProblem(err.code, str(err), i, result["image_id"],
                                              result["category_id"]))
        if not problems:  # cannot happen for checked results; say where it did anyway
            problems.append(ResultProblem("rle_malformed", "the image's masks do not decode",
                                          index[0], self.results[index[0]]["image_id"]))
        return ResultsFileError(self.path, problems)


def _to_rle(segmentation: Any, height: int, width: int) -> dict:
    """A checked segmentation (ASCII counts) as compressed RLE with bytes counts."""
    if isinstance(segmentation, dict) and isinstance(segmentation["counts"], (str, bytes)):
        counts = segmentation["counts"]
        return {"size": [height, width],
                "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return annotation_to_rle(segmentation, height, width)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), type(value).__name__)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    """A value as Python writes it, short enough for a message."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_segmentation(segm: Any, height: int, width: int) -> tuple[str, str] | None:
    """The first problem of a result's segmentation (the ground truth's rules and codes).

    Compressed counts are decoded later, one image at a time (:meth:`ResultsFile.predictions`);
    an empty polygon list is an empty mask.
    """
    problems = segmentation_problems(segm, height, width, decode_counts=False)
    return (problems[0].code, problems[0].message) if problems else None


def _check_bbox(bbox: Any) -> tuple[str, str] | None:
    if isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(map(is_number, bbox)) \
            and bbox[2] >= 0 and bbox[3] >= 0:
        return None
    return ("bbox_invalid", f"bbox is {_shown(bbox)}; expected [x, y, width, height], four "
            "finite numbers with width, height >= 0")


def _ids_listed(known: Collection[int], value: Any) -> str:
    """The ground truth's ids a message shows: all when few, else their range and neighbours.

    The neighbours are the three ids on either side of ``value`` when it is a number.
    """
    ids = sorted(known)
    if len(ids) <= _LISTED_IDS:
        return "ids " + ", ".join(map(str, ids))
    text = f"ids {ids[0]} to {ids[-1]}"
    if is_number(value):
        at = bisect.bisect_left(ids, value)
        text += f"; nearest to {_shown(value)}: " + ", ".join(map(str, ids[max(0, at - 3):at + 3]))
    return text


def _image_lookup(images: Mapping[Any, tuple[int, int]], file_names: FileNames | None,
                  result: dict) -> tuple[Any, str | None]:
    """The ground-truth image of a result, or None and why not."""
    if file_names is not None:
        name = result.get("file_name")
        if isinstance(name, str):
            image_id = file_names.by_name(name)
        elif stem_text(result.get("image_id")) is not None:
            # Ultralytics writes no file name; its image_id is the file stem (an integer when
            # the stem is a number)
            name = stem_text(result["image_id"])
            image_id = file_names.by_stem(name)
        else:
            return None, (f"no 'file_name' (found {_shown(name)}) and no file stem as "
                          "image_id: with file-name matching every result needs one")
        if image_id is None:
            return None, f"file name {name!r} is no image of the ground truth"
        return image_id, None
    image_id = normalized_id(result["image_id"])
    if _is_int(image_id) and image_id in images:
        return image_id, None
    hint = ""
    if isinstance(image_id, str) and image_id.strip().lstrip("-").isdigit() \
            and int(image_id) in images:
        hint = ("; it is a string, the ground truth's ids are integers (a string image_id is "
                "often a file stem, as Ultralytics writes it: --match-file-names matches those "
                "to the ground truth's file names)")
    elif isinstance(result.get("file_name"), str) or isinstance(image_id, str):
        hint = ("; the results name their images by file (tools/predict.py's file_name, "
                "Ultralytics' file stem as image_id): --match-file-names matches them to the "
                "ground truth's file names")
    return None, (f"image_id {_shown(result['image_id'])} is not an image of the ground truth "
                  f"({len(images)} images, {_ids_listed(images, image_id)}){hint}")


@collector_paused()
def read_results(path: str | os.PathLike, images: Mapping[Any, tuple[int, int]],
                 id_map: Mapping[int, int], *, match_file_names: bool = False,
                 match_image_ids: bool = False, gt_file_names: Mapping[Any, str] | None = None,
                 ap_area: str = "mask",
                 left_out_categories: Mapping[int, str] | None = None) -> ResultsFile:
    """Read and check a results file against the ground truth, without decoding masks.

    Args:
        path: the results file.
        images: the ground truth's image id -> (height, width).
        id_map: the ground truth's category id -> contiguous class id.
        match_file_names: take each result's image from its ``file_name`` (matched on the
            last path component) instead of its ``image_id``; a result without one is matched
            by its ``image_id`` taken as a file stem (as Ultralytics writes it).
        match_image_ids: take each result's image from its ``image_id``, without asking
            whether the results name their images by file.
        gt_file_names: image id -> ``file_name`` of the ground truth (needed with
            ``match_file_names``; without either flag, the results are matched by file name
            when that is the one reading that finds every image, see :mod:`.results_images`).
        ap_area: "mask" or "box", the detection areas of APs/APm/APl (see the module doc).
        left_out_categories: category ids of the ground truth that are not classes -> why (a
            result using one is refused with that reason).

    Returns:
        The results, grouped per image.

    Raises:
        ResultsFileError: every problem found, each naming the result.
    """
    path = os.fspath(path)
    report = ValidationReport(json_file=path, image_root="")
    data = read_json_file(path, report, "results file", "a COCO results list")
    if report.fatal:
        raise ResultsFileError(path, [ResultProblem(report.fatal[0].code,
                                                    report.fatal[0].message)])
    return check_results(path, data, images, id_map, match_file_names=match_file_names,
                         match_image_ids=match_image_ids, gt_file_names=gt_file_names,
                         ap_area=ap_area, left_out_categories=left_out_categories)


def check_results(path: str, data: Any, images: Mapping[Any, tuple[int, int]],
                  id_map: Mapping[int, int], *, match_file_names: bool = False,
                  match_image_ids: bool = False, gt_file_names: Mapping[Any, str] | None = None,
                  ap_area: str = "mask",
                  left_out_categories: Mapping[int, str] | None = None) -> ResultsFile:
    """Check an already parsed results list (what :func:`read_results` does after parsing).

    Args:
        path: the file the list came from (for messages).
        data: the parsed JSON (or a list built in Python: RLE counts may then be bytes).
        images: the ground truth's image id -> (height, width).
        id_map: the ground truth's category id -> contiguous class id.
        match_file_names: take each result's image from its ``file_name``.
        match_image_ids: take each result's image from its ``image_id``, without asking.
        gt_file_names: image id -> ``file_name`` of the ground truth.
        ap_area: "mask" or "box".
        left_out_categories: category ids that are not classes -> why.

    Returns:
        The results, grouped per image. Integral float ids (``50.0``) are taken as integers,
        as pycocotools takes them.

    Raises:
        ResultsFileError: every problem found.
    """
    if ap_area not in AP_AREAS:
        raise ValueError(f"ap_area {ap_area!r}: expected one of {list(AP_AREAS)}")
    if match_file_names and match_image_ids:
        raise ValueError("match_file_names and match_image_ids exclude each other")
    if not isinstance(data, list):
        hint = ""
        if isinstance(data, dict):
            hint = (" (a COCO annotation file, or results wrapped in an object?"
                    + (" its keys: " + ", ".join(map(str, list(data)[:6])) if data else "") + ")")
        raise ResultsFileError(path, [ResultProblem(
            "not_a_list", f"holds {_kind(data)} at the top level; expected a COCO results list "
            f"[{{\"image_id\", \"category_id\", \"segmentation\", \"score\"}}, ...]{hint}")])
    if data and all(isinstance(r, dict) and "segmentation" not in r for r in data):
        raise ResultsFileError(path, [ResultProblem(
            "no_segmentation", f"none of the {len(data)} results has a 'segmentation': these "
            "are box (detection) results; SegContrast scores masks, so segm results are needed "
            "(e.g. MMDetection's *.segm.json, not *.bbox.json)")])
    warnings = []
    file_names = FileNames(gt_file_names or {}) if match_file_names else None
    if not match_file_names and not match_image_ids and gt_file_names is not None:
        choice = choose_matching(data, images, gt_file_names)
        if choice.refusal:
            raise ResultsFileError(path, [ResultProblem("image_id_ambiguous", choice.refusal)])
        if choice.contradictions:
            raise ResultsFileError(path, [
                ResultProblem("image_id_contradicts_file_name", message, index,
                              data[index].get("image_id"), data[index].get("category_id"))
                for index, message in choice.contradictions])
        if choice.by_file_name:
            file_names = FileNames(gt_file_names)
            warnings.append(f"{path}: {choice.warning}")
    problems: list[ResultProblem] = []
    by_image: dict[Any, list[int]] = {}
    first = data[0] if data else None
    has_boxes = isinstance(first, dict) and first.get("bbox") not in (None, [])
    missing_box = 0
    for index, result in enumerate(data):
        if file_names is None and _plainly_valid(result, images, id_map):
            by_image.setdefault(result["image_id"], []).append(index)
            if has_boxes and result.get("bbox") in (None, []):
                missing_box += 1
            continue
        if not isinstance(result, dict):
            problems.append(ResultProblem("result_invalid", f"is {_kind(result)}; expected an "
                                          "object with image_id, category_id, segmentation and "
                                          "score", index))
            continue
        found = _check_result(result, images, id_map, file_names, left_out_categories or {})
        image_id = found[0]
        shown_id = result.get("image_id")
        problems += [ResultProblem(code, message, index, shown_id, result.get("category_id"))
                     for code, message in found[1]]
        if not found[1]:
            by_image.setdefault(image_id, []).append(index)
            # what pycocotools compares equal, stored as the ground truth's own values
            result["image_id"] = image_id
            result["category_id"] = normalized_id(result["category_id"])
            if has_boxes and result.get("bbox") in (None, []):
                missing_box += 1
    if problems:
        raise ResultsFileError(path, problems)
    out = ResultsFile(path, data, by_image, has_boxes, ap_area, warnings)
    if not data:
        out.warnings.append(f"{path} holds no results (an empty list): every object counts as "
                            "missed, and every score is 0")
    if missing_box and ap_area == "box":
        out.warnings.append(f"{missing_box} results have no 'bbox' while the first one has: "
                            "their detection area for APs/APm/APl is their mask area "
                            "(pycocotools would stop at them)")
    return out


def _plainly_valid(result: Any, images: Mapping[Any, tuple[int, int]],
                   id_map: Mapping[int, int]) -> bool:
    """The common case, checked with few calls: a result that :func:`_check_result` accepts.

    Compressed RLE of the image's size, int ids, a float score, a box of plain numbers or none.
    False means "not this case" (the full check then runs and says what is wrong, if anything).
    """
    if type(result) is not dict:
        return False
    image_id, category = result.get("image_id"), result.get("category_id")
    score, segmentation = result.get("score"), result.get("segmentation")
    if type(image_id) is not int or type(category) is not int or type(score) is not float:
        return False
    size = images.get(image_id)
    if size is None or category not in id_map or not math.isfinite(score):
        return False
    if type(segmentation) is not dict or type(segmentation.get("counts")) is not str \
            or not segmentation["counts"].isascii():
        return False
    rle_size = segmentation.get("size")
    if (type(rle_size) is not list or len(rle_size) != 2 or type(rle_size[0]) is not int
            or type(rle_size[1]) is not int or rle_size[0] != size[0] or rle_size[1] != size[1]):
        return False
    box = result.get("bbox", None)
    if box is None and "bbox" not in result or box == []:
        return True
    return (type(box) is list and len(box) == 4 and set(map(type, box)) <= _PLAIN_NUMBERS
            and all(map(math.isfinite, box)) and box[2] >= 0 and box[3] >= 0)


def _category_problem(category: Any, id_map: Mapping[int, int],
                      left_out: Mapping[int, str]) -> tuple[str, str] | None:
    category = normalized_id(category)
    if _is_int(category) and category in id_map:
        return None
    if _is_int(category) and category in left_out:
        return ("unknown_category_id", f"category_id {category} is not a class of the ground "
                f"truth: {left_out[category]}")
    return ("unknown_category_id", f"category_id {_shown(category)} is not a category of the "
            f"ground truth ({_ids_listed(id_map, category)})")


def _check_result(result: dict, images: Mapping[Any, tuple[int, int]], id_map: Mapping[int, int],
                  file_names: FileNames | None, left_out: Mapping[int, str]
                  ) -> tuple[Any, list[tuple[str, str]]]:
    """One result's image id and its problems."""
    issues: list[tuple[str, str]] = []
    image_id = None
    if file_names is None and "image_id" not in result:
        issues.append(("missing_key", "no 'image_id'"))
    else:
        image_id, why = _image_lookup(images, file_names, result)
        if why:
            issues.append(("unknown_image_id", why))
    if "category_id" not in result:
        issues.append(("missing_key", "no 'category_id'"))
    else:
        issue = _category_problem(result["category_id"], id_map, left_out)
        if issue:
            issues.append(issue)
    score = result.get("score")
    if "score" not in result:
        issues.append(("bad_score", "no 'score'; every result needs its confidence"))
    elif not is_number(score):
        what = "not finite" if isinstance(score, float) else f"{_kind(score)}"
        issues.append(("bad_score", f"score is {_shown(score)} ({what}); expected a finite "
                       "number"))
    if "bbox" in result and result["bbox"] != []:
        issue = _check_bbox(result["bbox"])
        if issue:
            issues.append(issue)
    if "segmentation" not in result:
        issues.append(("no_segmentation", "no 'segmentation' (a box-only result); SegContrast "
                       "scores masks, so segm results are needed"))
    elif image_id is not None:
        height, width = images[image_id]
        issue = _check_segmentation(result["segmentation"], height, width)
        if issue:
            issues.append(issue)
    return image_id, issues
