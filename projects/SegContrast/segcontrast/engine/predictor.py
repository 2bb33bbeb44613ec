"""Prediction on image files with trained weights: ``tools/predict.py``'s engine.

:class:`Predictor` is Detectron2's ``DefaultPredictor`` (same resizing, same input dict, same
``__call__``) with four differences: weights are loaded by
:func:`~segcontrast.engine.checkpoint.load_weights_for_eval` (every parameter must load, pickles
only from the model zoo), masks are pasted at ``TEST.SEGCONTRAST.MASK_THRESHOLD``, images are
read by the project's one image reader (:func:`segcontrast.datasets.image_reader.read_image`,
16-bit safe), so a file reaches the model exactly as it does in training and evaluation, and its
class names and category ids come with the weights (:mod:`.class_metadata`; a registered dataset
may override them).
"""

from __future__ import annotations

import glob
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import transforms as T
from detectron2.engine import DefaultPredictor
from detectron2.evaluation.coco_evaluation import instances_to_coco_json
from detectron2.modeling import build_model
from PIL import Image
from tqdm import tqdm

from ..config import num_thing_classes
from ..datasets.image_reader import read_image
from ..evaluation.metrics.semantic import paint_semantic_prediction
from ..modeling.postprocessing import MaskThresholdModel
from ..utils import atomic_write
from .checkpoint import load_weights_for_eval
from .class_metadata import ClassMetadata, choose_prediction_classes
from .predict_outputs import PREDICTIONS_NAME, OutputPlan, plan_outputs
from .prediction_overlays import (
    DEFAULT_OVERLAY_SIZE,
    argmax_labels,
    draw_instances,
    draw_semantic,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "PredictionSummary",
    "Predictor",
    "expand_image_inputs",
    "predict_images",
]

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
        raise FileNotFoundError(
            f"--input {spec}: no image files found (extensions {', '.join(IMAGE_EXTENSIONS)})"
        )
    return sorted(found)


