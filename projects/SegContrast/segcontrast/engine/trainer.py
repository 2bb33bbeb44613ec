"""``SegContrastTrainer``: Detectron2's ``DefaultTrainer`` with this project's pieces plugged in.

Differences from ``DefaultTrainer``, each for a reason:

* DDP wraps the model with ``device_ids=None`` on CPU (v0.6 always passes ``[local_rank]``,
  which DDP refuses for CPU modules), so ``--num-gpus 2`` works as two gloo CPU processes.
* Checkpoints are written atomically and loaded safely (:mod:`.checkpoint`).
* Evaluation uses :class:`~segcontrast.evaluation.SegContrastEvaluator`, plus Detectron2's
  ``COCOEvaluator`` (pure-Python COCOeval where there are no compiled ops) when
  ``TEST.SEGCONTRAST.COCO_EVALUATOR`` is on.
* A NaN/inf loss stops training with a message naming the iteration and the last good
  checkpoint.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections import OrderedDict
from typing import Any

import torch
from detectron2.config import CfgNode
from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase
from detectron2.evaluation import COCOEvaluator, DatasetEvaluator, DatasetEvaluators
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from torch.nn.parallel import DistributedDataParallel

from ..compat import has_compiled_ops
from ..data import SegContrastDatasetMapper
from ..evaluation import build_segcontrast_evaluator
from .checkpoint import SafeDetectionCheckpointer

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


class _RenamedResults(DatasetEvaluator):
    """Runs an evaluator and prefixes its result groups (keeps COCOEvaluator's "segm" apart
    from SegContrast's)."""

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


class SegContrastTrainer(DefaultTrainer):
    """Detectron2's default training loop with the SegContrast evaluator, CPU DDP, atomic
    checkpoints and clear divergence errors.

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
        trainer_cls = AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer
        self._trainer = trainer_cls(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = SafeDetectionCheckpointer(
            model,
            cfg.OUTPUT_DIR,
            allow_unsafe_pickle=allow_unsafe_pickle,
            trainer=weakref.proxy(self),
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    def run_step(self) -> None:
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
        return build_detection_train_loader(cfg, mapper=SegContrastDatasetMapper(cfg, True))

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str):
        return build_detection_test_loader(
            cfg, dataset_name, mapper=SegContrastDatasetMapper(cfg, False)
        )

    @classmethod
    def build_evaluator(
        cls, cfg: CfgNode, dataset_name: str, output_folder: str | None = None
    ) -> DatasetEvaluator:
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        evaluators = [build_segcontrast_evaluator(cfg, dataset_name, output_folder)]
        if cfg.TEST.SEGCONTRAST.COCO_EVALUATOR:
            coco = COCOEvaluator(
                dataset_name,
                output_dir=os.path.join(output_folder, "coco"),
                use_fast_impl=has_compiled_ops(),
            )
            evaluators.append(_RenamedResults(coco, "coco_"))
        return evaluators[0] if len(evaluators) == 1 else DatasetEvaluators(evaluators)
