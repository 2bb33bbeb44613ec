"""SegContrast's config: ``add_segcontrast_config(cfg)``, validation, and ``load_config``.

:func:`load_config` is what every tool uses to read a yaml file plus command-line overrides.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import yaml

from . import compat

compat.apply()  # before Detectron2 is imported: makes the registry's Detectron2 usable

from detectron2.config import CfgNode as CN  # noqa: E402
from detectron2.config import get_cfg  # noqa: E402

from .device import use_cuda  # noqa: E402
from .evaluation.settings import EvalSettings, SettingsError  # noqa: E402
from .utils.errors import InputError  # noqa: E402

__all__ = [
    "ConfigError",
    "ConfigValueError",
    "POS_WEIGHT_SCOPES",
    "STRING_OR_NUMBER_KEYS",
    "add_segcontrast_config",
    "load_config",
    "check_override_list",
    "merge_config_file",
    "merge_overrides",
    "normalize_opts",
    "parse_pos_weight",
    "validate_segcontrast_config",
]

POS_WEIGHT_SCOPES = ("batch", "instance")

# Keys whose value is "auto" or a number. yacs fixes a key's type from its default, so the
# value is stored as a string; normalize_opts() keeps command-line numbers as strings too.
STRING_OR_NUMBER_KEYS = ("MODEL.ROI_MASK_HEAD.POS_WEIGHT", "MODEL.SEM_SEG_HEAD.POS_WEIGHT")


logger = logging.getLogger(__name__)


class ConfigError(InputError):
    """A config that cannot be used: a missing file, a yaml error, an unknown key or a bad value."""


class ConfigValueError(ConfigError):
    """A config key holds a value outside its allowed set."""


def add_segcontrast_config(cfg: CN) -> None:
    """Add every SegContrast key, with its default, to a Detectron2 config.

    Args:
        cfg: a config from ``detectron2.config.get_cfg()``; modified in place.
    """
    head = cfg.MODEL.ROI_MASK_HEAD
    # Focal mask loss: weight of positive (foreground) pixels; < 0 disables alpha weighting.
    head.FOCAL_ALPHA = 0.25
    # Focal mask loss: focusing exponent; 0 turns focal loss into (alpha-weighted) BCE.
    head.FOCAL_GAMMA = 2.0
    # Pos-weighted BCE: "auto" (num_neg / num_pos of the mask targets) or a number, as a string.
    head.POS_WEIGHT = "auto"
    # Pos-weighted BCE with "auto": "batch" (one ratio over all ROIs) or "instance" (per ROI).
    head.POS_WEIGHT_SCOPE = "batch"
    # Pos-weighted BCE: "auto" ratios are clamped to [1, MAX_POS_WEIGHT].
    head.MAX_POS_WEIGHT = 20.0
    # Multiplier of the mask loss in the total loss (all mask heads of this project).
    head.LOSS_WEIGHT = 1.0

    # COCO-format datasets registered from the config: a list of [name, json_file, image_root].
    cfg.DATASETS.COCO = []

    cfg.TEST.SEGCONTRAST = CN()
    # The evaluator's settings: every field of segcontrast.evaluation.EvalSettings, upper-case,
    # with its default (the dataclass documents what each means and allows, and checks it).
    for name, value in EvalSettings().to_dict().items():
        cfg.TEST.SEGCONTRAST[name.upper()] = value
    # Also run Detectron2's COCOEvaluator for its familiar bbox/segm AP table (training only).
    cfg.TEST.SEGCONTRAST.COCO_EVALUATOR = False

    add_semantic_head_config(cfg)


def parse_pos_weight(value: Any) -> str | float:
    """Read ``MODEL.ROI_MASK_HEAD.POS_WEIGHT``.

    Args:
        value: "auto", a number, or a string holding a number.

    Returns:
        "auto" or a positive float.

    Raises:
        ConfigValueError: naming the key and the allowed values.
    """
    return _parse_weight(value, "MODEL.ROI_MASK_HEAD.POS_WEIGHT", ("auto",))


def _parse_weight(value: Any, key: str, modes: Sequence[str]) -> str | float:
    if isinstance(value, str) and value.strip().lower() in modes:
        return value.strip().lower()
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not number > 0 or number == float("inf"):
        raise ConfigValueError(
            f"{key} = {value!r} is not allowed: expected {', '.join(map(repr, modes))} or a "
            "positive finite number (e.g. '4.0')."
        )
    return number


def _check_weight_and_gamma(head: CN, prefix: str) -> None:
    """``MAX_POS_WEIGHT >= 1`` and ``FOCAL_GAMMA >= 0``, keys of both SegContrast head kinds."""
    if not head.MAX_POS_WEIGHT >= 1:
        raise ConfigValueError(
            f"{prefix}.MAX_POS_WEIGHT = {head.MAX_POS_WEIGHT!r} is not allowed: "
            "expected a number >= 1."
        )
    if not head.FOCAL_GAMMA >= 0:
        raise ConfigValueError(
            f"{prefix}.FOCAL_GAMMA = {head.FOCAL_GAMMA!r} is not allowed: expected a number >= 0."
        )


def validate_segcontrast_config(cfg: CN) -> None:
    """Check every SegContrast key; raise on the first bad one.

    Args:
        cfg: a config with SegContrast keys.

    Raises:
        ConfigValueError: the message names the key, the value and the allowed values.
    """
    head = cfg.MODEL.ROI_MASK_HEAD
    parse_pos_weight(head.POS_WEIGHT)
    if head.POS_WEIGHT_SCOPE not in POS_WEIGHT_SCOPES:
        raise ConfigValueError(
            f"MODEL.ROI_MASK_HEAD.POS_WEIGHT_SCOPE = {head.POS_WEIGHT_SCOPE!r} is not allowed: "
            f"expected one of {list(POS_WEIGHT_SCOPES)}."
        )
    _check_weight_and_gamma(head, "MODEL.ROI_MASK_HEAD")
    if head.FOCAL_ALPHA > 1:
        raise ConfigValueError(
            f"MODEL.ROI_MASK_HEAD.FOCAL_ALPHA = {head.FOCAL_ALPHA!r} is not allowed: "
            "expected a number in [0, 1], or < 0 to disable alpha weighting."
        )
    validate_semantic_head_config(cfg)
    try:
        EvalSettings.from_cfg(cfg)
    except SettingsError as err:
        raise ConfigValueError(str(err)) from None
    for entry in cfg.DATASETS.COCO:
        if not isinstance(entry, (list, tuple)) or len(entry) != 3:
            raise ConfigValueError(
                f"DATASETS.COCO entry {entry!r} is not allowed: "
                "expected [name, json_file, image_root]."
            )


def _quote_numbers(loaded: dict) -> None:
    """Make numbers at "auto or number" keys of a loaded yaml dict arrive as strings.

    yacs literal-evaluates every string of a loaded dict, so a number (``4.5``) or a numeric
    string (``"4.5"``) is stored as its quoted repr (``"'4.5'"``), which evaluates to "4.5".
    """
    for key in STRING_OR_NUMBER_KEYS:
        *parents, leaf = key.split(".")
        node: Any = loaded
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or leaf not in node:
            continue
        value = node[leaf]
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)) or (isinstance(value, str) and _is_number(value)):
            node[leaf] = repr(str(value))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def merge_config_file(cfg: CN, path: str) -> None:
    """``cfg.merge_from_file(path)``, also accepting numbers at "auto or number" keys.

    yacs fixes a key's type from its default: ``POS_WEIGHT: 4.5`` in a yaml file would be
    refused against the string default "auto". Here such numbers become strings first, an int
    at a float key (``SCORE_THRESHOLD: 0``) becomes a float and an integral float at an int
    key (``MAX_ITER: 100.0``) an int.

    Raises:
        ConfigValueError: a value that is no number at a number key, or a fraction at a
            whole-number key (naming the key and the value).

    Args:
        cfg: the config to update in place.
        path: a yaml file (``_BASE_`` inheritance as in Detectron2).
    """
    loaded = cfg.load_yaml_with_base(path, allow_unsafe=True)
    _quote_numbers(loaded)
    loaded_cfg = type(cfg)(loaded)
    _coerce_loaded_numbers(loaded_cfg, cfg)
    if loaded_cfg.get("VERSION", cfg.VERSION) != cfg.VERSION:
        # An old config version: Detectron2's upgrade path (numbers must then be quoted).
        cfg.merge_from_file(path)
        return
    cfg.merge_from_other_cfg(loaded_cfg)


def normalize_opts(opts: Sequence[str]) -> list[str]:
    """Keep command-line values of "auto or number" keys as strings.

    yacs evaluates ``POS_WEIGHT 4`` to the int 4, which its type check then refuses against the
    string default; quoting the value makes it arrive as the string "4".

    Args:
        opts: trailing ``KEY VALUE`` pairs from the command line.

    Returns:
        A copy of ``opts`` with those values quoted.
    """
    out = list(opts)
    for i in range(0, len(out) - 1, 2):
        if out[i] in STRING_OR_NUMBER_KEYS:
            out[i + 1] = repr(str(out[i + 1]))
    return out


def _number_kind(default: Any) -> str | None:
    """"float", "int" or "bool" for a key whose default is of that kind, else None."""
    if isinstance(default, bool):
        return "bool"
    if not isinstance(default, (int, float)):
        return None
    return "float" if isinstance(default, float) else "int"


def _coerce_number(value: Any, default: Any, key: str) -> Any:
    """A value for a number key, with ints accepted for floats and integral floats for ints.

    yacs fixes a key's type from its default and refuses ``SCORE_THRESHOLD 0`` (an int at a
    float key) or ``MAX_ITER 100.0``; both mean the obvious number.

    Raises:
        ConfigValueError: anything but a number, or a fraction at a whole-number key (or
            anything but True or False at a True/False key).
    """
    kind = _number_kind(default)
    if kind is None:
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigValueError(f"{key} = {value!r} is not allowed: expected True or False.")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigValueError(
            f"{key} = {value!r} is not allowed: expected a number"
            + (" (a whole number)" if kind == "int" else "") + f", e.g. {default!r}."
        )
    if kind == "float":
        return float(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise ConfigValueError(
                f"{key} = {value!r} is not allowed: expected a whole number, e.g. {default!r}."
            )
        return int(value)
    return value


def _coerce_loaded_numbers(loaded: CN, defaults: CN, prefix: str = "") -> None:
    """Apply :func:`_coerce_number` to every key of a loaded yaml config, in place."""
    for key, value in loaded.items():
        if key not in defaults:
            continue  # yacs names unknown keys itself
        default = defaults[key]
        if isinstance(value, CN) and isinstance(default, CN):
            _coerce_loaded_numbers(value, default, f"{prefix}{key}.")
        elif not isinstance(value, CN):
            loaded[key] = _coerce_number(value, default, prefix + key)


def check_override_list(opts: Sequence[str]) -> None:
    """Refuse trailing overrides that hold a command-line flag or a key without a value.

    Every word after the first ``KEY`` is read as part of a ``KEY VALUE`` pair, so a flag put
    there (``... SOLVER.MAX_ITER 100 --resume``) is never seen as a flag.

    Args:
        opts: the trailing ``KEY VALUE`` words.

    Raises:
        ConfigError: naming the flag (or the key without a value).
    """
    for i in range(0, len(opts), 2):
        word = str(opts[i])
        if word.startswith("-") and not _is_number(word):
            after = " ".join(map(str, opts[max(0, i - 2):i])) or "KEY VALUE"
            raise ConfigError(
                f"{word} comes after the KEY VALUE config overrides (after '{after}'): put "
                f"flags before the overrides, e.g. ... {word} KEY VALUE; every word after the "
                "first KEY is read as a KEY VALUE pair"
            )
    if len(opts) % 2:
        raise ConfigError(
            f"the KEY VALUE config overrides end with {opts[-1]}, a key without a value: give "
            f"each key its value (e.g. {opts[-1]} VALUE)"
        )


def merge_overrides(cfg: CN, opts: Sequence[str]) -> None:
    """Merge command-line ``KEY VALUE`` overrides into ``cfg``, numbers read as meant.

    An int is accepted at a float key (``TEST.SEGCONTRAST.SCORE_THRESHOLD 0``) and an integral
    float at an int key (``SOLVER.MAX_ITER 1e3``); "auto or number" keys keep numbers as
    strings (:func:`normalize_opts`).

    Args:
        cfg: the config to update in place.
        opts: trailing ``KEY VALUE`` words.

    Raises:
        ConfigError: a flag among the overrides, a key without a value, an unknown key, or a
            value of the wrong type (naming the key and the value).
    """
    check_override_list(opts)
    words = normalize_opts(opts)
    merged: list[Any] = []
    for key, text in zip(words[0::2], words[1::2], strict=True):
        value: Any = text
        node: Any = cfg
        for part in str(key).split("."):
            node = node.get(part) if isinstance(node, CN) else None
        if _number_kind(node) is not None:
            value = _coerce_number(type(cfg)._decode_cfg_value(text), node, key)
        merged += [key, value]
    try:
        cfg.merge_from_list(merged)
    except (KeyError, ValueError, AssertionError) as err:
        raise ConfigError(f"command-line overrides: {err}") from err


def _yaml_error_message(config_file: str, err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    # The error may sit in a _BASE_ file: the mark names the file it was found in.
    where = getattr(mark, "name", None) or config_file
    if mark is None:
        return f"{where}: not valid yaml: {problem}"
    return f"{where}, line {mark.line + 1}, column {mark.column + 1}: not valid yaml: {problem}"


def load_config(config_file: str, opts: Sequence[str]) -> CN:
    """Read a yaml config and command-line overrides into a validated, unfrozen config.

    Args:
        config_file: the yaml file (``_BASE_`` inheritance as in Detectron2).
        opts: ``KEY VALUE`` overrides.

    Returns:
        The config, with ``MODEL.DEVICE`` set to cpu where there is no GPU (logged).

    Raises:
        ConfigError: a missing file, a yaml syntax error (file, line and column), an unknown
            key or a bad value.
    """
    if not config_file:
        raise ConfigError(
            "--config is required, e.g. --config configs/shapes/mask_rcnn_focal.yaml"
        )
    if not os.path.isfile(config_file):
        raise ConfigError(f"--config {config_file}: no such file")
    cfg = get_cfg()
    add_segcontrast_config(cfg)
    try:
        merge_config_file(cfg, config_file)
    except yaml.YAMLError as err:
        raise ConfigError(_yaml_error_message(config_file, err)) from err
    except ConfigValueError as err:
        raise ConfigValueError(f"{config_file}: {err}") from err
    except (KeyError, ValueError, AssertionError, OSError) as err:
        raise ConfigError(f"{config_file}: {err}") from err
    merge_overrides(cfg, opts)
    validate_segcontrast_config(cfg)
    if cfg.MODEL.DEVICE.startswith("cuda") and not use_cuda():
        cfg.MODEL.DEVICE = "cpu"
        logger.info("No CUDA device found: running on the CPU (MODEL.DEVICE cpu).")
    return cfg


# --- Semantic segmentation heads (MODEL.SEM_SEG_HEAD.*) ----------------------------------------

__all__ += [
    "SEMANTIC_META_ARCHITECTURES",
    "SEM_SEG_POS_WEIGHT_MODES",
    "add_semantic_head_config",
    "model_has_instances",
    "num_thing_classes",
    "model_needs_sem_seg",
    "parse_semantic_pos_weight",
    "validate_semantic_head_config",
]

# Detectron2 meta-architectures that train a semantic head on "sem_seg" targets.
SEMANTIC_META_ARCHITECTURES = ("SemanticSegmentor", "PanopticFPN")
# MODEL.SEM_SEG_HEAD.POS_WEIGHT words; any positive number is allowed as well.
SEM_SEG_POS_WEIGHT_MODES = ("auto", "frequency")
# The ignore label of the semantic targets painted from instance annotations.
SEM_SEG_IGNORE_LABEL = 255


def add_semantic_head_config(cfg: CN) -> None:
    """Add the keys of SegContrast's semantic heads to ``cfg.MODEL.SEM_SEG_HEAD``.

    Args:
        cfg: a config from ``detectron2.config.get_cfg()``; modified in place.
    """
    head = cfg.MODEL.SEM_SEG_HEAD
    # FocalSemSegFPNHead: focusing exponent of -alpha_t (1 - p_t)^gamma log p_t; 0 is CE.
    head.FOCAL_GAMMA = 2.0
    # FocalSemSegFPNHead: NUM_CLASSES per-label weights alpha_t, background first; [] = none.
    head.FOCAL_ALPHA = []
    # PosWeightedSemSegFPNHead: foreground weight "auto" (num_bg / num_fg of the batch), a number,
    # or "frequency" (per label, (total - n_c) / n_c over the DATASETS.TRAIN pixels); a string.
    head.POS_WEIGHT = "auto"
    # PosWeightedSemSegFPNHead: "auto" and "frequency" weights are clamped to [1, MAX_POS_WEIGHT].
    head.MAX_POS_WEIGHT = 20.0


def model_needs_sem_seg(cfg: CN) -> bool:
    """Whether the config's model trains on ``"sem_seg"`` targets (a semantic head)."""
    return cfg.MODEL.META_ARCHITECTURE in SEMANTIC_META_ARCHITECTURES


