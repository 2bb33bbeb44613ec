"""The evaluator's settings: one dataclass with the defaults, the checks and the config keys.

Every face of the evaluator reads its settings from :class:`EvalSettings`: the Python API
(keyword arguments), ``segcontrast evaluate`` (``TEST.SEGCONTRAST.KEY VALUE`` overrides and
``--config FILE``), and the Detectron2 side (``cfg.TEST.SEGCONTRAST``, whose keys and defaults
``add_segcontrast_config`` takes from here). Reading a yaml config needs no Detectron2: only its
``TEST.SEGCONTRAST`` node is used, ``_BASE_`` files included.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..utils.errors import InputError

__all__ = ["CONFIG_NODE", "EvalSettings", "SettingsError", "read_config_settings"]

CONFIG_NODE = "TEST.SEGCONTRAST"


class SettingsError(InputError):
    """A setting with a value outside what it allows; the message names it."""


def _setting(default: Any, meaning: str, check: str = "", output: bool = False) -> Any:
    return field(default=default, metadata={"meaning": meaning, "check": check,
                                            "output": output})


@dataclass(frozen=True)
class EvalSettings:
    """How predictions are scored. Every field is also the config key ``TEST.SEGCONTRAST.<NAME>``.

    Attributes:
        mask_threshold: float mask probabilities >= this are foreground, in (0, 1).
        iou_threshold: smallest mask IoU of a match (instance metrics, PQ's matching is its own
            0.5 rule), in (0, 1].
        score_threshold: predictions below it are left out of the semantic painting and the
            instance metrics; COCO mask AP always scores all of them. In [0, 1). Mask R-CNN
            keeps detections down to ``MODEL.ROI_HEADS.SCORE_THRESH_TEST`` (0.05): painting
            those would cover the background with low-confidence guesses; 0.5 is Detectron2's
            own cut-off where it turns instances into a label map (panoptic fusion).
        boundary_iou: compute boundary IoU of the matched pairs.
        boundary_dilation_ratio: boundary band width as a fraction of the image diagonal, > 0.
        panoptic: compute PQ, SQ, RQ of the instance predictions.
        panoptic_overlap_threshold: a prediction losing more than this fraction of its mask to
            higher-scored ones gets no panoptic segment, in [0, 1].
        panoptic_output_dir: write the ground-truth and predicted panoptic segments there as
            COCO panoptic PNG + JSON ("": not written; needs ``panoptic``).
        accounting: compute the gap accounting (what fixing each error type gains).
        ap_area: what a detection's area is for COCO's small / medium / large ranges: "mask"
            (its mask area, as Detectron2's and MMDetection's COCO evaluators) or "box" (its
            box ``w * h`` when results carry boxes, pycocotools' ``loadRes``).
        num_worst_images: ground-truth vs prediction overlays drawn for this many worst
            images, >= 0.
    """

    mask_threshold: float = _setting(
        0.5, "predicted mask probabilities >= this are foreground", "(0, 1)")
    iou_threshold: float = _setting(
        0.5, "a prediction matches a ground-truth object when their mask IoU is at least this",
        "(0, 1]")
    score_threshold: float = _setting(
        0.5, "predictions scoring below this are left out of the semantic painting and the "
        "instance metrics (COCO mask AP always uses all of them)", "[0, 1)")
    boundary_iou: bool = _setting(True, "compute boundary IoU of the matched pairs")
    boundary_dilation_ratio: float = _setting(
        0.02, "boundary band width, as a fraction of the image diagonal", "(0, inf)")
    panoptic: bool = _setting(True, "panoptic quality (PQ, SQ, RQ) of the instance predictions")
    panoptic_overlap_threshold: float = _setting(
        0.5, "a prediction losing more than this fraction of its mask to higher-scored ones "
        "gets no panoptic segment", "[0, 1]")
    panoptic_output_dir: str = _setting(
        "", "if set, write the ground-truth and predicted panoptic segments there as COCO "
        "panoptic PNG + JSON", output=True)
    accounting: bool = _setting(
        True, "the gap accounting: what fixing each error type would gain in semantic mIoU, "
        "instance mIoU, PQ and mask AP")
    ap_area: str = _setting(
        "mask", "a detection's area for COCO's small/medium/large ranges: 'mask' (Detectron2's "
        "and MMDetection's COCO evaluators) or 'box' (pycocotools' loadRes with boxes)",
        "mask|box")
    num_worst_images: int = _setting(
        6, "ground-truth vs prediction overlays drawn for this many worst images", "[0, inf)",
        output=True)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            object.__setattr__(self, f.name, _coerce(f, value))
        if self.panoptic_output_dir and not self.panoptic:
            raise SettingsError(
                f"{_key('panoptic_output_dir')} is set but {_key('panoptic')} is False: the "
                "panoptic segments are only built with panoptic on")

    def replace(self, **changes: Any) -> EvalSettings:
        """A copy with some settings changed (checked like the constructor's)."""
        unknown = sorted(set(changes) - set(self.names()))
        if unknown:
            raise SettingsError(f"unknown setting(s) {', '.join(unknown)}; the settings are "
                                f"{', '.join(self.names())}")
        return dataclasses.replace(self, **changes)

    @staticmethod
    def names() -> list[str]:
        """The setting names, in declaration order."""
        return [f.name for f in dataclasses.fields(EvalSettings)]

    def to_dict(self, *, scoring_only: bool = False) -> dict[str, Any]:
        """``{name: value}`` of every setting.

        Args:
            scoring_only: only the settings that change numbers (what ``metrics.json``
                records as "settings"), not where files go or how many are drawn.
        """
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if not (scoring_only and f.metadata["output"])}

    @classmethod
    def from_cfg(cls, cfg: Any) -> EvalSettings:
        """The settings of a Detectron2 config's ``TEST.SEGCONTRAST`` node (missing keys: defaults).

        Args:
            cfg: a Detectron2 ``CfgNode`` (or any mapping with ``TEST.SEGCONTRAST``).
        """
        node = cfg["TEST"]["SEGCONTRAST"] if "SEGCONTRAST" in cfg["TEST"] else {}
        return cls.from_mapping({k: v for k, v in node.items() if k.lower() in cls.names()},
                                where=CONFIG_NODE)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str = CONFIG_NODE) -> EvalSettings:
        """Settings from ``{KEY: value}`` with config-style upper-case (or field) names.

        Raises:
            SettingsError: an unknown key (naming ``where``) or a bad value.
        """
        names = set(cls.names())
        kwargs = {}
        for key, value in values.items():
            name = str(key).lower()
            if name not in names:
                raise SettingsError(
                    f"{where}.{key} is not a setting; the settings are "
                    + ", ".join(n.upper() for n in cls.names()))
            kwargs[name] = value
        return cls(**kwargs)

    def with_overrides(self, opts: Sequence[str]) -> EvalSettings:
        """Apply command-line ``TEST.SEGCONTRAST.KEY VALUE`` pairs (values are strings).

        Raises:
            SettingsError: an odd list, a key outside ``TEST.SEGCONTRAST``, an unknown key or
                a bad value; the message names the key.
        """
        opts = list(opts)
        if len(opts) % 2:
            raise SettingsError(
                f"overrides must be {CONFIG_NODE}.* KEY VALUE pairs; {opts[-1]!r} has no value "
                "(flags such as --workers go before the overrides)")
        changes: dict[str, Any] = {}
        prefix = CONFIG_NODE + "."
        for key, text in zip(opts[0::2], opts[1::2], strict=True):
            if not key.startswith(prefix):
                raise SettingsError(
                    f"overrides must be {prefix}* KEY VALUE pairs (scoring files uses no model "
                    f"settings); found {key}, e.g. TEST.SEGCONTRAST.IOU_THRESHOLD 0.75")
            name = key[len(prefix):].lower()
            if name not in self.names():
                raise SettingsError(
                    f"override {key}: not a setting; the settings are "
                    + ", ".join(prefix + n.upper() for n in self.names()))
            changes[name] = _parse_text(text)
        return self.replace(**changes)


