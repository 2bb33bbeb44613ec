"""``SegContrastEvaluator``: semantic and instance scores of the same predictions, one pass.

A Detectron2 ``DatasetEvaluator``. ``process`` turns each image into sufficient statistics
(see :mod:`.records`); ``evaluate`` gathers them on the main process with
``detectron2.utils.comm``, computes every metric, logs a report and writes ``metrics.json``,
``per_image.csv``, plots and ``report.html`` to ``output_dir``. Definitions: docs/EVALUATION.md.

The files are built in a hidden folder inside ``output_dir`` and then moved in place of the
set the previous evaluation wrote there (Ctrl-C held back while they move), so the folder holds
either the complete previous set or the complete new one, never a ``metrics.json`` without its
``report.html``; files of others in the folder (Detectron2's ``coco/``) are left alone.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import shutil
from collections import OrderedDict
from typing import Any

from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm
from tqdm import tqdm

from ..data.coco import dataset_dicts_for_reading
from ..data.masks import GroundTruth, describe_image
from ..utils.interrupts import interrupts_ignored
from ..utils.output_folder import new_staging_folder, replace_own_files
from .accounting_summary import VARIANT_NAMES
from .boundary import boundary_dilation
from .html_report import write_html_report
from .image_eval import Predictions, evaluate_image
from .panoptic_export import category_ids, write_panoptic_json, write_panoptic_pngs
from .records import EvalState, WorstImage, image_sort_key
from .report import format_report, write_metrics_json, write_per_image_csv
from .semantic import check_num_classes
from .summary import Summary, summarize

__all__ = ["EVALUATOR_NAME", "SegContrastEvaluator", "build_segcontrast_evaluator"]

logger = logging.getLogger(__name__)

EVALUATOR_NAME = "SegContrastEvaluator"  # the writer its output folder's manifest names


class SegContrastEvaluator(DatasetEvaluator):
    """Score instance predictions as semantic segmentation and as instances; explain the gap.

    Args:
        dataset_name: a registered dataset (Detectron2 dicts with instance annotations;
            metadata ``thing_classes``).
        output_dir: where the main process writes ``metrics.json``, ``per_image.csv`` and
            PNG plots; None writes nothing.
        distributed: gather statistics from all processes (Detectron2's convention); False
            evaluates only what this process saw.
        mask_threshold: float mask probabilities ``>= mask_threshold`` are foreground.
        iou_threshold: smallest mask IoU of a match (instance metrics and contrast counts).
        boundary_dilation_ratio: boundary band width as a fraction of the image diagonal.
        boundary_iou: compute boundary IoU of the matched pairs.
        num_worst_images: overlays drawn for this many worst images (by instance mIoU).
        score_threshold: predictions below it are left out of the semantic painting and the
            instance metrics; COCO AP always uses all of them.
        source: what was scored (e.g. the results file), written to ``metrics.json`` as
            ``"source"``; its ``"notes"`` (a list of sentences) appear in the report.
        panoptic: compute PQ, SQ, RQ (the "panoptic" group) of instance predictions.
        accounting: compute the gap accounting (the "accounting" group): what each error
            type costs semantic mIoU, instance mIoU, PQ and mask AP.
        panoptic_overlap_threshold: a prediction losing more than this fraction of its mask
            to higher-scored ones gets no panoptic segment.
        panoptic_output_dir: write the ground-truth and predicted panoptic segments there as
            COCO panoptic PNG + JSON (None or "": not written).
        shown_output_dir: how the log names ``output_dir`` (default: ``output_dir``), for a
            caller that moves the folder elsewhere afterwards (``tools/evaluate.py`` builds its
            output in a hidden folder).
    """

    def __init__(
        self,
        dataset_name: str,
        output_dir: str | None = None,
        *,
        distributed: bool = True,
        mask_threshold: float = 0.5,
        iou_threshold: float = 0.5,
        boundary_dilation_ratio: float = 0.02,
        boundary_iou: bool = True,
        num_worst_images: int = 6,
        score_threshold: float = 0.0,
        source: dict[str, Any] | None = None,
        panoptic: bool = True,
        accounting: bool = True,
        panoptic_overlap_threshold: float = 0.5,
        panoptic_output_dir: str | None = None,
        shown_output_dir: str | None = None,
    ) -> None:
        if not 0 < iou_threshold <= 1:
            raise ValueError(f"iou_threshold = {iou_threshold}: expected a number in (0, 1]")
        if not 0 < mask_threshold < 1:
            raise ValueError(f"mask_threshold = {mask_threshold}: expected a number in (0, 1)")
        if not boundary_dilation_ratio > 0:
            raise ValueError(f"boundary_dilation_ratio = {boundary_dilation_ratio}: expected > 0")
        if not 0 <= panoptic_overlap_threshold <= 1:
            raise ValueError(f"panoptic_overlap_threshold = {panoptic_overlap_threshold}: "
                             "expected a number in [0, 1]")
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._shown_output_dir = shown_output_dir or output_dir
        self._distributed = distributed
        self._mask_threshold = float(mask_threshold)
        self._iou_threshold = float(iou_threshold)
        self._dilation_ratio = float(boundary_dilation_ratio)
        self._boundary_iou = bool(boundary_iou)
        self._num_worst = int(num_worst_images)
        self._score_threshold = float(score_threshold)
        self._source = dict(source) if source else None
        self._panoptic = bool(panoptic)
        self._accounting = bool(accounting)
        self._overlap_threshold = float(panoptic_overlap_threshold)
        self._panoptic_dir = panoptic_output_dir or None
        if self._panoptic_dir and not self._panoptic:
            raise ValueError("panoptic_output_dir is set but panoptic is off: the panoptic "
                             "segments are only built with panoptic=True")
        # Read-only here: the validated dicts themselves, not the copy DatasetCatalog.get makes
        # (copying a large dataset costs more than scoring it).
        dicts = dataset_dicts_for_reading(dataset_name)
        if dicts is None:
            dicts = DatasetCatalog.get(dataset_name)
        self._gt = {record["image_id"]: record for record in dicts}
        metadata = MetadataCatalog.get(dataset_name)
        classes = metadata.get("thing_classes", None)
        if not classes:
            raise ValueError(
                f"dataset {dataset_name!r} has no metadata 'thing_classes': register it with "
                "its categories (segcontrast.data.register_coco_dataset does)"
            )
        self._class_names = list(classes)
        check_num_classes(len(self._class_names))
        self._categories = category_ids(
            len(self._class_names), metadata.get("thing_dataset_id_to_contiguous_id", None)
        )
        self.reset()

    @property
    def class_names(self) -> list[str]:
        """The thing classes, contiguous order."""
        return list(self._class_names)

    def reset(self) -> None:
        """Forget everything processed so far."""
        keep_worst = self._num_worst if self._output_dir else 0
        self._state = EvalState(num_labels=len(self._class_names) + 1, max_worst=keep_worst)
        self._seen: set = set()

    @property
    def state(self) -> EvalState:
        """This process's sufficient statistics (what ``evaluate`` gathers)."""
        return self._state

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        """Score a batch.

        Args:
            inputs: dicts with ``image_id`` (and ``file_name``, ``height``, ``width``).
            outputs: dicts with ``"instances"`` (``pred_masks`` (N, H, W) at the original
                image size, ``scores`` (N,), ``pred_classes`` (N,), optional
                ``pred_boxes``) and/or ``"sem_seg"`` (K + 1, H, W).
        """
        num_classes = len(self._class_names)
        for inp, out in zip(inputs, outputs, strict=True):
            record = self._ground_truth_record(inp["image_id"])
            try:
                pred = Predictions.from_output(
                    out, int(record["height"]), int(record["width"]), self._mask_threshold,
                    num_classes,
                )
            except ValueError as err:
                where = describe_image(record)
                raise ValueError(str(err) if where in str(err) else f"{where}: {err}") from err
            self.process_predictions(inp["image_id"], pred, inp.get("file_name"))

    def _ground_truth_record(self, image_id: Any) -> dict:
        record = self._gt.get(image_id)
        if record is None:
            raise KeyError(
                f"image_id {image_id!r} is not in dataset {self._dataset_name!r}: the "
                "evaluator takes its ground truth from DatasetCatalog by image_id"
            )
        return record

    def process_predictions(
        self, image_id: Any, pred: Predictions, file_name: str | None = None
    ) -> None:
        """Score one image whose predictions are already read (what ``process`` does per image).

        Args:
            image_id: the dataset's image id.
            pred: its predictions at the image's size (from a model output, or from a results
                file).
            file_name: the image file, for the overlays (default: the dataset's).
        """
        record = self._ground_truth_record(image_id)
        key = image_sort_key(image_id)
        if key in self._seen:
            logger.warning("Image %r processed twice since reset(); the repeat is skipped.",
                           image_id)
            return
        self._seen.add(key)
        gt = GroundTruth.from_dataset_dict(record, len(self._class_names))
        height, width = gt.masks.height, gt.masks.width
        dilation = (
            boundary_dilation(height, width, self._dilation_ratio) if self._boundary_iou else None
        )
        image = {"image_id": image_id, "file_name": file_name or record.get("file_name", "")}
        result = evaluate_image(
            image,
            gt,
            pred,
            num_classes=len(self._class_names),
            iou_threshold=self._iou_threshold,
            score_threshold=self._score_threshold,
            boundary_dilation=dilation,
            panoptic=self._panoptic,
            accounting=self._accounting,
            overlap_threshold=self._overlap_threshold,
        )
        rec, keep = result.record, result.keep
        self._state.add_confusions(result.confusion, result.confusion_from_instances)
        if rec.accounting is not None:
            self._state.add_accounting_confusion(result.accounting_confusion,
                                                 len(VARIANT_NAMES))
        if self._panoptic_dir and result.panoptic_gt is not None:
            rec.panoptic_segments = write_panoptic_pngs(
                self._panoptic_dir, image_id, result.panoptic_gt, result.panoptic_pred,
                pred.masks.boxes[keep], pred.classes[keep], self._categories,
            )
        self._state.images.append(rec)
        if self._state.wants_worst(rec.worst_image_score, image_id):
            self._state.add_worst(
                WorstImage.pack(
                    rec.worst_image_score,
                    image_id,
                    pred.masks.subset(keep),
                    pred.classes[keep],
                    pred.scores[keep],
                )
            )

    def add_state(self, state: EvalState) -> None:
        """Add statistics that other evaluators of this dataset gathered (other images).

        For images scored elsewhere, e.g. by worker processes; merged as ``evaluate`` merges
        the processes of a distributed run.

        Args:
            state: the other evaluators' merged state.
        """
        self._state = EvalState.merge([self._state, state])
        self._seen.update(image_sort_key(r.image_id) for r in state.images)

    def evaluate(self) -> OrderedDict | None:
        """Gather, compute, report and write.

        Returns:
            On the main process ``{"semantic": {...}, "instance": {...}, "segm": {...},
            "contrast": {...}, "panoptic": {...}, "accounting": {...}}`` of floats (percent,
            counts as numbers; the last two for instance models when on), or an empty dict
            when no image was processed; None on other processes.
        """
        if self._distributed and comm.get_world_size() > 1:
            comm.synchronize()
            states = comm.gather(self._state, dst=0)
            if not comm.is_main_process():
                return None
        else:
            states = [self._state]
        state = EvalState.merge(states)
        if not state.images:
            logger.warning(
                "SegContrastEvaluator on %s received no images (process() was never called, "
                "or the dataset is empty): nothing to evaluate, returning no results.",
                self._dataset_name,
            )
            return OrderedDict()
        if len(state.images) < len(self._gt):
            logger.info(
                "Evaluated %d of the %d images of %s.",
                len(state.images),
                len(self._gt),
                self._dataset_name,
            )
        summary = summarize(state, self._class_names, boundary_iou=self._boundary_iou)
        logger.info("\n" + format_report(summary, self._dataset_name))
        if self._output_dir:
            self._write_outputs(state, summary)
        if self._panoptic_dir:
            self._write_panoptic_json(state)
        return copy.deepcopy(summary.results)

    def _write_panoptic_json(self, state: EvalState) -> None:
        assert self._panoptic_dir is not None
        images = [
            {"image_id": r.image_id, "file_name": r.file_name, "height": r.height,
             "width": r.width, "panoptic": r.panoptic_segments}
            for r in state.images if r.panoptic_segments is not None
        ]
        write_panoptic_json(self._panoptic_dir, images, self._class_names, self._categories)
        logger.info("Panoptic segments (COCO panoptic PNG + JSON) of %d images written to %s",
                    len(images), self._panoptic_dir)

    def _settings(self) -> dict[str, Any]:
        extra = {"source": self._source} if self._source else {}
        return {
            **extra,
            "dataset": self._dataset_name,
            "settings": {
                "mask_threshold": self._mask_threshold,
                "iou_threshold": self._iou_threshold,
                "boundary_iou": self._boundary_iou,
                "boundary_dilation_ratio": self._dilation_ratio,
                "score_threshold": self._score_threshold,
                "panoptic": self._panoptic,
                "accounting": self._accounting,
                "panoptic_overlap_threshold": self._overlap_threshold,
            },
            "class_names": self._class_names,
        }

    def _write_outputs(self, state: EvalState, summary: Summary) -> None:
        assert self._output_dir is not None
        staging = new_staging_folder(self._output_dir)
        try:
            write_metrics_json(os.path.join(staging, "metrics.json"), summary, self._settings())
            write_per_image_csv(os.path.join(staging, "per_image.csv"), state.images)
            try:
                self._write_plots(state, summary, staging)
            except Exception as err:  # a plotting failure must not lose the metrics
                logger.warning(
                    "SegContrastEvaluator: plots not written (%s: %s)", type(err).__name__, err
                )
            write_html_report(staging)
            replace_own_files(staging, self._output_dir, EVALUATOR_NAME)
        except BaseException:
            with interrupts_ignored():
                shutil.rmtree(staging, ignore_errors=True)
            raise
        logger.info("SegContrast metrics, per-image table, plots and report.html written to %s",
                    self._shown_output_dir)

    def _write_plots(self, state: EvalState, summary: Summary, out: str) -> None:
        from . import plots  # matplotlib only when plots are written

        names = self._class_names
        res = summary.results
        two = "semantic_from_instances" in res
        series = [("semantic IoU (semantic head)" if two else "semantic IoU",
                   [res["semantic"][f"IoU-{n}"] for n in names])]
        if two:
            series.append(("semantic IoU (painted instances)",
                           [res["semantic_from_instances"][f"IoU-{n}"] for n in names]))
        if "instance" in res:
            series.append(("instance IoU (missed = 0)",
                           [res["instance"][f"IoU-{n}"] for n in names]))
        plots.plot_class_iou(os.path.join(out, "per_class_iou.png"), names, series)
        plots.plot_confusion(
            os.path.join(out, "confusion_matrix.png"), ["background", *names], state.confusion
        )
        if "accounting" in summary.details:
            plots.plot_accounting(os.path.join(out, "accounting.png"),
                                  summary.details["accounting"]["rows"])
        records = {image_sort_key(r.image_id): r for r in state.images}
        for rank, worst in enumerate(
            tqdm(state.worst, desc="worst-image overlays", unit="img", leave=False)
        ):
            record = records.get(image_sort_key(worst.image_id))
            if record is None:
                continue
            gt = GroundTruth.from_dataset_dict(self._gt[worst.image_id], len(names))
            pred = worst.masks(record.height, record.width)
            c = record.counts
            title = (
                f"{os.path.basename(record.file_name) or '?'} (image {worst.image_id}): "
                f"instance mIoU {_pct_text(record.instance_miou)}, "
                f"semantic mIoU {_pct_text(record.semantic_miou)}; merged {c['merged']}, "
                f"split {c['split']}, missed {c['missed']}, false positives "
                f"{c['false_positives']}"
            )
            plots.plot_overlay(
                os.path.join(out, plots.overlay_name(rank, worst.image_id)),
                record.file_name,
                gt.masks,
                gt.classes,
                gt.crowd,
                pred,
                worst.classes,
                len(names),
                title,
            )


def _pct_text(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value * 100:.1f}"


def build_segcontrast_evaluator(
    cfg: CfgNode, dataset_name: str, output_folder: str | None, *,
    source: dict[str, Any] | None = None, shown_output_dir: str | None = None,
) -> SegContrastEvaluator:
    """The evaluator with the settings of ``cfg.TEST.SEGCONTRAST``.

    ``SCORE_THRESHOLD`` is optional (0.0, i.e. every prediction, when the config has none),
    and so are the panoptic and accounting keys (their defaults). The panoptic files go to
    ``PANOPTIC_OUTPUT_DIR/<dataset_name>``.

    Args:
        cfg: a config with SegContrast keys.
        dataset_name: registered dataset.
        output_folder: where to write results (None: nowhere).
        source: what was scored, for ``metrics.json`` and the report.
        shown_output_dir: how the log names ``output_folder`` (see the evaluator).

    Returns:
        The evaluator.
    """
    sc = cfg.TEST.SEGCONTRAST
    return SegContrastEvaluator(
        dataset_name,
        output_folder,
        distributed=True,
        mask_threshold=sc.MASK_THRESHOLD,
        iou_threshold=sc.IOU_THRESHOLD,
        boundary_dilation_ratio=sc.BOUNDARY_DILATION_RATIO,
        boundary_iou=sc.BOUNDARY_IOU,
        num_worst_images=sc.NUM_WORST_IMAGES,
        score_threshold=sc.get("SCORE_THRESHOLD", 0.0),
        source=source,
        panoptic=sc.get("PANOPTIC", True),
        accounting=sc.get("ACCOUNTING", True),
        panoptic_overlap_threshold=sc.get("PANOPTIC_OVERLAP_THRESHOLD", 0.5),
        # One folder per dataset; a dataset named after its file (tools/evaluate.py) loses the
        # ".json": panopticapi finds a JSON's PNG folder by deleting every ".json" in its path.
        panoptic_output_dir=(
            os.path.join(sc.PANOPTIC_OUTPUT_DIR, dataset_name.removesuffix(".json"))
            if sc.get("PANOPTIC_OUTPUT_DIR", "") else None
        ),
        shown_output_dir=shown_output_dir,
    )
