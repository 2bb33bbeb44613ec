"""Evaluate a synthetic dataset in 2 gloo processes and in 1; save both (test_distributed.py).

python tests/evaluation/distributed_check.py OUTPUT_DIR
"""

import pickle
import sys
from pathlib import Path

import segcontrast  # noqa: F401
from detectron2.utils import comm
from segcontrast.engine.launch import launch
from segcontrast.evaluation import SegContrastEvaluator
from synthetic import (  # this folder is on sys.path when run as a script
    register_synthetic_dataset,
    synthetic_dataset,
    synthetic_predictions,
)

NAME = "segcontrast_distributed_check"


def evaluate(rank: int, world: int, output_dir: Path):
    dicts = synthetic_dataset(10, height=64, width=80, seed=11)
    register_synthetic_dataset(NAME, dicts, 10)
    evaluator = SegContrastEvaluator(NAME, str(output_dir), num_worst_images=3,
                                     score_threshold=0.3,
                                     panoptic_output_dir=str(output_dir / "panoptic"))
    evaluator.reset()
    per_rank = (len(dicts) + world - 1) // world  # contiguous shards, like InferenceSampler
    for d in dicts[rank * per_rank : (rank + 1) * per_rank]:
        evaluator.process(
            [{"image_id": d["image_id"], "file_name": d["file_name"]}],
            [{"instances": synthetic_predictions(d, seed=11)}],
        )
    return evaluator.evaluate()


def worker(output_dir: str) -> None:
    results = evaluate(comm.get_rank(), comm.get_world_size(), Path(output_dir) / "two")
    if comm.is_main_process():
        (Path(output_dir) / "two.pkl").write_bytes(pickle.dumps(results))
    elif results is not None:
        raise AssertionError("evaluate() must return None on other processes")


if __name__ == "__main__":
    out = sys.argv[1]
    launch(worker, 2, dist_url="auto", args=(out,))
    single = evaluate(0, 1, Path(out) / "one")
    (Path(out) / "one.pkl").write_bytes(pickle.dumps(single))
