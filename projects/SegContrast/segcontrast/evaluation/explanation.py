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


# row: (what the instance side loses to, what the fix does, the error as a gerund)
_ROWS = {
    "merged": ("merged objects", "if separated", "merging"),
    "split": ("split objects", "if joined", "splitting"),
    "duplicate": ("duplicates", "if removed", "duplicating"),
    "class_confusion": ("class confusions", "if relabelled", "confusing classes"),
    "localisation": ("misplaced predictions", "if placed on their object", "misplacing"),
    "mask_quality": ("imprecise masks", "if exact", "imprecision"),
    "missed": ("missed objects", "if found", "missing objects"),
    "background": ("background false positives", "if removed", "a false positive"),
    "in_crowd": ("predictions in crowd regions", "if removed", "predicting in a crowd"),
    "low_score": ("low-score predictions", "if removed", "a low score"),
}
# structural errors first: they are the ones a semantic score cannot see
_STRUCTURAL = ("merged", "split", "duplicate")


def explain_accounting(results: dict) -> str:
    """The sentence the report opens with: what the gap accounting's fixes would gain.

    Names the two rows whose fix would raise instance mIoU most, and what the first
    structural one of them (or the first) costs the semantic side.
    """
    acc = results["accounting"]
    sem, inst = acc["semantic_mIoU"], acc["instance_mIoU"]
    label = ("semantic mIoU (painted instances)" if "semantic_from_instances" in results
             else "semantic mIoU")
    head = f"{label[0].upper()}{label[1:]} {sem:.1f} vs instance mIoU {inst:.1f}"
    if math.isnan(sem) or math.isnan(inst):
        return head + ": the accounting cannot compare undefined scores."
    gains = [(acc[f"delta_instance_mIoU-{row}"], row) for row in _ROWS
             if acc.get(f"delta_instance_mIoU-{row}", 0.0) > 0.05]
    gains.sort(key=lambda item: -item[0])
    if not gains:
        return head + ": no single fix would raise the instance side."
    top = gains[:2]
    parts = []
    for i, (gain, row) in enumerate(top):
        noun, condition, _ = _ROWS[row]
        parts.append(f"{noun} ({gain:+.1f}{' ' + condition if i == 0 else ''})")
    text = f"{head}: the instance side loses most to " + " and ".join(parts)
    focus = next((row for _, row in top if row in _STRUCTURAL), top[0][1])
    gain = acc[f"delta_instance_mIoU-{focus}"]
    cost = acc[f"delta_semantic_mIoU-{focus}"] + 0.0  # no "-0.0"
    gerund = _ROWS[focus][2]
    if abs(cost) < 0.25 * gain:
        text += (f"; {gerund} costs the semantic side only {cost:+.1f}: it cannot see it.")
    else:
        text += f"; {gerund} costs the semantic side {cost:+.1f} too."
    return text
