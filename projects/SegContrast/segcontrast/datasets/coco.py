"""COCO-format datasets: registering them by name and validating them before they are used.

Registration is lazy and cheap; :func:`validate_dataset` reads and checks everything once per
process, sets the metadata that depends on the file (classes, id map, mask format) and caches
the dataset dicts that ``DatasetCatalog.get(name)`` then returns.
"""

from __future__ import annotations

import logging
import os
import pickle
from dataclasses import dataclass
from typing import Any

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from ..data.coco_loader import LoadedCOCO, load_coco_file
from ..data.validation import DatasetValidationError, ValidationReport, log_corrections

__all__ = [
    "parse_dataset_arg",
    "register_coco_dataset",
    "register_datasets_from_config",
    "dataset_dicts_for_reading",
    "segcontrast_dataset_names",
    "unregister_coco_dataset",
    "validate_dataset",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Source:
    json_file: str
    image_root: str
    allow_outside_root: bool
    check_image_files: bool = True
    image_files_optional: bool = False


_SOURCES: dict[str, _Source] = {}
_LOADED: dict[str, LoadedCOCO] = {}


def parse_dataset_arg(spec: str) -> tuple[str, str, str]:
    """Split a command-line ``NAME=JSON:IMAGE_ROOT`` into its parts.

    The JSON path ends at the first ``:`` that follows ``.json``; when there is no ``.json:``
    it ends at the last ``:``. Paths are returned as given (relative to the working folder).

    Args:
        spec: the ``--dataset`` value.

    Returns:
        ``(name, json_file, image_root)``.

    Raises:
        DatasetValidationError: code "bad_dataset_arg", saying what was expected.
    """
    usage = "expected NAME=JSON:IMAGE_ROOT, e.g. mine_train=ann/train.json:images/"

    def fail(why: str) -> DatasetValidationError:
        return DatasetValidationError.single("bad_dataset_arg", f"--dataset {spec!r}: {why}; "
                                             f"{usage}", spec)

    if not isinstance(spec, str) or "=" not in spec:
        raise fail("no '=' after the dataset name")
    name, paths = spec.split("=", 1)
    name = name.strip()
    if not name or any(c.isspace() for c in name):
        raise fail(f"the dataset name {name!r} is empty or holds whitespace")
    lowered = paths.lower()
    cut = lowered.find(".json:")
    split_at = cut + len(".json") if cut >= 0 else paths.rfind(":")
    if split_at < 0:
        raise fail("no ':' between the JSON file and the image root")
    json_file, image_root = paths[:split_at], paths[split_at + 1:]
    if not json_file.strip():
        raise fail("the JSON file is empty")
    if not image_root.strip():
        raise fail("the image root is empty")
    return name, json_file, image_root


def register_coco_dataset(name: str, json_file: str | os.PathLike, image_root: str | os.PathLike,
                          *, allow_outside_root: bool = False,
                          check_image_files: bool = True,
                          image_files_optional: bool = False) -> None:
    """Register a COCO-format dataset under ``name`` (lazy: nothing is read yet).

    Sets metadata ``json_file``, ``image_root`` (absolute paths), ``evaluator_type="coco"`` and
    ``allow_outside_root``. ``DatasetCatalog.get(name)`` validates first (see
    :func:`validate_dataset`) and returns the validated dicts.

    Args:
        name: the dataset name used in ``DATASETS.TRAIN/TEST``.
        json_file: the COCO instances file.
        image_root: the folder that image ``file_name``s are relative to.
        allow_outside_root: accept ``file_name``s that leave ``image_root``.
        check_image_files: False for a dataset whose images are never read (validation then
            checks the JSON alone; sizes are the JSON's).
        image_files_optional: the images are only drawn (``tools/evaluate.py --images``): a
            file that is missing, unreadable or of another size is counted as changed, not
            fatal, and an image without ``height``/``width`` takes its file's size.

    Raises:
        DatasetValidationError: ``name`` is already registered with other files (both are
            named), or by something other than this function.
    """
    source = _Source(os.path.abspath(os.fspath(json_file)), os.path.abspath(os.fspath(image_root)),
                     bool(allow_outside_root), bool(check_image_files),
                     bool(image_files_optional))
    previous = _SOURCES.get(name)
    if previous == source:
        return
    if previous is not None:
        raise DatasetValidationError.single(
            "dataset_name_taken",
            f"dataset {name!r} is already registered with {previous.json_file} (images "
            f"{previous.image_root}, allow_outside_root={previous.allow_outside_root}); cannot "
            f"register it again with {source.json_file} (images {source.image_root}, "
            f"allow_outside_root={source.allow_outside_root}); choose another name",
            source.json_file,
        )
    if name in DatasetCatalog.list():
        raise DatasetValidationError.single(
            "dataset_name_taken",
            f"dataset {name!r} is already registered by Detectron2 or another module; cannot "
            f"register {source.json_file} under that name; choose another name",
            source.json_file,
        )
    DatasetCatalog.register(name, lambda: _dataset_dicts(name))
    MetadataCatalog.get(name).set(
        json_file=source.json_file,
        image_root=source.image_root,
        evaluator_type="coco",
        allow_outside_root=source.allow_outside_root,
    )
    _SOURCES[name] = source


def segcontrast_dataset_names() -> list[str]:
    """Names registered by :func:`register_coco_dataset` in this process, sorted."""
    return sorted(_SOURCES)


def unregister_coco_dataset(name: str) -> None:
    """Forget a dataset registered by :func:`register_coco_dataset` (for tests and tools)."""
    if _SOURCES.pop(name, None) is not None:
        _LOADED.pop(name, None)
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def _set_metadata(name: str, loaded: LoadedCOCO) -> None:
    meta = MetadataCatalog.get(name)
    values: dict[str, Any] = {
        "thing_classes": list(loaded.thing_classes),
        "thing_dataset_id_to_contiguous_id": dict(loaded.id_map),
        "mask_format": loaded.report.mask_format,
    }
    for key, value in values.items():
        old = meta.get(key, None)
        if old is not None and old != value:
            raise DatasetValidationError.single(
                "metadata_conflict",
                f"dataset {name!r}: metadata {key} was already set to {old!r}, but the file "
                f"gives {value!r}",
                loaded.report.json_file,
            )
    meta.set(**{k: v for k, v in values.items() if meta.get(k, None) is None})


def validate_dataset(name: str) -> ValidationReport:
    """Validate a dataset registered with :func:`register_coco_dataset` (once per process).

    Sets metadata ``thing_classes``, ``thing_dataset_id_to_contiguous_id`` and ``mask_format``
    and logs the dropped and changed counts (and the bit depths, when an image is deeper than
    8 bits).

    Args:
        name: the registered name.

    Returns:
        The report (only dropped items, if any).

    Raises:
        DatasetValidationError: a fatal problem (every problem is in ``err.report``), or
            ``name`` is not a dataset registered by this module.
    """
    if name not in _SOURCES:
        known = sorted(_SOURCES)
        raise DatasetValidationError.single(
            "dataset_unknown",
            f"dataset {name!r} is not a registered COCO dataset (registered: "
            f"{', '.join(known) or 'none'}); register it with --dataset NAME=JSON:IMAGE_ROOT "
            "or DATASETS.COCO",
            name,
        )
    loaded = _LOADED.get(name)
    if loaded is None:
        source = _SOURCES[name]
        loaded = load_coco_file(source.json_file, source.image_root,
                                allow_outside_root=source.allow_outside_root,
                                check_image_files=source.check_image_files,
                                image_files_optional=source.image_files_optional,
                                box_mode=BoxMode.XYWH_ABS)
        _LOADED[name] = loaded
        if loaded.report.ok:
            _set_metadata(name, loaded)
            log_corrections(loaded.report, f"Dataset {name!r}", logger)
    if not loaded.report.ok:
        raise DatasetValidationError(
            loaded.report, f"dataset {name!r}: " + loaded.report.format_summary()
        )
    return loaded.report


def _dataset_dicts(name: str) -> list[dict]:
    validate_dataset(name)
    # Callers may change the dicts they get; the cached ones must stay as validated. A pickle
    # round trip is a deep copy, several times faster than copy.deepcopy on these dicts.
    return pickle.loads(pickle.dumps(_LOADED[name].dicts, protocol=pickle.HIGHEST_PROTOCOL))


def dataset_dicts_for_reading(name: str) -> list[dict] | None:
    """The validated dicts themselves, not a copy, for callers that only read them.

    Args:
        name: any registered dataset name.

    Returns:
        The cached dicts of a dataset registered with :func:`register_coco_dataset` (they must
        not be changed), or None for datasets registered otherwise.
    """
    if name not in _SOURCES:
        return None
    validate_dataset(name)
    return _LOADED[name].dicts


def register_datasets_from_config(cfg: Any, *, allow_outside_root: bool = False) -> list[str]:
    """Register every ``[name, json_file, image_root]`` of ``cfg.DATASETS.COCO``.

    Args:
        cfg: a config with SegContrast's keys (without ``DATASETS.COCO`` nothing is done).
        allow_outside_root: passed to :func:`register_coco_dataset`.

    Returns:
        The registered names, in config order.

    Raises:
        DatasetValidationError: an entry is not three non-empty strings, or a name clash.
    """
    entries = cfg.DATASETS.get("COCO", None) or []
    names = []
    for entry in entries:
        if (not isinstance(entry, (list, tuple)) or len(entry) != 3
                or not all(isinstance(v, str) and v.strip() for v in entry)):
            raise DatasetValidationError.single(
                "bad_config_entry",
                f"DATASETS.COCO entry {entry!r}: expected [name, json_file, image_root], three "
                "non-empty strings",
                "DATASETS.COCO",
            )
        name, json_file, image_root = entry
        register_coco_dataset(name, json_file, image_root, allow_outside_root=allow_outside_root)
        names.append(name)
    return names
