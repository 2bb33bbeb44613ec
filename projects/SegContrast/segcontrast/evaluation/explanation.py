"""The sentences a person reads under the numbers: why the semantic and instance scores differ."""

from __future__ import annotations

import math

__all__ = ["explain"]


def explain(results: dict) -> str:
    """One or two sentences on where the semantic and the instance scores disagree."""
    sem = results["semantic"]["mIoU"]
    if "instance" not in results:
        return (
            f"Semantic mIoU {sem:.1f}. The model gave no instances, so only the semantic side is "
            "scored: instance metrics (instance mIoU, mask AP, the merged/split/missed counts) "
            "need instance predictions, from a model with an instance head."
        )
    inst = results["instance"]["mIoU"]
    c = results["contrast"]
    if math.isnan(sem) or math.isnan(inst):
        return "Semantic and instance mIoU cannot be compared: one of them is undefined."
    parts = []
    labels = (
        ("merged", "predictions merged two or more objects"),
        ("split", "objects were split into several predictions"),
        ("duplicates", "predictions were duplicates of found objects"),
        ("class_confusions", "predictions found an object but gave the wrong class"),
        ("missed", "objects were missed"),
        ("false_positives", "predictions matched no object"),
    )
    for key, text in labels:
        if c.get(key, 0) > 0:
            parts.append(f"{int(c[key])} {text}")
    gap = sem - inst
    if "semantic_from_instances" in results:
        painted = results["semantic_from_instances"]["mIoU"]
        head = (
            f"Semantic mIoU {sem:.1f} from the semantic head, {painted:.1f} from the instances "
            f"painted as labels, vs instance mIoU {inst:.1f} ({gap:+.1f} points): semantic "
            "IoU pools the pixels of each class, instance IoU scores every object on its own."
        )
    else:
        head = (
            f"Semantic mIoU {sem:.1f} vs instance mIoU {inst:.1f} ({gap:+.1f} points): "
            "semantic IoU pools the pixels of each class, instance IoU scores every object "
            "on its own."
        )
    if not parts:
        return head + " No merges, splits, duplicates, confusions, misses or false positives."
    return head + " Only the instance side sees that " + "; ".join(parts) + "."
