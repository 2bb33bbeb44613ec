"""Evaluate a synthetic dataset in 2 gloo processes and in 1; save both (test_distributed.py).

Twice: Mask R-CNN-like outputs (instances), and Panoptic FPN-like ones (instances and sem_seg
logits, the two semantic columns).

python tests/evaluation/distributed_check.py OUTPUT_DIR

The two workers are forked from this process after its imports (a spawned worker would import
torch and Detectron2 again, seconds each) and set up exactly as ``segcontrast.engine.launch``
sets up its workers; the single-process evaluation runs here meanwhile.
"""

import pickle
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import segcontrast.evaluation.report.overlays  # noqa: F401  (imported once, before the fork)
import torch
import torch.multiprocessing as mp
from detectron2.utils import comm
from segcontrast.data.semantic_gt import IGNORE_LABEL, semantic_gt_from_record
from segcontrast.engine.evaluator import SegContrastEvaluator
from segcontrast.engine.launch import _distributed_worker, _find_free_port
from synthetic import (  # this folder is on sys.path when run as a script
    register_synthetic_dataset,
    synthetic_dataset,
    synthetic_predictions,
)

NAME = "segcontrast_distributed_check"
WORLD = 2


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
    evaluator = SegContrastEvaluator(NAME, str(output_dir), num_worst_images=3,
                                     score_threshold=0.3,
                                     panoptic_output_dir=str(output_dir / "panoptic"))
    evaluator.reset()
    per_rank = (len(dicts) + world - 1) // world  # contiguous shards, like InferenceSampler
    for d in dicts[rank * per_rank : (rank + 1) * per_rank]:
        output = {"instances": synthetic_predictions(d, seed=11)}
        if with_sem_seg:
            output["sem_seg"] = semantic_logits(d)
        evaluator.process([{"image_id": d["image_id"], "file_name": d["file_name"]}], [output])
    return evaluator.evaluate()


def worker(output_dir: str) -> None:
    assert comm.get_world_size() == WORLD and comm.get_local_size() == WORLD
    for name, with_sem_seg in (("two", False), ("two_sem_seg", True)):
        results = evaluate(comm.get_rank(), comm.get_world_size(), Path(output_dir) / name,
                           with_sem_seg)
        if comm.is_main_process():
            (Path(output_dir) / f"{name}.pkl").write_bytes(pickle.dumps(results))
        elif results is not None:
            raise AssertionError("evaluate() must return None on other processes")


if __name__ == "__main__":
    out = sys.argv[1]
    url = f"tcp://127.0.0.1:{_find_free_port()}"
    # Arguments as segcontrast.engine.launch passes them: (function, world size, processes per
    # machine, machine rank, URL, function arguments, timeout).
    workers = mp.start_processes(
        _distributed_worker, args=(worker, WORLD, WORLD, 0, url, (out,), timedelta(minutes=5)),
        nprocs=WORLD, join=False, start_method="fork",
    )
    for name, with_sem_seg in (("one", False), ("one_sem_seg", True)):
        single = evaluate(0, 1, Path(out) / name, with_sem_seg)
        (Path(out) / f"{name}.pkl").write_bytes(pickle.dumps(single))
    while not workers.join():  # raises if a worker failed
        pass
