"""The built-in datasets: where they live, registering them, making them on first use.

``shapes_train``/``shapes_val`` (synthetic) and ``dsb2018_train``/``dsb2018_val`` (real nuclei).

Generated data goes to ``$SEGCONTRAST_DATASETS`` when set, else to ``datasets/generated/`` of
the source checkout (git-ignored). Registration is lazy; :func:`ensure_builtin_dataset`
generates (``shapes``) or converts (``dsb2018``) a dataset the first time a run needs it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from detectron2.data import DatasetCatalog

from ..data.dsb2018 import convert_dsb2018
from ..data.shapes import GENERATOR_VERSION, generate_shapes
from .coco import register_coco_dataset

__all__ = [
    "BUILTIN_DATASETS",
    "DSB2018_SOURCE_ENV",
    "builtin_root",
    "dsb2018_source",
    "ensure_builtin_dataset",
    "register_builtin_datasets",
]

logger = logging.getLogger(__name__)

DATASETS_ENV = "SEGCONTRAST_DATASETS"
DSB2018_SOURCE_ENV = "SEGCONTRAST_DSB2018_SOURCE"
_REPO = Path(__file__).resolve().parents[4]


@dataclass(frozen=True)
class _Builtin:
    folder: str
    split: str


BUILTIN_DATASETS = {
    "shapes_train": _Builtin("shapes", "train"),
    "shapes_val": _Builtin("shapes", "val"),
    "dsb2018_train": _Builtin("dsb2018", "train"),
    "dsb2018_val": _Builtin("dsb2018", "val"),
}


def builtin_root() -> Path:
    """Folder holding the generated built-in datasets."""
    env = os.environ.get(DATASETS_ENV, "").strip()
    if env:
        return Path(env).expanduser().resolve()
    if (_REPO / "datasets").is_dir():
        return _REPO / "datasets" / "generated"
    return Path.cwd() / "datasets" / "generated"


def dsb2018_source() -> Path:
    """Folder of the original DSB2018 subset.

    ``$SEGCONTRAST_DSB2018_SOURCE`` when set, else ``shared/data/dsb2018`` next to the checkout.
    """
    env = os.environ.get(DSB2018_SOURCE_ENV, "").strip()
    return Path(env).expanduser() if env else _REPO.parent / "shared" / "data" / "dsb2018"


def _paths(name: str) -> tuple[Path, Path]:
    spec = BUILTIN_DATASETS[name]
    folder = builtin_root() / spec.folder
    return folder / f"{spec.split}.json", folder / "images"


def register_builtin_datasets() -> list[str]:
    """Register every built-in dataset that is not registered yet (no file is read).

    Returns:
        The names registered by this call.
    """
    registered = []
    for name in BUILTIN_DATASETS:
        if name in DatasetCatalog.list():
            continue
        json_file, image_root = _paths(name)
        register_coco_dataset(name, str(json_file), str(image_root))
        registered.append(name)
    return registered


def _shapes_up_to_date(json_file: Path) -> bool:
    if not json_file.is_file():
        return False
    try:
        with open(json_file) as f:
            info = json.load(f).get("info", {})
    except (OSError, ValueError):
        return False
    return info.get("generator_version") == GENERATOR_VERSION


def ensure_builtin_dataset(name: str) -> None:
    """Make a built-in dataset's files if they are missing or stale; other names are left alone.

    ``shapes`` is regenerated when its generator changed; ``dsb2018`` is converted from its
    source folder (a no-op when the conversion is up to date).

    Args:
        name: a dataset name, e.g. ``shapes_train``.

    Raises:
        DatasetValidationError: ``dsb2018`` was never converted and its source is missing
            (``$SEGCONTRAST_DSB2018_SOURCE`` names another folder).
    """
    if name not in BUILTIN_DATASETS:
        return
    json_file, _ = _paths(name)
    folder = json_file.parent
    if BUILTIN_DATASETS[name].folder == "shapes":
        if not _shapes_up_to_date(json_file):
            logger.info("Generating the built-in shapes dataset in %s", folder)
            generate_shapes(folder)
        return
    source = dsb2018_source()
    # Without the source, an existing conversion is used as it is; with neither, the converter
    # raises its "dsb2018_source_missing" error naming the folder.
    if source.is_dir() or not json_file.is_file():
        convert_dsb2018(source, folder)
