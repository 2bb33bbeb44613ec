"""The built-in synthetic ``shapes`` dataset.

Circles, squares and triangles on textured backgrounds, with many touching and overlapping
objects of one class.

Touching objects of the same class are where semantic and instance segmentation part ways: a
model that paints both with one mask is right about every pixel's class and wrong about the
objects. The generator places a large share of objects against an existing one, mostly of the
same class, so that every image has such pairs.

Output (COCO format, compressed RLE masks, category ids 1..3):

    <root>/images/train/000000.png ...   <root>/train.json
    <root>/images/val/000000.png ...     <root>/val.json

Generation is deterministic for a given seed (a NumPy ``Generator`` per image) and atomic: each
JSON is written to a temporary file and renamed last, so a JSON that exists is complete.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import pycocotools.mask as mask_util
from PIL import Image
from tqdm import tqdm

from ..utils import atomic_write

__all__ = ["SHAPE_CLASSES", "ShapesConfig", "generate_shapes", "render_shapes_image"]

SHAPE_CLASSES = ("circle", "square", "triangle")
# Bumped whenever the generator's output changes, so that stale data is regenerated.
GENERATOR_VERSION = 2
# Each class's hue band (OpenCV hue, 0..179): the class shows in the colour as well as the
# outline, so that a small model learns the classes within minutes on a CPU. Objects of one class
# then look alike, and touching ones are told apart only by their outlines.
_CLASS_HUES = ((0, 15), (50, 75), (105, 130))


@dataclass(frozen=True)
class ShapesConfig:
    """What :func:`generate_shapes` makes.

    Attributes:
        num_train: images in the train split.
        num_val: images in the val split.
        image_size: side of the square images, in pixels.
        min_objects: fewest objects per image.
        max_objects: most objects per image.
        touching_fraction: share of objects placed against an existing object.
        same_class_fraction: share of those that take the class of the object they touch.
        seed: seed of everything random.
    """

    num_train: int = 240
    num_val: int = 60
    image_size: int = 128
    min_objects: int = 4
    max_objects: int = 9
    touching_fraction: float = 0.6
    same_class_fraction: float = 0.8
    seed: int = 0


@dataclass
class _Shape:
    category: int  # 0-based index into SHAPE_CLASSES
    center: tuple[float, float]
    radius: float
    angle: float
    # Index of a touching same-class object whose colour this one copies (None: own colour).
    twin_of: int | None = None


def _draw_mask(shape: _Shape, size: int) -> np.ndarray:
    """(size, size) uint8 mask of a shape (1 inside)."""
    mask = np.zeros((size, size), dtype=np.uint8)
    cx, cy = shape.center
    if shape.category == 0:
        cv2.circle(mask, (round(cx * 16), round(cy * 16)), round(shape.radius * 16), 1, -1,
                   lineType=cv2.LINE_8, shift=4)
        return mask
    corners = 4 if shape.category == 1 else 3
    # A square's "radius" is its half side, so it covers about the area of a circle of that
    # radius; a triangle's is its circumradius, enlarged so that it is not much smaller.
    scale = np.sqrt(2.0) if corners == 4 else 1.25
    angles = shape.angle + np.arange(corners) * (2 * np.pi / corners)
    points = np.stack([cx + scale * shape.radius * np.cos(angles),
                       cy + scale * shape.radius * np.sin(angles)], axis=1)
    cv2.fillPoly(mask, [np.round(points * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return mask


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) float texture: a smooth greyish field, stripes and pixel noise."""
    base = rng.uniform(70, 170) + rng.normal(0, 8, size=3)
    coarse = rng.normal(0, 20, size=(5, 5, 1)).repeat(3, axis=2).astype(np.float32)
    smooth = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    theta = rng.uniform(0, np.pi)
    period = rng.uniform(6, 20)
    stripes = 12 * np.sin((xx * np.cos(theta) + yy * np.sin(theta)) * 2 * np.pi / period)
    noise = rng.normal(0, 8, size=(size, size, 3))
    return base + smooth + stripes[..., None] + noise


def _class_colour(rng: np.random.Generator, category: int) -> np.ndarray:
    """An RGB colour (3,) float in the class's hue band, saturated enough to stand out."""
    low, high = _CLASS_HUES[category]
    hsv = np.array([[[rng.uniform(low, high), rng.uniform(150, 255), rng.uniform(110, 255)]]],
                   dtype=np.float32)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float64)