def model_has_instances(cfg: CN) -> bool:
    """Whether the config's model predicts instances (everything but a ``SemanticSegmentor``)."""
    return cfg.MODEL.META_ARCHITECTURE != "SemanticSegmentor"


def num_thing_classes(cfg: CN) -> tuple[int, str]:
    """K, the model's thing classes, and the key it is read from.

    ``MODEL.ROI_HEADS.NUM_CLASSES`` for a model with instances; ``MODEL.SEM_SEG_HEAD.NUM_CLASSES``
    minus the background label for a ``SemanticSegmentor``.
    """
    if model_has_instances(cfg):
        return cfg.MODEL.ROI_HEADS.NUM_CLASSES, "MODEL.ROI_HEADS.NUM_CLASSES"
    return cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES - 1, "MODEL.SEM_SEG_HEAD.NUM_CLASSES - 1"


def parse_semantic_pos_weight(value: Any) -> str | float:
    """Read ``MODEL.SEM_SEG_HEAD.POS_WEIGHT``.

    Args:
        value: "auto", "frequency", a number, or a string holding a number.

    Returns:
        "auto", "frequency" or a positive float.

    Raises:
        ConfigValueError: naming the key and the allowed values.
    """
    return _parse_weight(value, "MODEL.SEM_SEG_HEAD.POS_WEIGHT", SEM_SEG_POS_WEIGHT_MODES)


