"""The sentence a report opens with: why the semantic and the instance scores differ.

One builder, :func:`explain`, from the result groups. With the gap accounting it names, for
each side (the lower one first), the error types whose fix would raise it most, with their
counts and gains; where the lower side's main cause costs the other side nothing (a gain that
rounds to 0.0), it says so and why. It never calls a type invisible to a side where fixing it
gains that side something. Without the accounting it lists the error types' counts. Every
count and name comes from the error assignment and the catalog.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from .catalog import ERROR_TYPE_DEFS, NEGLIGIBLE, error_type

__all__ = ["explain", "signed"]

# The accounting's metrics a sentence may name: key, label.
_SIDES = {"semantic_mIoU": "semantic mIoU", "instance_mIoU": "instance mIoU", "PQ": "PQ",
          "AP": "mask AP"}
_PAINTED = "semantic mIoU of the painted instances"
_TOP = 2  # error types named per side


def signed(value: float, digits: int = 1) -> str:
    """``value`` with its sign, never "-0.0" ("+0.0" for a change that rounds to nothing)."""
    rounded = round(value, digits) + 0.0
    return f"{rounded:+.{digits}f}"


def _count(results: Mapping, name: str) -> int:
    counts = results.get("contrast", {})
    value = counts.get(name)
    if value is None:
        value = results.get("accounting", {}).get(f"count-{name}", 0)
    return int(value or 0)


def _head(results: Mapping) -> str:
    sem = results["semantic"]["mIoU"]
    inst = results["instance"]["mIoU"]
    if "semantic_from_instances" in results:
        painted = results["semantic_from_instances"]["mIoU"]
        return (f"Semantic mIoU {sem:.1f} from the semantic head and {painted:.1f} from the "
                f"instances painted as labels vs instance mIoU {inst:.1f} (painted - instance: "
                f"{_gap(painted - inst)})")
    return f"Semantic mIoU {sem:.1f} vs instance mIoU {inst:.1f} ({_gap(sem - inst)})"


def _gap(value: float) -> str:
    text = signed(value)
    return "0.0 points" if text == "+0.0" else f"{text} points"


def _counts_only(results: Mapping) -> str:
    """Without the accounting: each error type's count (catalog order)."""
    parts = [error_type(d.name).noun(n) for d in ERROR_TYPE_DEFS
             if (n := _count(results, d.name)) > 0 and d.name != "low_score"]
    if not parts:
        return "no errors of any type: every prediction matches its object exactly"
    return ("errors by type: " + ", ".join(parts) + " (the gap accounting, accounting=True, "
            "says what fixing each gains on each side)")


def _gains(acc: Mapping, side: str) -> list[tuple[float, str]]:
    """The error types whose fix raises ``side`` by more than nothing, largest first."""
    found = []
    for d in ERROR_TYPE_DEFS:
        gain = acc.get(f"delta_{side}-{d.name}", math.nan)
        if gain is not None and not math.isnan(gain) and gain >= NEGLIGIBLE:
            found.append((float(gain), d.name))
    found.sort(key=lambda item: -item[0])
    return found[:_TOP]


def _side_label(side: str, painted: bool) -> str:
    return _PAINTED if side == "semantic_mIoU" and painted else _SIDES[side]


def _cause(results: Mapping, acc: Mapping, name: str, gain: float, other: str | None,
           painted: bool) -> str:
    """"127 predictions on no object (+24.1 if removed; instance mIoU +0.0: ...)"."""
    kind = error_type(name)
    text = f"{kind.noun(_count(results, name))} ({signed(gain)} {kind.fix}"
    if other is not None:
        cost = acc.get(f"delta_{other}-{name}", math.nan)
        if cost is not None and not math.isnan(cost):
            label = _side_label(other, painted)
            if abs(cost) < NEGLIGIBLE:
                why = kind.why_invisible(other)
                text += f"; {label} {signed(cost)}" + (f": {why}" if why else "")
            else:
                text += f"; {label} {signed(cost)} too"
    return text + ")"


def _side_clause(results: Mapping, acc: Mapping, side: str, other: str | None,
                 painted: bool) -> str:
    label = _side_label(side, painted)
    gains = _gains(acc, side)
    if not gains:
        return f"no single fix would raise {label}"
    causes = [_cause(results, acc, name, gain, other if i == 0 else None, painted)
              for i, (gain, name) in enumerate(gains)]
    return f"{label} loses most to " + " and ".join(causes)


def explain(results: Mapping, *, also: Sequence[str] = ()) -> str:
    """The sentence on why the semantic and the instance scores differ.

    Args:
        results: the result groups ("semantic", "instance", "contrast", and "accounting"
            when it was computed).
        also: further accounting metrics to name the main causes of ("PQ", "AP").

    Returns:
        One sentence (for a semantic-only model: what it lacks).
    """
    sem = results["semantic"]["mIoU"]
    if "instance" not in results:
        return (
            f"Semantic mIoU {sem:.1f}. The model gave no instances, so only the semantic side is "
            "scored: instance metrics (instance mIoU, mask AP, the error types) need instance "
            "predictions, from a model with an instance head."
        )
    inst = results["instance"]["mIoU"]
    if math.isnan(sem) or math.isnan(inst):
        return "Semantic and instance mIoU cannot be compared: one of them is undefined."
    acc = results.get("accounting")
    if not acc:
        return f"{_head(results)}: {_counts_only(results)}."
    painted = "semantic_from_instances" in results
    sides = ["semantic_mIoU", "instance_mIoU"]
    if acc["semantic_mIoU"] > acc["instance_mIoU"]:
        sides.reverse()  # the lower side first: its causes are why it is lower
    if any(math.isnan(acc[s]) for s in sides):
        return f"{_head(results)}: the accounting cannot compare undefined scores."
    clauses = [_side_clause(results, acc, sides[0], sides[1], painted),
               _side_clause(results, acc, sides[1], None, painted)]
    clauses += [_side_clause(results, acc, key, None, painted) for key in also
                if key in _SIDES and key in acc]
    return f"{_head(results)}: " + "; ".join(clauses) + "."