def _place(rng: np.random.Generator, shapes: list[_Shape], cfg: ShapesConfig) -> _Shape:
    radius = float(rng.uniform(0.07, 0.15) * cfg.image_size)
    angle = float(rng.uniform(0, 2 * np.pi))
    if shapes and rng.random() < cfg.touching_fraction:
        index = int(rng.integers(len(shapes)))
        neighbour = shapes[index]
        same = rng.random() < cfg.same_class_fraction
        category = neighbour.category if same else int(rng.integers(len(SHAPE_CLASSES)))
        direction = rng.uniform(0, 2 * np.pi)
        # Slightly less than the sum of radii: the two outlines touch or overlap a little.
        distance = (neighbour.radius + radius) * rng.uniform(0.8, 1.0)
        center = (neighbour.center[0] + distance * np.cos(direction),
                  neighbour.center[1] + distance * np.sin(direction))
        # Half of the same-class neighbours also share the colour: only the outline tells
        # the two objects apart, the hard case for instance segmentation.
        twin_of = index if same and rng.random() < 0.5 else None
        return _Shape(category, (float(center[0]), float(center[1])), radius, angle, twin_of)
    else:
        category = int(rng.integers(len(SHAPE_CLASSES)))
        margin = radius * 0.5
        center = tuple(rng.uniform(margin, cfg.image_size - margin, size=2))
    return _Shape(category, (float(center[0]), float(center[1])), radius, angle)


def render_shapes_image(
    rng: np.random.Generator, cfg: ShapesConfig
) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """One image and its objects.

    Objects are drawn in order, later ones occluding earlier ones; each object keeps at least
    half of its own area visible and at least 30 pixels (placements that would break this are
    retried).

    Args:
        rng: the random generator (consumed).
        cfg: sizes and fractions.

    Returns:
        (image, objects): image is (S, S, 3) uint8 RGB; objects is a list of
        (category index, (S, S) bool visible mask).
    """
    size = cfg.image_size
    target = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    shapes: list[_Shape] = []
    full_masks: list[np.ndarray] = []
    labels = np.full((size, size), -1, dtype=np.int32)
    for _ in range(target * 10):
        if len(shapes) == target:
            break
        shape = _place(rng, shapes, cfg)
        mask = _draw_mask(shape, size).astype(bool)
        if mask.sum() < 30:
            continue
        trial = labels.copy()
        trial[mask] = len(shapes)
        visible = np.bincount(trial.ravel() + 1, minlength=len(shapes) + 2)[1:]
        own = [m.sum() for m in full_masks] + [mask.sum()]
        if all(visible[k] >= max(30, 0.5 * own[k]) for k in range(len(own))):
            shapes.append(shape)
            full_masks.append(mask)
            labels = trial
    image = _background(rng, size)
    colours: list[np.ndarray] = []
    for k, shape in enumerate(shapes):
        colour = _class_colour(rng, shape.category)
        if shape.twin_of is not None:
            colour = np.clip(colours[shape.twin_of] + rng.normal(0, 10, size=3), 0, 255)
        colours.append(colour)
        shading = rng.normal(0, 6, size=(size, size, 3))
        region = labels == k
        image[region] = colour + shading[region]
    objects = [(shape.category, labels == k) for k, shape in enumerate(shapes)]
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), objects


def _annotation(ann_id: int, image_id: int, category: int, mask: np.ndarray) -> dict:
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    x, y, w, h = (float(v) for v in mask_util.toBbox(rle))
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category + 1,
        "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode()},
        "area": float(mask_util.area(rle)),
        "bbox": [x, y, w, h],
        "iscrowd": 0,
    }


def _generate_split(root: Path, split: str, count: int, cfg: ShapesConfig, split_seed: int,
                    progress: bool) -> Path:
    image_dir = root / "images" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    seeds = np.random.SeedSequence([cfg.seed, split_seed]).spawn(count)
    for image_id, seed in enumerate(tqdm(seeds, desc=f"shapes {split}", unit="img",
                                         disable=not progress)):
        image, objects = render_shapes_image(np.random.default_rng(seed), cfg)
        file_name = f"{split}/{image_id:06d}.png"
        Image.fromarray(image).save(root / "images" / file_name)
        images.append({"id": image_id, "file_name": file_name,
                       "height": cfg.image_size, "width": cfg.image_size})
        for category, mask in objects:
            annotations.append(_annotation(len(annotations) + 1, image_id, category, mask))
    data = {
        "info": {"description": "SegContrast synthetic shapes", "generator_version":
                 GENERATOR_VERSION, "config": asdict(cfg), "split": split},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": name, "supercategory": "shape"}
                       for i, name in enumerate(SHAPE_CLASSES)],
    }
    json_path = root / f"{split}.json"
    atomic_write(json_path, lambda f: json.dump(data, f), mode="w")
    return json_path


def generate_shapes(root: str | os.PathLike, cfg: ShapesConfig | None = None, *,
                    progress: bool = True) -> dict[str, Path]:
    """Write the ``shapes`` dataset (both splits) under ``root``.

    Args:
        root: output folder (created).
        cfg: what to generate (default :class:`ShapesConfig`).
        progress: show a progress bar.

    Returns:
        ``{"train": train.json path, "val": val.json path, "image_root": images folder}``.
    """
    cfg = cfg or ShapesConfig()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for split_seed, (split, count) in enumerate((("train", cfg.num_train), ("val", cfg.num_val))):
        paths[split] = _generate_split(root, split, count, cfg, split_seed, progress)
    paths["image_root"] = root / "images"
    return paths