def validate_semantic_head_config(cfg: CN) -> None:
    """Check the ``MODEL.SEM_SEG_HEAD`` keys SegContrast adds or relies on.

    Raises:
        ConfigValueError: the message names the key, the value and the allowed values.
    """
    head = cfg.MODEL.SEM_SEG_HEAD
    parse_semantic_pos_weight(head.POS_WEIGHT)
    _check_weight_and_gamma(head, "MODEL.SEM_SEG_HEAD")
    alpha = list(head.FOCAL_ALPHA)
    if alpha and (
        len(alpha) != head.NUM_CLASSES
        or not all(isinstance(a, (int, float)) and 0 <= a < float("inf") for a in alpha)
    ):
        raise ConfigValueError(
            f"MODEL.SEM_SEG_HEAD.FOCAL_ALPHA = {alpha!r} is not allowed: expected [] or "
            f"MODEL.SEM_SEG_HEAD.NUM_CLASSES ({head.NUM_CLASSES}) non-negative numbers, "
            "background first."
        )
    if model_needs_sem_seg(cfg) and head.IGNORE_VALUE != SEM_SEG_IGNORE_LABEL:
        raise ConfigValueError(
            f"MODEL.SEM_SEG_HEAD.IGNORE_VALUE = {head.IGNORE_VALUE!r} is not allowed: the "
            f"semantic targets painted from instance annotations ignore label "
            f"{SEM_SEG_IGNORE_LABEL}, so it must be {SEM_SEG_IGNORE_LABEL}."
        )
