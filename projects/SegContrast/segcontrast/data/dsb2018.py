"""Converting the DSB2018 nuclei subset (one PNG per nucleus) to COCO JSON with RLE masks.

Source layout (``../shared/data/dsb2018`` next to the checkout, see its SOURCE.md)::

    stage1_train/<image_id>/images/<image_id>.png   RGBA microscopy image
    stage1_train/<image_id>/masks/<mask_id>.png     one 0/255 mask per nucleus

Output (``datasets/prepare_dsb2018.py`` and the built-in registration write to the git-ignored
``datasets/generated/dsb2018``)::

    images/<image_id>.png   the image as RGB (the alpha channel is opaque and dropped)
    train.json              COCO instances, compressed RLE, one category "nucleus"
    val.json

The split is fixed by ``seed``: the sorted image ids are shuffled with ``random.Random(seed)``
and the first ``round(n * val_fraction)`` go to val. A nucleus pixel claimed by two masks (one
source image has two masks that overlap by one pixel) is kept in the first mask in file-name
order only, so instances never overlap. Converting again is a no-op while the source files,
the parameters and this converter are unchanged; the JSON files are written last and
atomically, so an interrupted conversion is redone on the next call.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pycocotools.mask as mask_util
from PIL import Image
from tqdm import tqdm

from ..utils import atomic_write
from .validation import DatasetValidationError

__all__ = [
    "DSB2018_CATEGORY",
    "convert_dsb2018",
    "dsb2018_paths",
]

logger = logging.getLogger(__name__)

# Bump when the output of the converter changes, so that existing outputs are redone.
CONVERTER_VERSION = 1
DSB2018_CATEGORY = {"id": 1, "name": "nucleus", "supercategory": "nucleus"}


def dsb2018_paths(output_dir: str | os.PathLike) -> dict[str, str]:
    """Where :func:`convert_dsb2018` writes, without converting anything.

    Returns:
        ``{"train": json, "val": json, "image_root": folder}`` as absolute paths; register
        ``dsb2018_train`` with (train, image_root) and ``dsb2018_val`` with (val, image_root).
    """
    out = Path(output_dir).resolve()
    return {
        "train": str(out / "train.json"),
        "val": str(out / "val.json"),
        "image_root": str(out / "images"),
    }


def _stage_dir(source_dir: Path) -> Path:
    stage = source_dir / "stage1_train"
    if stage.is_dir():
        return stage
    if source_dir.is_dir() and any((p / "images").is_dir() for p in source_dir.iterdir()):
        return source_dir
    raise DatasetValidationError.single(
        "dsb2018_source_missing",
        f"DSB2018 source {source_dir} has no stage1_train/<id>/images/<id>.png folders; "
        "pass --source (or set SEGCONTRAST_DSB2018_SOURCE) to the folder holding stage1_train",
        str(source_dir),
    )


def _source_items(stage: Path) -> list[tuple[str, Path, list[Path]]]:
    items = []
    for folder in sorted(p for p in stage.iterdir() if p.is_dir()):
        image = folder / "images" / f"{folder.name}.png"
        if not image.is_file():
            raise DatasetValidationError.single(
                "dsb2018_source_invalid", f"{folder} has no images/{folder.name}.png",
                str(folder))
        masks = sorted((folder / "masks").glob("*.png"))
        items.append((folder.name, image, masks))
    if not items:
        raise DatasetValidationError.single(
            "dsb2018_source_missing", f"{stage} holds no image folders", str(stage))
    return items


def _fingerprint(items: list[tuple[str, Path, list[Path]]], params: dict[str, Any]) -> str:
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode())
    for _, image, masks in items:
        for path in (image, *masks):
            st = path.stat()
            digest.update(f"{path.parent.parent.name}/{path.name}:{st.st_size}:{st.st_mtime_ns}\n"
                          .encode())
    return digest.hexdigest()


def _up_to_date(paths: dict[str, str], fingerprint: str) -> bool:
    for split in ("train", "val"):
        try:
            with open(paths[split], encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            return False
        if data.get("info", {}).get("segcontrast_fingerprint") != fingerprint:
            return False
        root = Path(paths["image_root"])
        if not all((root / img["file_name"]).is_file() for img in data.get("images", [])):
            return False
    return True


def _instance_annotations(source_id: str, masks: list[Path], height: int, width: int
                          ) -> tuple[list[dict], int, int]:
    """RLE annotations of one image; also the overlapping pixels removed and empty masks."""
    claimed = np.zeros((height, width), dtype=bool)
    annotations, overlap, empty = [], 0, 0
    for path in masks:
        with Image.open(path) as im:
            mask = np.asarray(im.convert("L")) > 127
        if mask.shape != (height, width):
            raise DatasetValidationError.single(
                "dsb2018_source_invalid",
                f"mask {path} is {mask.shape[1]}x{mask.shape[0]}, its image {source_id} is "
                f"{width}x{height}", str(path))
        overlap += int((mask & claimed).sum())
        mask &= ~claimed
        claimed |= mask
        if not mask.any():
            empty += 1
            continue
        rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
        annotations.append({
            "category_id": DSB2018_CATEGORY["id"],
            "segmentation": {"size": [height, width], "counts": rle["counts"].decode("ascii")},
            "area": float(mask_util.area(rle)),
            "bbox": [float(v) for v in mask_util.toBbox(rle)],
            "iscrowd": 0,
            "dsb2018_mask": path.stem,
        })
    return annotations, overlap, empty


def convert_dsb2018(source_dir: str | os.PathLike, output_dir: str | os.PathLike, *,
                    val_fraction: float = 0.2, seed: int = 0, force: bool = False,
                    progress: bool = True) -> dict[str, str]:
    """Convert DSB2018 to COCO JSON (RLE) with a fixed train/val split; skip if up to date.

    Args:
        source_dir: the folder holding ``stage1_train`` (or ``stage1_train`` itself).
        output_dir: where images and JSON go.
        val_fraction: share of the images in val, in (0, 1).
        seed: seed of the split.
        force: convert even when the outputs are up to date.
        progress: show a progress bar.

    Returns:
        ``{"train": json, "val": json, "image_root": folder}`` (see :func:`dsb2018_paths`).

    Raises:
        DatasetValidationError: the source is missing or malformed.
        ValueError: ``val_fraction`` outside (0, 1).
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    source, out = Path(source_dir), Path(output_dir)
    paths = dsb2018_paths(out)
    items = _source_items(_stage_dir(source))
    params = {"val_fraction": val_fraction, "seed": seed, "version": CONVERTER_VERSION}
    fingerprint = _fingerprint(items, params)
    if not force and _up_to_date(paths, fingerprint):
        logger.info(f"DSB2018 in {out} is up to date; nothing to convert.")
        return paths

    order = [source_id for source_id, _, _ in items]
    random.Random(seed).shuffle(order)
    val_ids = set(order[: max(1, round(len(order) * val_fraction))])
    splits: dict[str, dict[str, list]] = {s: {"images": [], "annotations": []}
                                          for s in ("train", "val")}
    image_root = Path(paths["image_root"])
    next_ann_id, overlap, empty = 1, 0, 0
    for image_id, (source_id, image_path, masks) in enumerate(
        tqdm(items, desc="dsb2018", unit="image", disable=not progress), start=1
    ):
        with Image.open(image_path) as im:
            rgb = im.convert("RGB")
        width, height = rgb.size
        atomic_write(image_root / f"{source_id}.png", lambda f, im=rgb: im.save(f, "PNG"))
        anns, n_overlap, n_empty = _instance_annotations(source_id, masks, height, width)
        overlap, empty = overlap + n_overlap, empty + n_empty
        split = splits["val" if source_id in val_ids else "train"]
        split["images"].append({"id": image_id, "file_name": f"{source_id}.png",
                                "height": height, "width": width})
        for ann in anns:
            ann.update(id=next_ann_id, image_id=image_id)
            next_ann_id += 1
            split["annotations"].append(ann)
    for name, split in splits.items():
        data = {
            "info": {"description": f"DSB2018 stage-1 nuclei subset, {name} split, converted "
                     "by segcontrast.data.dsb2018", "source": str(source), "seed": seed,
                     "val_fraction": val_fraction, "segcontrast_fingerprint": fingerprint},
            "images": split["images"],
            "annotations": split["annotations"],
            "categories": [dict(DSB2018_CATEGORY)],
        }
        atomic_write(paths[name], lambda f, d=data: json.dump(d, f), mode="w")
    logger.info(
        f"DSB2018: {len(splits['train']['images'])} train / {len(splits['val']['images'])} val "
        f"images, {next_ann_id - 1} nuclei; {overlap} pixel(s) claimed by two masks kept in the "
        f"first; {empty} empty mask(s) skipped. Written to {out}."
    )
    return paths
