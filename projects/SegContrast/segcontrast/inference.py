"""Run a trained model on image files: overlays, COCO-format results and semantic label maps.

Used by ``tools/predict.py``.
"""

from __future__ import annotations

import glob
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T
from detectron2.data.detection_utils import read_image
from detectron2.evaluation.coco_evaluation import instances_to_coco_json
from detectron2.modeling import build_model
from detectron2.structures import Instances
from detectron2.utils.visualizer import ColorMode, Visualizer
from PIL import Image
from tqdm import tqdm

from .engine.checkpoint import atomic_write_bytes, load_weights_for_eval
from .evaluation import paint_semantic_prediction

__all__ = ["IMAGE_EXTENSIONS", "Predictor", "expand_image_inputs", "predict_images"]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def expand_image_inputs(spec: str) -> list[Path]:
    """Image files named by a file, a folder (its images, sorted) or a glob pattern.

    Args:
        spec: the ``--input`` argument.

    Returns:
        The image paths, sorted.

    Raises:
        FileNotFoundError: nothing matches.
    """
    path = Path(spec)
    if path.is_dir():
        found = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
    elif path.is_file():
        found = [path]
    else:
        found = [Path(p) for p in glob.glob(spec, recursive=True)]
        found = [p for p in found if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    if not found:
        raise FileNotFoundError(f"--input {spec}: no image files found (extensions {IMAGE_EXTENSIONS})")
    return sorted(found)


class Predictor:
    """A model with trained weights that predicts on one BGR image at a time.

    Args:
        cfg: the config the weights were trained with.
        weights: path or URL of the weights; checked like eval-only (all parameters must load).
        allow_unsafe_pickle: allow ``.pkl`` weights from outside the model zoo.
    """

    def __init__(self, cfg: CfgNode, weights: str, *, allow_unsafe_pickle: bool = False) -> None:
        self.cfg = cfg
        self.model = build_model(cfg)
        self.model.eval()
        load_weights_for_eval(self.model, weights, allow_unsafe_pickle=allow_unsafe_pickle)
        self.resize = T.ResizeShortestEdge(
            [cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST
        )
        self.input_format = cfg.INPUT.FORMAT

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> Instances:
        """Predict instances.

        Args:
            image: (H, W, 3) uint8 array in ``cfg.INPUT.FORMAT`` channel order.

        Returns:
            Instances on the CPU at the image's size (pred_masks (N, H, W) bool, scores,
            pred_classes, pred_boxes).
        """
        height, width = image.shape[:2]
        resized = self.resize.get_transform(image).apply_image(image)
        tensor = torch.as_tensor(resized.astype("float32").transpose(2, 0, 1))
        output = self.model([{"image": tensor, "height": height, "width": width}])[0]
        return output["instances"].to("cpu")


def _unique_stems(paths: Iterable[Path]) -> list[str]:
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        count = seen.get(path.stem, 0)
        seen[path.stem] = count + 1
        stems.append(path.stem if count == 0 else f"{path.stem}_{count}")
    return stems


def predict_images(
    predictor: Predictor,
    paths: list[Path],
    output_dir: str,
    *,
    metadata_name: str | None = None,
    semantic_png: bool = False,
    confidence: float = 0.5,
    mask_threshold: float = 0.5,
) -> str:
    """Predict on every image; write overlays, ``predictions.json`` and label PNGs.

    Args:
        predictor: the model.
        paths: image files.
        output_dir: created if needed.
        metadata_name: a registered dataset whose class names and category ids to use.
        semantic_png: also write ``<stem>_semantic.png`` (0 background, class k as k + 1).
        confidence: overlays draw predictions with at least this score (all go to the JSON).
        mask_threshold: binarisation threshold of soft masks for the label maps.

    Returns:
        The path of ``predictions.json``.
    """
    os.makedirs(output_dir, exist_ok=True)
    metadata = MetadataCatalog.get(metadata_name) if metadata_name else None
    num_classes = predictor.cfg.MODEL.ROI_HEADS.NUM_CLASSES
    if metadata is None or not metadata.get("thing_classes", None):
        metadata = MetadataCatalog.get("__segcontrast_predict__")
        if not metadata.get("thing_classes", None):
            metadata.set(thing_classes=[f"class_{i}" for i in range(num_classes)])
    to_dataset_id = {v: k for k, v in metadata.get("thing_dataset_id_to_contiguous_id", {}).items()}
    results = []
    for image_id, (path, stem) in enumerate(
        tqdm(list(zip(paths, _unique_stems(paths))), desc="predict", unit="img")
    ):
        image = read_image(str(path), format=predictor.input_format)
        instances = predictor(image)
        for record in instances_to_coco_json(instances, image_id):
            record["file_name"] = str(path)
            record["category_id"] = to_dataset_id.get(record["category_id"], record["category_id"])
            results.append(record)
        rgb = image[:, :, ::-1] if predictor.input_format == "BGR" else image
        shown = instances[instances.scores >= confidence]
        drawn = Visualizer(rgb, metadata, instance_mode=ColorMode.IMAGE).draw_instance_predictions(
            shown
        )
        Image.fromarray(drawn.get_image()).save(os.path.join(output_dir, f"{stem}.png"))
        if semantic_png:
            labels = paint_semantic_prediction(instances, image.shape[:2], mask_threshold)
            Image.fromarray(labels.astype(np.uint8)).save(
                os.path.join(output_dir, f"{stem}_semantic.png")
            )
    json_path = os.path.join(output_dir, "predictions.json")
    atomic_write_bytes(json_path, lambda f: f.write(json.dumps(results).encode()))
    logger.info("Wrote %d predictions for %d images to %s", len(results), len(paths), output_dir)
    return json_path
