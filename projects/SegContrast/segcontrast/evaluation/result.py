"""An evaluation's result: the metrics, the sentence that explains them, and its files.

:class:`EvaluationResult` is what :func:`segcontrast.evaluate` and
:meth:`~.accumulator.Accumulator.compute` return; :meth:`EvaluationResult.save` writes the same
files as ``segcontrast evaluate``: ``metrics.json``, ``per_image.csv``, the plots, the worst
images' overlays (when the ground truth's images are known) and ``report.html``.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..data.masks import GroundTruth
from ..utils.interrupts import interrupts_ignored
from ..utils.output_folder import new_staging_folder, replace_own_files
from .catalog import ACCOUNTED, ERROR_TYPE_DEFS, error_type, metric
from .explanation import explain
from .ground_truth import GroundTruthSet
from .metrics.coco_ap import AP_AREA_RULES
from .records import EvalState, ImageRecord, image_sort_key
from .report.html import write_html_report
from .report.panoptic_files import category_ids, write_panoptic_json
from .report.text import (
    accounting_side_label,
    format_report,
    metrics_document,
    write_metrics_json,
    write_per_image_csv,
)
from .settings import EvalSettings
from .summary import Summary

__all__ = ["SAVE_WRITER", "EvaluationResult", "overlay_title"]

logger = logging.getLogger(__name__)

SAVE_WRITER = "segcontrast.EvaluationResult.save"  # the writer a saved folder's manifest names


@dataclass
class EvaluationResult:
    """Every metric of an evaluation, and what it was computed from.

    Attributes:
        summary: the metric groups and their details.
        state: the merged per-image statistics (for ``--compare``'s bootstrap).
        ground_truth: what was scored against.
        settings: how.
        source: what was scored (the results file, notes), or None.
    """

    summary: Summary
    state: EvalState
    ground_truth: GroundTruthSet
    settings: EvalSettings
    source: dict[str, Any] | None = None

    @property
    def results(self) -> dict[str, dict[str, float]]:
        """The metric groups (floats, percent; counts as numbers), as Detectron2 returns them."""
        return copy.deepcopy(dict(self.summary.results))

    @property
    def metrics(self) -> dict[str, Any]:
        """The same nested dict as ``metrics.json`` (NaN as None)."""
        return metrics_document(self.summary, self._extra())

    @property
    def explanation(self) -> str:
        """The sentence that explains the gap between the semantic and the instance scores."""
        return self.summary.details.get("explanation", "")

    def explain(self, also: Sequence[str] = ()) -> str:
        """The sentence, naming the main causes for further metrics too.

        Args:
            also: accounting metrics besides semantic and instance mIoU: "PQ", "AP".
        """
        return explain(self.summary.results, also=also)

    def report(self) -> str:
        """The log's text table (and the AP area rule used, when AP was computed)."""
        text = format_report(self.summary, self.ground_truth.name)
        if "segm" in self.summary.results:
            text += "\n" + AP_AREA_RULES[self.settings.ap_area]
        return text

    def _extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"source": self.source} if self.source else {}
        extra.update({
            "dataset": self.ground_truth.name,
            "settings": self.settings.to_dict(scoring_only=True),
            "class_names": list(self.ground_truth.class_names),
        })
        return extra

    def save(self, folder: str | os.PathLike, *, overlays: bool | None = None,
             writer: str = SAVE_WRITER) -> str:
        """Write the evaluation's files into ``folder``, as one set.

        The files are built in a hidden folder inside ``folder`` and then moved in place of the
        set this writer saved there before (Ctrl-C held back while they move), so the folder
        holds the complete previous set or the complete new one. Other files are left alone;
        a file of the same name that no earlier save wrote is never overwritten.

        Args:
            folder: the folder (created when missing).
            overlays: draw the worst images' overlays; None: only when the ground truth's
                image files are known (it was read with an image root).
            writer: the name the folder's manifest gives the writer.

        Returns:
            The folder.

        Raises:
            OutputFolderTakenError: ``folder`` holds a file of one of the new names that this
                writer did not write (the message names it).
        """
        out = os.fspath(folder)
        staging = new_staging_folder(out)
        try:
            self.write_files(staging, overlays=overlays)
            replace_own_files(staging, out, writer, refuse_unlisted=writer == SAVE_WRITER)
        except BaseException:
            with interrupts_ignored():
                shutil.rmtree(staging, ignore_errors=True)
            raise
        return out

    def write_files(self, out: str, *, overlays: bool | None = None) -> None:
        """Write every file into ``out`` (an empty folder the caller publishes afterwards)."""
        os.makedirs(out, exist_ok=True)
        write_metrics_json(os.path.join(out, "metrics.json"), self.summary, self._extra())
        write_per_image_csv(os.path.join(out, "per_image.csv"), self.state.images)
        if overlays is None:
            overlays = self.ground_truth.has_images
        try:
            self._write_plots(out, overlays)
        except Exception as err:  # a plotting failure must not lose the metrics
            logger.warning("Plots not written (%s: %s)", type(err).__name__, err)
        write_html_report(out)
        if self.settings.panoptic_output_dir:
            self.save_panoptic_json()

    def save_panoptic_json(self) -> None:
        """Write the panoptic segments' JSON files (their PNGs are written per image)."""
        folder = self.settings.panoptic_output_dir
        images = [
            {"image_id": r.image_id, "file_name": r.file_name, "height": r.height,
             "width": r.width, "panoptic": r.panoptic_segments}
            for r in self.state.images if r.panoptic_segments is not None
        ]
        gt = self.ground_truth
        write_panoptic_json(folder, images, gt.class_names,
                            category_ids(gt.num_classes, gt.id_map or None))
        logger.info("Panoptic segments (COCO panoptic PNG + JSON) of %d images written to %s",
                    len(images), folder)

    def _write_plots(self, out: str, overlays: bool) -> None:
        from .report import plots  # the SVG charts: no plotting library

        names = self.ground_truth.class_names
        res = self.summary.results
        series = [(metric(group, "IoU-<class>").label, [res[group][f"IoU-{n}"] for n in names])
                  for group in ("semantic", "semantic_from_instances", "instance")
                  if group in res]
        plots.plot_class_iou(os.path.join(out, "per_class_iou.svg"), names, series)
        plots.plot_confusion(os.path.join(out, "confusion_matrix.svg"),
                             ["background", *names], self.state.confusion)
        if "contrast" in res:
            counts, acc = res["contrast"], res.get("accounting")
            rows = [(d.name, int(counts[d.name]), d.counted) for d in ERROR_TYPE_DEFS]
            gains = None
            if acc:
                gains = [(accounting_side_label(self.summary.details, key),
                          [acc[f"delta_{key}-{d.name}"] for d in ERROR_TYPE_DEFS])
                         for key, _ in ACCOUNTED if key in acc]
            plots.plot_error_types(os.path.join(out, "error_types.svg"), rows, gains)
        if not overlays:
            return
        from .report import overlays as drawn  # Pillow, only for the worst images

        records = {image_sort_key(r.image_id): r for r in self.state.images}
        for rank, worst in enumerate(self.state.worst):
            record = records.get(image_sort_key(worst.image_id))
            if record is None:
                continue
            gt = GroundTruth.from_dataset_dict(self.ground_truth.records[worst.image_id],
                                               len(names))
            drawn.plot_overlay(
                os.path.join(out, drawn.overlay_name(rank, worst.image_id)), record.file_name,
                gt.masks, gt.classes, gt.crowd, worst.masks(record.height, record.width),
                worst.classes, len(names), overlay_title(record, worst.image_id),
            )


def overlay_title(record: ImageRecord, image_id: Any) -> str:
    """The line over a worst image's overlay: its file, its two mIoUs, its error counts."""
    c = record.counts
    errors = ", ".join(error_type(d.name).noun(c[d.name]) for d in ERROR_TYPE_DEFS
                       if c.get(d.name) and d.name != "low_score")
    return (
        f"{os.path.basename(record.file_name) or '?'} (image {image_id}): "
        f"instance mIoU {_pct_text(record.instance_miou)}, "
        f"semantic mIoU {_pct_text(record.semantic_miou)}; "
        + (errors or "no errors")
    )


def _pct_text(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value * 100:.1f}"