def _key(name: str) -> str:
    """How messages name a setting: its config key."""
    return f"{CONFIG_NODE}.{name.upper()}"


def _refused(name: str, value: Any, expected: str) -> SettingsError:
    """The message of a bad value: the config key, the value, what is allowed, the keyword."""
    return SettingsError(f"{_key(name)} = {value!r} is not allowed: expected {expected} (the "
                         f"{name} setting)")


def _parse_text(text: Any) -> Any:
    """A command-line value as yacs would read it: numbers, booleans, strings."""
    if not isinstance(text, str):
        return text
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _in_range(value: float, check: str) -> bool:
    low, high = check[1:-1].split(",")
    low_v, high_v = float(low), float(high)
    above = value > low_v if check[0] == "(" else value >= low_v
    below = value < high_v if check[-1] == ")" else value <= high_v
    return above and below


def _coerce(f: dataclasses.Field, value: Any) -> Any:
    given = value
    kind = f.type if isinstance(f.type, str) else f.type.__name__
    check = f.metadata.get("check", "")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise _refused(f.name, value, "True or False")
    if kind == "str":
        allowed = check.split("|") if check else []
        if not isinstance(value, str) or (allowed and value not in allowed):
            raise _refused(f.name, value, f"one of {allowed}" if allowed else "a string")
        return value
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if kind == "int":
        if isinstance(value, float) and value.is_integer():
            value, is_int = int(value), True
        if not is_int:
            raise _refused(f.name, value, "a whole number")
    elif kind == "float":
        if not (is_int or isinstance(value, float)) or not math.isfinite(value):
            raise _refused(f.name, value, "a number")
        value = float(value)
    if check and not _in_range(value, check):
        raise _refused(f.name, given, f"a number in {check}")
    return value


def read_config_settings(path: str | os.PathLike) -> dict[str, Any]:
    """The ``TEST.SEGCONTRAST`` node of a yaml config, ``_BASE_`` files merged (no Detectron2).

    Args:
        path: a yaml file as ``tools/train_net.py --config`` takes.

    Returns:
        ``{KEY: value}`` of that node (empty when the file sets none).

    Raises:
        SettingsError: a missing file, yaml that does not parse (file, line, column), or a
            ``_BASE_`` loop.
    """
    import yaml  # only configs need it

    def load(file: str, seen: tuple[str, ...]) -> dict:
        file = os.path.abspath(file)
        if file in seen:
            raise SettingsError(f"{file}: _BASE_ loop ({' -> '.join(seen + (file,))})")
        if not os.path.isfile(file):
            where = f" (the _BASE_ of {seen[-1]})" if seen else ""
            raise SettingsError(f"--config {file}{where}: no such file")
        try:
            with open(file, encoding="utf-8") as f:
                data = yaml.safe_load(f) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            at = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise SettingsError(f"{file}{at}: not valid yaml: {problem}") from None
        if not isinstance(data, dict):
            raise SettingsError(f"{file}: expected a yaml mapping at the top level")
        base = data.pop("_BASE_", None)
        merged: dict = {}
        if base:
            merged = load(os.path.join(os.path.dirname(file), str(base)), seen + (file,))
        _merge(merged, data)
        return merged

    config = load(os.fspath(path), ())
    node: Any = config
    for part in CONFIG_NODE.split("."):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return dict(node) if isinstance(node, dict) else {}


def _merge(into: dict, other: dict) -> None:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
