"""Evaluate a synthetic dataset in 2 gloo processes and in 1; save both (test_distributed.py).

Twice: Mask R-CNN-like outputs (instances), and Panoptic FPN-like ones (instances and sem_seg
logits, the two semantic columns).

python tests/evaluation/distributed_check.py OUTPUT_DIR
"""

import pickle
import sys
from pathlib import Path

import numpy as np
import segcontrast  # noqa: F401
import torch
from detectron2.utils import comm
from segcontrast.data.semantic_gt import IGNORE_LABEL, semantic_gt_from_record
from segcontrast.engine.launch import launch
from segcontrast.evaluation import SegContrastEvaluator
from synthetic import (  # this folder is on sys.path when run as a script
    register_synthetic_dataset,
    synthetic_dataset,
    synthetic_predictions,
)

NAME = "segcontrast_distributed_check"


def semantic_logits(record: dict, num_classes: int = 10) -> torch.Tensor:
    """(K + 1, H, W) logits of a semantic head: noise, raised at the ground-truth labels."""
    labels = semantic_gt_from_record(record, num_classes).astype(np.int64)
    labels[labels == IGNORE_LABEL] = 0
    rng = np.random.default_rng([11, int(record["image_id"]), 3])
    logits = rng.normal(0, 1, (num_classes + 1, *labels.shape)).astype(np.float32)
    np.put_along_axis(logits, labels[None], 1.5 + np.take_along_axis(logits, labels[None], 0), 0)
    return torch.from_numpy(logits)


def evaluate(rank: int, world: int, output_dir: Path, with_sem_seg: bool = False):
    dicts = synthetic_dataset(10, height=64, width=80, seed=11)
    register_synthetic_dataset(NAME, dicts, 10)
    evaluator = SegContrastEvaluator(NAME, str(output_dir), num_worst_images=3)
    evaluator.reset()
    per_rank = (len(dicts) + world - 1) // world  # contiguous shards, like InferenceSampler
    for d in dicts[rank * per_rank : (rank + 1) * per_rank]:
        output = {"instances": synthetic_predictions(d, seed=11)}
        if with_sem_seg:
            output["sem_seg"] = semantic_logits(d)
        evaluator.process([{"image_id": d["image_id"], "file_name": d["file_name"]}], [output])
    return evaluator.evaluate()


def worker(output_dir: str) -> None:
    for name, with_sem_seg in (("two", False), ("two_sem_seg", True)):
        results = evaluate(comm.get_rank(), comm.get_world_size(), Path(output_dir) / name,
                           with_sem_seg)
        if comm.is_main_process():
            (Path(output_dir) / f"{name}.pkl").write_bytes(pickle.dumps(results))
        elif results is not None:
            raise AssertionError("evaluate() must return None on other processes")


if __name__ == "__main__":
    out = sys.argv[1]
    launch(worker, 2, dist_url="auto", args=(out,))
    for name, with_sem_seg in (("one", False), ("one_sem_seg", True)):
        single = evaluate(0, 1, Path(out) / name, with_sem_seg)
        (Path(out) / f"{name}.pkl").write_bytes(pickle.dumps(single))
