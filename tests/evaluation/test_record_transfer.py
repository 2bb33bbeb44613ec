"""What workers send back: a pickled EvalState gives back every record exactly, with its arrays
packed in a few buffers (record_transfer), and every kind of value a record can hold."""

import io
import math
import pickle
from dataclasses import dataclass, fields, is_dataclass
from multiprocessing.reduction import ForkingPickler
from typing import Any

import numpy as np
import pycocotools.mask as mask_util
import pytest
from segcontrast.evaluation.accumulator import Accumulator
from segcontrast.evaluation.ground_truth import GroundTruthSet
from segcontrast.evaluation.predictions import Predictions
from segcontrast.evaluation.record_transfer import RecordBatch
from segcontrast.evaluation.records import EvalState

H, W = 24, 32


def assert_same(original: Any, copy: Any, where: str = "value") -> None:
    """Equal types, dtypes, shapes and values (NaN equal to NaN), field by field."""
    assert type(copy) is type(original), where
    if isinstance(original, np.ndarray):
        assert copy.dtype == original.dtype and copy.shape == original.shape, where
        if original.dtype.hasobject:
            assert_same(original.tolist(), copy.tolist(), where)
        else:
            assert copy.tobytes() == np.ascontiguousarray(original).tobytes(), where
        assert copy.flags.writeable, where
    elif is_dataclass(original):
        assert vars(copy).keys() == vars(original).keys(), where
        for name, value in vars(original).items():
            assert_same(value, vars(copy)[name], f"{where}.{name}")
    elif isinstance(original, (list, tuple)):
        assert len(copy) == len(original), where
        for i, (a, b) in enumerate(zip(original, copy, strict=True)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(original, dict):
        assert list(copy) == list(original), where
        for key, value in original.items():
            assert_same(value, copy[key], f"{where}[{key!r}]")
    elif isinstance(original, float) and math.isnan(original):
        assert math.isnan(copy), where
    else:
        assert copy == original, where


def _arrays_in(value: Any) -> list[np.ndarray]:
    if isinstance(value, np.ndarray):
        return [value]
    if is_dataclass(value):
        return [a for v in vars(value).values() for a in _arrays_in(v)]
    if isinstance(value, (list, tuple)):
        return [a for v in value for a in _arrays_in(v)]
    if isinstance(value, dict):
        return [a for v in value.values() for a in _arrays_in(v)]
    return []


class _ArrayCounter(pickle.Pickler):
    """Counts the numpy arrays pickled one by one."""

    def __init__(self, file) -> None:
        super().__init__(file, protocol=pickle.DEFAULT_PROTOCOL)
        self.arrays = 0

    def reducer_override(self, obj):
        if type(obj) is np.ndarray:
            self.arrays += 1
        return NotImplemented


def _arrays_pickled_one_by_one(value: Any) -> int:
    pickler = _ArrayCounter(io.BytesIO())
    pickler.dump(value)
    return pickler.arrays


def _rle(mask: np.ndarray) -> dict:
    encoded = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    encoded["counts"] = encoded["counts"].decode("ascii")
    return encoded


def _box(y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _ground_truth() -> GroundTruthSet:
    """Images with string and integer ids (dataset dicts: a COCO file's ids are integers);
    one image without annotations, one with a crowd region."""
    objects = {
        "scene-a": [(0, _box(2, 2, 10, 12), 0), (1, _box(12, 14, 22, 30), 0),
                    (0, _box(0, 20, 6, 31), 1)],
        "scene-b": [(1, _box(4, 4, 16, 16), 0)],
        7: [(0, _box(3, 3, 9, 9), 0), (1, _box(10, 10, 20, 20), 0)],
        9: [],
    }
    dicts = []
    for image_id, found in objects.items():
        annotations = []
        for category, mask, crowd in found:
            r = _rle(mask)
            annotations.append({"id": len(annotations) + 1, "category_id": category,
                                "segmentation": r, "area": float(mask.sum()),
                                "bbox": mask_util.toBbox(r).tolist(), "bbox_mode": 1,
                                "iscrowd": crowd})
        dicts.append({"image_id": image_id, "file_name": f"{image_id}.png", "height": H,
                      "width": W, "annotations": annotations})
    return GroundTruthSet.from_records("transfer", dicts, ["one", "two"], {1: 0, 2: 1})


def _states(tmp_path) -> dict[str, EvalState]:
    """An instance model's state (every record kind) and a semantic model's."""
    gt = _ground_truth()
    model = Accumulator(gt, panoptic_output_dir=str(tmp_path / "panoptic"),
                                  num_worst_images=3, score_threshold=0.2)
    model.add("scene-a", scores=[0.9, 0.8, 0.1, 0.6],
              masks=np.stack([_box(2, 2, 10, 11), _box(12, 14, 20, 30), _box(0, 0, 3, 3),
                              _box(14, 0, 20, 6)]), category_ids=[1, 1, 2, 2])
    labels = np.zeros((H, W), np.uint8)
    labels[4:16, 4:14] = 2
    model.add("scene-b", scores=[0.7], masks=_box(4, 4, 16, 15)[None], category_ids=[2],
              semantic=labels)
    model.add(7, scores=[], masks=np.zeros((0, H, W), bool), category_ids=[])  # no predictions
    model.add(9, scores=[0.5, 0.4], masks=np.stack([_box(1, 1, 5, 5), _box(6, 6, 9, 9)]),
              category_ids=[1, 2])  # no ground truth
    semantic = Accumulator(gt)
    for image_id in ("scene-a", 7, 9):
        semantic.add_predictions(image_id, Predictions.empty(H, W, labels, has_instances=False))
    return {"instances": model.state, "semantic": semantic.state}


def test_a_pickled_state_gives_back_every_record_exactly(tmp_path):
    states = _states(tmp_path)
    records = {r.image_id: r for r in states["instances"].images}
    # the kinds of records this test is about
    assert records[7].pred_classes.size == 0 and records[9].gt_classes.size == 0
    assert records["scene-a"].ap.gt_crowd.any()
    assert records["scene-b"].semantic_counts_from_instances is not None
    assert all(r.accounting is not None and r.panoptic_segments for r in records.values())
    assert records["scene-a"].accounting.gt_iou.ndim == 2
    assert states["instances"].worst and states["instances"].accounting_confusion is not None
    assert not any(r.has_instances or r.panoptic is not None or r.accounting is not None
                   for r in states["semantic"].images)
    for state in states.values():
        sent = ForkingPickler.dumps(state)  # what a worker's pool sends
        assert_same(state, pickle.loads(sent), "state")
        # the records' arrays travel in one buffer: those pickled one by one are the state's
        # own matrices and the worst images' packed crops, however many images there are
        own = [state.confusion, state.confusion_from_instances, state.accounting_confusion]
        crops = sum(len(w.bits) for w in state.worst)
        assert _arrays_pickled_one_by_one(state) == crops + sum(m is not None for m in own)
        assert len(_arrays_in(state.images)) > 10 * len(state.images)


@dataclass
class _Inner:
    values: np.ndarray
    note: Any


@dataclass
class _NoFields:
    pass


@dataclass
class _Row:
    key: Any
    scalar: np.ndarray
    empty_2d: np.ndarray
    fortran: np.ndarray
    flags: np.ndarray
    big_endian: np.ndarray
    text: np.ndarray
    objects: np.ndarray
    structured: np.ndarray
    mixed_dtypes: np.ndarray
    mixed_dims: np.ndarray
    sometimes: np.ndarray | None
    inner: _Inner | None
    never: None
    number: float
    numpy_number: np.float32
    table: dict
    crops: list
    marker: _NoFields


def _rows() -> list[_Row]:
    rows = []
    for i in range(4):
        rows.append(_Row(
            key=f"image-{i}" if i % 2 else i,
            scalar=np.array(i * 1.5),
            empty_2d=np.zeros((0, i + 1), np.int32),
            fortran=np.asfortranarray(np.arange(6 * (i + 1), dtype=np.float32).reshape(
                2 * (i + 1), 3)),
            flags=np.arange(i + 2) % 2 == 0,
            big_endian=np.arange(i, dtype=">i4"),
            text=np.array(["a", "bc", "def"][: i % 3 + 1], "<U3"),
            objects=np.array([None, {"x": i}], object),
            structured=np.zeros(2, [("a", "<i4"), ("b", "<f8")]),
            mixed_dtypes=np.arange(3, dtype=np.int64 if i else np.int16),
            mixed_dims=np.zeros((i,) * (i % 2 + 1)),
            sometimes=None if i in (0, 2) else np.full(i, np.nan),
            inner=None if i == 1 else _Inner(np.arange(i, dtype=np.uint8), None if i else "x"),
            never=None,
            number=math.nan if i == 2 else float(i),
            numpy_number=np.float32(i / 3),
            table={"n_gt": i, "missed": 0} if i else {},
            crops=[np.ones((2, k + 1), bool) for k in range(i)],
            marker=_NoFields(),
        ))
    rows[3].extra = "an attribute that is not a field"  # type: ignore[attr-defined]
    return rows


@pytest.mark.parametrize("count", [0, 1, 3, 4])
def test_every_kind_of_value_comes_back_exactly(count):
    rows = _rows()[:count]
    # protocol 5: with 4, pickle itself gives big-endian arrays back in native order (the
    # values columns and the rows with an extra attribute travel by pickle)
    batch = pickle.loads(pickle.dumps(RecordBatch(rows), protocol=5))
    back = batch.unpack()
    assert len(batch) == count
    assert_same(rows, back, "rows")
    arrays = [a for a in _arrays_in(back) if a.size]
    for i, a in enumerate(arrays):  # writing into one array changes no other
        assert not any(np.shares_memory(a, b) for b in arrays[i + 1 :])


def test_the_arrays_of_uniform_fields_are_packed():
    rows = _rows()[:3]  # no extra attribute: the rows' fields are columns
    batch = RecordBatch(rows)
    # one by one: only the columns that are not arrays of one dtype and number of dimensions
    # (object and structured dtypes, mixed dtypes, lists of arrays, the 0-d scalars are not)
    loose = sum(len(_arrays_in([getattr(r, f.name) for r in rows])) for f in fields(_Row)
                if f.name in ("objects", "structured", "mixed_dtypes", "mixed_dims", "crops"))
    assert _arrays_pickled_one_by_one(batch) == loose
