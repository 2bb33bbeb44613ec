"""``SegContrastEvaluator``: the contrast evaluator as a Detectron2 ``DatasetEvaluator``.

A thin adapter over :class:`segcontrast.evaluation.Accumulator`: ``process`` turns each model
output into :class:`~segcontrast.evaluation.predictions.Predictions` and adds it;
``evaluate`` gathers the processes' statistics with ``detectron2.utils.comm``, computes every
metric, logs the report and writes the files (:meth:`EvaluationResult.save`) to
``output_dir``: built in a hidden folder and moved in place of the set the previous evaluation
wrote there, so the folder holds either the complete previous set or the complete new one;
Detectron2's ``coco/`` and other files are left alone. Definitions: docs/EVALUATION.md.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from typing import Any

import numpy as np
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from ..data.masks import crops_from_dense, describe_image
from ..datasets.coco import dataset_dicts_for_reading
from ..evaluation.accumulator import Accumulator
from ..evaluation.ground_truth import GroundTruthSet
from ..evaluation.predictions import Predictions, ap_areas
from ..evaluation.records import EvalState
from ..evaluation.result import EvaluationResult
from ..evaluation.settings import EvalSettings

__all__ = ["EVALUATOR_NAME", "SegContrastEvaluator", "build_segcontrast_evaluator",
           "predictions_from_output"]

logger = logging.getLogger(__name__)

EVALUATOR_NAME = "SegContrastEvaluator"  # the writer its output folder's manifest names


def predictions_from_output(output: dict, height: int, width: int, settings: EvalSettings,
                            num_classes: int) -> Predictions:
    """Read a Detectron2 model output dict (``"instances"`` and/or ``"sem_seg"``).

    Args:
        output: the model output for one image.
        height: image height.
        width: image width.
        settings: the evaluator's settings (mask threshold, AP area rule).
        num_classes: K.

    Returns:
        The predictions.

    Raises:
        ValueError: masks or ``sem_seg`` of the wrong size, or classes outside [0, K).
    """
    semantic = None
    if "sem_seg" in output:
        logits = output["sem_seg"]
        if logits.shape[0] != num_classes + 1 or tuple(logits.shape[1:]) != (height, width):
            raise ValueError(
                f"sem_seg of shape {tuple(logits.shape)}: expected ({num_classes + 1}, "
                f"{height}, {width}) (background first, then the thing classes)"
            )
        semantic = logits.argmax(dim=0).byte().cpu().numpy()
    instances = output.get("instances")
    if instances is None or len(instances) == 0 or not instances.has("pred_masks"):
        # Only a semantic output, no "instances" key: a semantic model. An empty dict is an
        # instance model that found nothing.
        return Predictions.empty(height, width, semantic,
                                 has_instances=instances is not None or semantic is None)
    instances = instances.to("cpu")
    masks = crops_from_dense(instances.pred_masks, settings.mask_threshold)
    if (masks.height, masks.width) != (height, width):
        raise ValueError(
            f"pred_masks are {masks.height}x{masks.width} but the image is "
            f"{height}x{width}: the evaluator needs masks at the original image size"
        )
    classes = instances.pred_classes.numpy().astype(np.int64)
    if classes.size and (classes.min() < 0 or classes.max() >= num_classes):
        raise ValueError(f"pred_classes outside [0, {num_classes})")
    scores = np.asarray(instances.scores.float().numpy(), np.float64)
    boxes = None
    if settings.ap_area == "box" and instances.has("pred_boxes"):
        xyxy = instances.pred_boxes.tensor.float().numpy()
        # float32 w, h as Detectron2's BoxMode.convert computes them, product in float64.
        boxes = np.zeros((len(xyxy), 4), np.float64)
        boxes[:, 2] = (xyxy[:, 2] - xyxy[:, 0]).astype(np.float64)
        boxes[:, 3] = (xyxy[:, 3] - xyxy[:, 1]).astype(np.float64)
    return Predictions(masks, classes, scores, ap_areas(masks, boxes, settings.ap_area),
                       semantic)


class SegContrastEvaluator(DatasetEvaluator):
    """Score instance predictions as semantic segmentation and as instances; explain the gap.

    Args:
        dataset_name: a registered dataset (Detectron2 dicts with instance annotations;
            metadata ``thing_classes``).
        output_dir: where the main process writes ``metrics.json``, ``per_image.csv``, plots
            and ``report.html``; None writes nothing.
        distributed: gather statistics from all processes (Detectron2's convention); False
            evaluates only what this process saw.
        settings: how to score (:class:`~segcontrast.evaluation.EvalSettings`).
        source: what was scored, for ``metrics.json`` (``"source"``) and the report.
        **overrides: settings by name (``iou_threshold=0.75``), over ``settings``.
    """

    def __init__(self, dataset_name: str, output_dir: str | None = None, *,
                 distributed: bool = True, settings: EvalSettings | None = None,
                 source: dict[str, Any] | None = None, **overrides: Any) -> None:
        # Read-only here: the validated dicts themselves, not the copy DatasetCatalog.get makes
        # (copying a large dataset costs more than scoring it).
        dicts = dataset_dicts_for_reading(dataset_name)
        if dicts is None:
            dicts = DatasetCatalog.get(dataset_name)
        metadata = MetadataCatalog.get(dataset_name)
        classes = metadata.get("thing_classes", None)
        if not classes:
            raise ValueError(
                f"dataset {dataset_name!r} has no metadata 'thing_classes': register it with "
                "its categories (segcontrast.datasets.register_coco_dataset does)"
            )
        ground_truth = GroundTruthSet.from_records(
            dataset_name, dicts, classes, metadata.get("thing_dataset_id_to_contiguous_id", None))
        self._accumulator = Accumulator(ground_truth, settings, keep_worst=bool(output_dir),
                                        **overrides)
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._distributed = distributed
        self._source = dict(source) if source else None
        self.last_result: EvaluationResult | None = None

    @property
    def settings(self) -> EvalSettings:
        """How predictions are scored."""
        return self._accumulator.settings

    @property
    def class_names(self) -> list[str]:
        """The thing classes, contiguous order."""
        return list(self._accumulator.ground_truth.class_names)

    @property
    def state(self) -> EvalState:
        """This process's sufficient statistics (what ``evaluate`` gathers)."""
        return self._accumulator.state

    def reset(self) -> None:
        """Forget everything processed so far."""
        self._accumulator.reset()

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        """Score a batch.

        Args:
            inputs: dicts with ``image_id`` (and ``file_name``, ``height``, ``width``).
            outputs: dicts with ``"instances"`` (``pred_masks`` (N, H, W) at the original
                image size, ``scores`` (N,), ``pred_classes`` (N,), optional
                ``pred_boxes``) and/or ``"sem_seg"`` (K + 1, H, W).
        """
        ground_truth = self._accumulator.ground_truth
        for inp, out in zip(inputs, outputs, strict=True):
            record = ground_truth.records.get(inp["image_id"])
            if record is None:
                raise KeyError(
                    f"image_id {inp['image_id']!r} is not in dataset {self._dataset_name!r}: "
                    "the evaluator takes its ground truth from DatasetCatalog by image_id")
            try:
                pred = predictions_from_output(out, int(record["height"]),
                                               int(record["width"]), self.settings,
                                               ground_truth.num_classes)
            except ValueError as err:
                where = describe_image(record)
                raise ValueError(str(err) if where in str(err) else f"{where}: {err}") from err
            self._accumulator.add_predictions(inp["image_id"], pred, inp.get("file_name"))

    def add_predictions(self, image_id: Any, pred: Predictions,
                        file_name: str | None = None) -> None:
        """Score one image whose predictions are read already (see ``Accumulator``)."""
        self._accumulator.add_predictions(image_id, pred, file_name)

    def add_state(self, state: EvalState) -> None:
        """Add statistics other evaluators of this dataset gathered (other images)."""
        self._accumulator.add_state(state)

    def evaluate(self) -> OrderedDict | None:
        """Gather, compute, report and write.

        Returns:
            On the main process ``{"semantic": {...}, "instance": {...}, "segm": {...},
            "contrast": {...}, "panoptic": {...}, "accounting": {...}}`` of floats (percent,
            counts as numbers; the last two for instance models when on), or an empty dict
            when no image was processed; None on other processes.
        """
        others: list[EvalState] = []
        if self._distributed and comm.get_world_size() > 1:
            comm.synchronize()
            states = comm.gather(self._accumulator.state, dst=0)
            if not comm.is_main_process():
                return None
            others = [s for i, s in enumerate(states) if i != comm.get_rank()]
        if not self._accumulator.state.images and not any(s.images for s in others):
            logger.warning(
                "SegContrastEvaluator on %s received no images (process() was never called, "
                "or the dataset is empty): nothing to evaluate, returning no results.",
                self._dataset_name,
            )
            return OrderedDict()
        result = self._accumulator.compute(source=self._source, states=others)
        self.last_result = result
        logger.info("\n" + result.report())
        if self._output_dir:
            # As one set in place of the previous evaluation's (Detectron2's coco/ and other
            # files of the folder are left alone).
            result.save(self._output_dir, writer=EVALUATOR_NAME)
            logger.info("SegContrast metrics, per-image table, plots and report.html written "
                        "to %s", self._output_dir)
        elif self.settings.panoptic_output_dir:
            result.save_panoptic_json()
        return OrderedDict(result.results)


def build_segcontrast_evaluator(
    cfg: CfgNode, dataset_name: str, output_folder: str | None, *,
    source: dict[str, Any] | None = None,
) -> SegContrastEvaluator:
    """The evaluator with the settings of ``cfg.TEST.SEGCONTRAST``.

    The panoptic files go to ``PANOPTIC_OUTPUT_DIR/<dataset_name>``.

    Args:
        cfg: a config with SegContrast keys.
        dataset_name: registered dataset.
        output_folder: where to write results (None: nowhere).
        source: what was scored, for ``metrics.json`` and the report.

    Returns:
        The evaluator.
    """
    settings = EvalSettings.from_cfg(cfg)
    if settings.panoptic_output_dir:
        # One folder per dataset; a dataset named after its file (tools/evaluate.py) loses the
        # ".json": panopticapi finds a JSON's PNG folder by deleting every ".json" in its path.
        settings = settings.replace(panoptic_output_dir=os.path.join(
            settings.panoptic_output_dir, dataset_name.removesuffix(".json")))
    return SegContrastEvaluator(dataset_name, output_folder, distributed=True,
                                settings=settings, source=source)