class Predictor(DefaultPredictor):
    """A model with trained weights that predicts on one image at a time.

    Call it with a BGR ``(H, W, 3)`` uint8 array (as ``DefaultPredictor``), or use
    :meth:`predict_file`. ``classes`` names its classes (the dataset's names and category ids)
    and ``metadata`` is the same for Detectron2's ``Visualizer``.

    Args:
        cfg: the config the weights were trained with.
        weights: path or URL of the weights (default ``cfg.MODEL.WEIGHTS``); checked like
            eval-only (all parameters must load).
        allow_unsafe_pickle: allow ``.pkl`` weights from outside the model zoo.
        classes_from: a registered dataset whose classes replace those stored in the weights.
        classes_flag: the command-line flag that named it, for messages.

    Raises:
        WeightsError: the weights cannot be used.
        ClassMetadataError: ``classes_from`` is not registered, or the classes are not
            ``MODEL.ROI_HEADS.NUM_CLASSES`` many.
    """

    def __init__(
        self,
        cfg: CfgNode,
        weights: str | None = None,
        *,
        allow_unsafe_pickle: bool = False,
        classes_from: str | None = None,
        classes_flag: str = "--metadata",
    ) -> None:
        # DefaultPredictor.__init__ is not called: it would load the weights a second time,
        # with Detectron2's unchecked loader.
        self.cfg = cfg.clone()
        num_classes = num_thing_classes(cfg)[0]
        model = build_model(self.cfg)
        self.weights_classes = load_weights_for_eval(
            model, weights or cfg.MODEL.WEIGHTS, allow_unsafe_pickle=allow_unsafe_pickle,
            num_classes=num_classes,
        )
        self.classes: ClassMetadata = choose_prediction_classes(
            num_classes, from_weights=self.weights_classes, override=classes_from,
            override_flag=classes_flag, config_datasets=tuple(cfg.DATASETS.TEST),
        )
        self.metadata = self.classes.visualizer_metadata()
        self.model = MaskThresholdModel(
            model, cfg.TEST.SEGCONTRAST.MASK_THRESHOLD,
            combine_panoptic=cfg.MODEL.PANOPTIC_FPN.COMBINE.ENABLED,
        ).eval()
        self.aug = T.ResizeShortestEdge(
            [cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST
        )
        self.input_format = cfg.INPUT.FORMAT
        assert self.input_format in ["RGB", "BGR"], self.input_format

    @torch.no_grad()
    def predict_file(self, path: str | os.PathLike) -> tuple[np.ndarray, dict]:
        """Read an image file and predict.

        Args:
            path: the image.

        Returns:
            ``(image, outputs)``: the (H, W, 3) uint8 BGR image as the model saw it (before
            resizing) and the model's outputs on the CPU (``"instances"`` with pred_masks
            (N, H, W) bool, and/or ``"sem_seg"`` (K + 1, H, W)).
        """
        image = read_image(str(path), format="BGR")
        outputs = self(image)
        return image, {k: _to_cpu(v) for k, v in outputs.items()}


def _to_cpu(value):
    # "panoptic_seg" is a (Tensor, segments_info) pair.
    if isinstance(value, tuple):
        return tuple(_to_cpu(v) for v in value)
    return value.to("cpu") if hasattr(value, "to") else value


@dataclass
class PredictionSummary:
    """What :func:`predict_images` did.

    Attributes:
        json_path: ``predictions.json``.
        predicted: images predicted.
        skipped: ``(path, reason)`` of each file that could not be read as an image.
        num_results: records written to ``predictions.json``.
    """

    json_path: str
    predicted: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    num_results: int = 0


def _save_png(path: str, array: np.ndarray) -> None:
    image = Image.fromarray(array)
    atomic_write(path, lambda f: image.save(f, "PNG"))


def _semantic_labels(outputs: dict, shape: tuple[int, int], mask_threshold: float,
                     score_threshold: float) -> np.ndarray:
    """(H, W) uint8 labels: the model's ``sem_seg`` when it has one, else painted instances."""
    if "sem_seg" in outputs:
        return argmax_labels(outputs["sem_seg"])
    instances = outputs["instances"]
    confident = instances[instances.scores >= score_threshold]
    return paint_semantic_prediction(confident, shape, mask_threshold)


def predict_images(
    predictor: Predictor,
    paths: list[Path],
    output_dir: str,
    *,
    semantic_png: bool = False,
    confidence: float = 0.5,
    mask_threshold: float = 0.5,
    score_threshold: float = 0.5,
    overlays: bool = True,
    overlay_size: int | None = DEFAULT_OVERLAY_SIZE,
    plan: OutputPlan | None = None,
) -> PredictionSummary:
    """Predict on every image; write overlays, ``predictions.json`` and label PNGs.

    Output names are made from each input's whole file name (:mod:`.predict_outputs`:
    ``a.jpg.overlay.png``, ``a.jpg.semantic.png``), and a file that no earlier run into the
    folder wrote is never replaced. A file that cannot be read as an image is skipped with a
    warning naming it; the results of the others are written (``predictions.json``
    atomically, at the end). Category ids and the overlays' names are the predictor's
    ``classes``. Interrupted (``KeyboardInterrupt``), the files written so far are complete and
    listed in ``predict_outputs.json``, and ``predictions.json`` is not written.

    Args:
        predictor: the model.
        paths: image files.
        output_dir: created if needed.
        semantic_png: also write label PNGs (0 background, class k as k + 1), at full size.
        confidence: overlays draw predictions with at least this score (all go to the JSON).
        mask_threshold: binarisation threshold of soft masks for the label maps.
        score_threshold: predictions below it are left out of the label maps (as in the
            evaluator's semantic painting).
        overlays: draw an overlay per image.
        overlay_size: the overlays' longest side at most (None: the image's own size).
        plan: the output names, already checked by :func:`plan_outputs` for these ``paths``
            (its names then decide which files are written); default: planned here.

    Returns:
        What was written and what was skipped.

    Raises:
        PredictOutputError: ``output_dir`` holds an input file, or a file of an output's name
            that no earlier run wrote.
    """
    if plan is None:
        plan = plan_outputs(paths, output_dir, overlays=overlays, semantic_png=semantic_png)
    os.makedirs(plan.folder, exist_ok=True)
    metadata, classes = predictor.metadata, predictor.classes
    logger.info("Class names and category ids (%s): %s", classes.source, classes.describe())
    summary = PredictionSummary(json_path=plan.path(PREDICTIONS_NAME))
    results = []
    plan.start()
    complete = False
    try:
        for image_id, item in enumerate(tqdm(plan.items, desc="predict", unit="img")):
            try:
                image, outputs = predictor.predict_file(item.input)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
                # Pillow and OpenCV raise these for files that are not (complete) images.
                logger.warning("Skipped %s: not a readable image (%s)", item.input, err)
                summary.skipped.append((str(item.input), str(err)))
                continue
            summary.predicted += 1
            instances = outputs.get("instances")
            if instances is not None:
                for record in instances_to_coco_json(instances, image_id):
                    record["file_name"] = str(item.input)
                    record["category_id"] = classes.to_dataset_id(record["category_id"])
                    results.append(record)
            labels = None
            if item.overlay:
                if instances is not None:
                    drawn = draw_instances(image, instances, metadata, confidence, overlay_size)
                else:
                    labels = argmax_labels(outputs["sem_seg"])
                    drawn = draw_semantic(image, labels, metadata, overlay_size)
                plan.record(item.overlay)
                _save_png(plan.path(item.overlay), drawn)
            if item.semantic:
                if labels is None:
                    labels = _semantic_labels(outputs, image.shape[:2], mask_threshold,
                                              score_threshold)
                plan.record(item.semantic)
                _save_png(plan.path(item.semantic), labels)
        summary.num_results = len(results)
        if summary.predicted:
            plan.record(PREDICTIONS_NAME)
            atomic_write(summary.json_path, lambda f: json.dump(results, f), mode="w")
        complete = True
    finally:
        plan.finish(complete)
    logger.info("Wrote %d predictions for %d images to %s", len(results), summary.predicted,
                plan.folder)
    return summary
