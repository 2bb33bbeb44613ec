"""``SegContrastTrainer``: Detectron2's ``DefaultTrainer`` with this project's pieces plugged in.

Differences from ``DefaultTrainer``, each for a reason:

* DDP wraps the model with ``device_ids=None`` on CPU (v0.6 always passes ``[local_rank]``,
  which DDP refuses for CPU modules), so ``--num-gpus 2`` works as two gloo CPU processes.
* Checkpoints are written atomically and loaded safely (:mod:`.checkpoint`), and each holds
  the training data's class names and category ids (:mod:`.class_metadata`).
* Evaluation uses :class:`~segcontrast.evaluation.SegContrastEvaluator`, plus Detectron2's
  ``COCOEvaluator`` (pure-Python COCOeval where there are no compiled ops) when
  ``TEST.SEGCONTRAST.COCO_EVALUATOR`` is on.
* A NaN/inf loss stops training with a message naming the iteration and the last good
  checkpoint.
* Inference over a test set shows a progress bar with ETA (main process), and masks are
  binarised at ``TEST.SEGCONTRAST.MASK_THRESHOLD`` (Detectron2 always uses 0.5).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import weakref
from collections import OrderedDict
from typing import Any

import torch
from detectron2.config import CfgNode
from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.data.datasets.coco import convert_to_coco_json
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase
from detectron2.evaluation import COCOEvaluator, DatasetEvaluator, DatasetEvaluators
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from pycocotools.coco import COCO
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..compat import has_compiled_ops
from ..datasets import SegContrastDatasetMapper, segcontrast_dataset_names, validate_dataset
from ..modeling.postprocessing import MaskThresholdModel
from .checkpoint import SafeDetectionCheckpointer
from .class_metadata import ClassMetadata
from .evaluator import build_segcontrast_evaluator

__all__ = ["SegContrastTrainer", "TrainingDivergedError", "wrap_ddp"]

logger = logging.getLogger(__name__)


class TrainingDivergedError(FloatingPointError):
    """The loss became NaN or infinite."""


def wrap_ddp(model: torch.nn.Module) -> torch.nn.Module:
    """Wrap a model in DDP when several processes run; on CPU without device ids.

    Args:
        model: the model, already on its device.

    Returns:
        The model itself (one process) or its DDP wrapper.
    """
    if comm.get_world_size() == 1:
        return model
    on_cuda = next(model.parameters()).device.type == "cuda"
    device_ids = [comm.get_local_rank()] if on_cuda else None
    return DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False)


class _FiniteLossCheck:
    """Mixin for Detectron2's trainers: every process checks its own losses.

    Detectron2 checks the losses only on the main process, after gathering them; the other
    processes then wait for it forever. Here each process raises on its own non-finite loss,
    before the optimizer step, so no NaN reaches the weights or a checkpoint.
    """

    def _write_metrics(self, loss_dict: dict, data_time: float, prefix: str = "") -> None:
        values = {k: float(v.detach()) for k, v in loss_dict.items()}
        if not math.isfinite(sum(values.values())):
            shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
            raise FloatingPointError(f"Loss became infinite or NaN: {shown}")
        super()._write_metrics(loss_dict, data_time, prefix)


class _CheckedSimpleTrainer(_FiniteLossCheck, SimpleTrainer):
    pass


class _CheckedAMPTrainer(_FiniteLossCheck, AMPTrainer):
    pass


class ProgressLoader:
    """A data loader that shows a progress bar with ETA while it is iterated.

    Detectron2's ``inference_on_dataset`` needs ``len()`` and iteration, nothing else, so the
    bar wraps the loader without changing the inference loop.

    Args:
        loader: the test data loader (has a length).
        description: the bar's label.
        enabled: show the bar (the main process only, so that processes do not interleave).
    """

    def __init__(self, loader: Any, description: str, enabled: bool = True) -> None:
        self.loader = loader
        self.description = description
        self.enabled = enabled

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        yield from tqdm(self.loader, total=len(self.loader), desc=self.description,
                        unit="batch", disable=not self.enabled, mininterval=1.0)


class _RenamedResults(DatasetEvaluator):
    """Runs an evaluator and prefixes its result groups.

    This keeps COCOEvaluator's "segm" apart from SegContrast's.
    """

    def __init__(self, evaluator: DatasetEvaluator, prefix: str) -> None:
        self._evaluator = evaluator
        self._prefix = prefix

    def reset(self) -> None:
        self._evaluator.reset()

    def process(self, inputs: Any, outputs: Any) -> None:
        self._evaluator.process(inputs, outputs)

    def evaluate(self) -> dict | None:
        results = self._evaluator.evaluate()
        if results is None:
            return None
        return OrderedDict((f"{self._prefix}{k}", v) for k, v in results.items())


def _coco_evaluator(dataset_name: str, output_folder: str) -> COCOEvaluator:
    """Detectron2's COCOEvaluator, scoring against the validated dataset.

    COCOEvaluator reads the user's JSON file itself; when validation dropped items (degenerate
    polygons, which pycocotools may misread) or changed them (annotation id 0, which
    pycocotools takes for "no match"), its ground truth is rebuilt from the validated dicts
    instead, so that both evaluators score against the same annotations.
    """
    folder = os.path.join(output_folder, "coco")
    evaluator = COCOEvaluator(dataset_name, output_dir=folder, use_fast_impl=has_compiled_ops())
    report = (validate_dataset(dataset_name) if dataset_name in segcontrast_dataset_names()
              else None)
    if report is not None and (report.dropped or report.changed):
        path = os.path.join(folder, f"{dataset_name}_validated_coco.json")
        if comm.is_main_process():
            os.makedirs(folder, exist_ok=True)
            convert_to_coco_json(dataset_name, path, allow_cached=False)
        comm.synchronize()
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator._coco_api = COCO(path)
    return evaluator


class SegContrastTrainer(DefaultTrainer):
    """Detectron2's default training loop with this project's evaluator and safety nets.

    Adds the SegContrast evaluator, CPU DDP, atomic checkpoints and clear divergence errors.

    Args:
        cfg: a frozen config with SegContrast keys.
        allow_unsafe_pickle: let the checkpointer read ``.pkl`` weights from outside the
            model zoo.
    """

    def __init__(self, cfg: CfgNode, *, allow_unsafe_pickle: bool = False) -> None:
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = wrap_ddp(model)
        trainer_cls = _CheckedAMPTrainer if cfg.SOLVER.AMP.ENABLED else _CheckedSimpleTrainer
        self._trainer = trainer_cls(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = SafeDetectionCheckpointer(
            model,
            cfg.OUTPUT_DIR,
            allow_unsafe_pickle=allow_unsafe_pickle,
            class_metadata=self.training_classes(cfg),
            trainer=weakref.proxy(self),
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    @staticmethod
    def training_classes(cfg: CfgNode) -> ClassMetadata | None:
        """The classes of ``DATASETS.TRAIN`` (Detectron2 requires all sets to share them)."""
        if not cfg.DATASETS.TRAIN:
            return None
        classes = ClassMetadata.from_catalog(cfg.DATASETS.TRAIN[0])
        if classes is None:
            return None
        return ClassMetadata(classes.thing_classes, classes.dataset_ids,
                             tuple(cfg.DATASETS.TRAIN))

    def run_step(self) -> None:
        """One training iteration; a NaN/inf loss becomes :class:`TrainingDivergedError`."""
        try:
            super().run_step()
        except FloatingPointError as err:
            last = self.checkpointer.get_checkpoint_file() if self.checkpointer else ""
            raise TrainingDivergedError(
                f"training diverged: the loss became NaN or infinite at iteration {self.iter} "
                f"({str(err).splitlines()[0]}). Last good checkpoint: "
                f"{last or 'none saved yet'}. Lower SOLVER.BASE_LR or raise "
                "SOLVER.WARMUP_ITERS, then --resume from that checkpoint."
            ) from err

    @classmethod
    def build_train_loader(cls, cfg: CfgNode):
        """The training loader, reading images with SegContrast's mapper (16-bit safe)."""
        return build_detection_train_loader(cfg, mapper=SegContrastDatasetMapper(cfg, True))

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str):
        """The test loader of one dataset, with a progress bar on the main process."""
        loader = build_detection_test_loader(
            cfg, dataset_name, mapper=SegContrastDatasetMapper(cfg, False)
        )
        return ProgressLoader(loader, f"inference {dataset_name}", comm.is_main_process())

    @classmethod
    def test(cls, cfg: CfgNode, model: torch.nn.Module, evaluators: Any = None) -> dict:
        """Evaluate ``model`` on ``DATASETS.TEST``, its masks pasted at the configured threshold.

        Args:
            cfg: the config (``TEST.SEGCONTRAST.MASK_THRESHOLD`` binarises the soft masks).
            model: the model, possibly DDP-wrapped.
            evaluators: as in ``DefaultTrainer.test``.

        Returns:
            The results of every test dataset (one dataset: its results).
        """
        thresholded = MaskThresholdModel(
            model, cfg.TEST.SEGCONTRAST.MASK_THRESHOLD,
            combine_panoptic=cfg.MODEL.PANOPTIC_FPN.COMBINE.ENABLED,
        )
        return super().test(cfg, thresholded, evaluators)

    @classmethod
    def build_evaluator(
        cls, cfg: CfgNode, dataset_name: str, output_folder: str | None = None
    ) -> DatasetEvaluator:
        """SegContrast's evaluator, plus COCOEvaluator when TEST.SEGCONTRAST.COCO_EVALUATOR."""
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        evaluators = [build_segcontrast_evaluator(cfg, dataset_name, output_folder)]
        if cfg.TEST.SEGCONTRAST.COCO_EVALUATOR:
            coco = _coco_evaluator(dataset_name, output_folder)
            evaluators.append(_RenamedResults(coco, "coco_"))
        return evaluators[0] if len(evaluators) == 1 else DatasetEvaluators(evaluators)
