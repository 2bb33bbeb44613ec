"""Running a trained model: masks pasted at a chosen threshold, and prediction on image files.

:class:`MaskThresholdModel` makes ``TEST.SEGCONTRAST.MASK_THRESHOLD`` the threshold at which
Mask R-CNN's soft masks become the binary masks that are evaluated (Detectron2 always pastes at
0.5). :func:`predict_images` is what ``tools/predict.py`` does.
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
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Instances
from detectron2.utils.visualizer import ColorMode, Visualizer
from PIL import Image
from tqdm import tqdm

from .engine.checkpoint import atomic_write_bytes, load_weights_for_eval
from .evaluation import paint_semantic_prediction

__all__ = [
    "IMAGE_EXTENSIONS",
    "MaskThresholdModel",
    "Predictor",
    "expand_image_inputs",
    "paste_at_threshold",
    "predict_images",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def paste_at_threshold(
    raw: list[Instances], batched_inputs: list[dict], mask_threshold: float
) -> list[dict]:
    """Scale raw detections to each input's size and paste their masks at a threshold.

    Exactly Detectron2's ``GeneralizedRCNN._postprocess``, with the threshold as an argument.

    Args:
        raw: per image, ``Instances`` from ``model.inference(..., do_postprocess=False)``
            (pred_masks (N, 1, M, M) probabilities, boxes at the network's input size).
        batched_inputs: the model's inputs (their "height"/"width" are the output size).
        mask_threshold: soft masks >= this are foreground.

    Returns:
        Per image ``{"instances": Instances}`` with pred_masks (N, H, W) bool.
    """
    outputs = []
    for instances, inputs in zip(raw, batched_inputs, strict=True):
        height = inputs.get("height", instances.image_size[0])
        width = inputs.get("width", instances.image_size[1])
        outputs.append({"instances": detector_postprocess(instances, height, width,
                                                          mask_threshold=mask_threshold)})
    return outputs


class MaskThresholdModel(torch.nn.Module):
    """A Mask R-CNN for inference whose masks are binarised at ``mask_threshold``.

    Args:
        model: a ``GeneralizedRCNN`` (or its DDP wrapper).
        mask_threshold: in (0, 1); 0.5 gives exactly Detectron2's outputs.
    """

    def __init__(self, model: torch.nn.Module, mask_threshold: float) -> None:
        super().__init__()
        self.model = model
        self.mask_threshold = mask_threshold

    def forward(self, batched_inputs: list[dict]) -> list[dict]:
        """Predict; the same inputs and outputs as the wrapped model's inference."""
        model = getattr(self.model, "module", self.model)
        if not hasattr(model, "inference") or self.training:
            return self.model(batched_inputs)
        raw = model.inference(batched_inputs, do_postprocess=False)
        return paste_at_threshold(raw, batched_inputs, self.mask_threshold)


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
        raise FileNotFoundError(
            f"--input {spec}: no image files found (extensions {', '.join(IMAGE_EXTENSIONS)})"
        )
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
        model = build_model(cfg)
        load_weights_for_eval(model, weights, allow_unsafe_pickle=allow_unsafe_pickle)
        self.model = MaskThresholdModel(model, cfg.TEST.SEGCONTRAST.MASK_THRESHOLD)
        self.model.eval()
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
    score_threshold: float = 0.5,
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
        score_threshold: predictions below it are left out of the label maps (as in the
            evaluator's semantic painting).

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
        tqdm(list(zip(paths, _unique_stems(paths), strict=True)), desc="predict", unit="img")
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
            confident = instances[instances.scores >= score_threshold]
            labels = paint_semantic_prediction(confident, image.shape[:2], mask_threshold)
            Image.fromarray(labels.astype(np.uint8)).save(
                os.path.join(output_dir, f"{stem}_semantic.png")
            )
    json_path = os.path.join(output_dir, "predictions.json")
    atomic_write_bytes(json_path, lambda f: f.write(json.dumps(results).encode()))
    logger.info("Wrote %d predictions for %d images to %s", len(results), len(paths), output_dir)
    return json_path
