"""Class names and category ids that travel with a model.

A model predicts contiguous class indices 0..K-1; a dataset's categories have their own ids
(1..3, 1000 and 5, ...) and names. A training run stores both in every checkpoint (key
:data:`CHECKPOINT_KEY`), so that prediction, the threshold sweep and eval-only know them from the
weights alone: ``predictions.json`` then holds the dataset's ids and the overlays its names.
A dataset named on the command line (``--dataset`` / ``--metadata``) overrides them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.catalog import Metadata

from ..utils.errors import InputError

__all__ = [
    "CHECKPOINT_KEY",
    "ClassMetadata",
    "ClassMetadataError",
    "check_weights_match_dataset",
    "choose_prediction_classes",
]

logger = logging.getLogger(__name__)

CHECKPOINT_KEY = "segcontrast_classes"


class ClassMetadataError(InputError):
    """Class names that cannot be used: an unknown dataset, or a class count that differs."""


@dataclass(frozen=True)
class ClassMetadata:
    """The classes of a model, in its contiguous order.

    Attributes:
        thing_classes: K names.
        dataset_ids: K dataset category ids (``dataset_ids[k]`` is class k's id in the JSON).
        datasets: the datasets they come from (training sets, or the one named by the user).
        source: where they were read, for messages ("the weights out/model_final.pth", ...).
    """

    thing_classes: tuple[str, ...]
    dataset_ids: tuple[int, ...]
    datasets: tuple[str, ...] = ()
    source: str = ""

    @property
    def num_classes(self) -> int:
        """K."""
        return len(self.thing_classes)

    def to_checkpoint(self) -> dict[str, list]:
        """Plain lists and strings: what ``torch.load(weights_only=True)`` reads back."""
        return {"thing_classes": list(self.thing_classes),
                "dataset_ids": [int(i) for i in self.dataset_ids],
                "datasets": list(self.datasets)}

    @classmethod
    def from_checkpoint(cls, value: Any, source: str = "") -> ClassMetadata | None:
        """Read what :meth:`to_checkpoint` wrote; None when it is absent or malformed."""
        if not isinstance(value, dict):
            return None
        names, ids = value.get("thing_classes"), value.get("dataset_ids")
        if (not isinstance(names, list) or not isinstance(ids, list) or len(names) != len(ids)
                or not all(isinstance(n, str) for n in names)
                or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)):
            return None
        datasets = value.get("datasets") or []
        return cls(tuple(names), tuple(ids), tuple(str(d) for d in datasets), source)

    @classmethod
    def from_catalog(cls, name: str, source: str = "") -> ClassMetadata | None:
        """The classes in ``MetadataCatalog.get(name)``; None when it has no ``thing_classes``.

        Without ``thing_dataset_id_to_contiguous_id`` the ids are 0..K-1.
        """
        meta = MetadataCatalog.get(name)
        names = meta.get("thing_classes", None)
        if not names:
            return None
        to_contiguous = meta.get("thing_dataset_id_to_contiguous_id", None) or {}
        by_index = {v: k for k, v in to_contiguous.items()}
        ids = tuple(int(by_index.get(k, k)) for k in range(len(names)))
        return cls(tuple(names), ids, (name,), source or f"dataset {name}")

    def to_dataset_id(self, contiguous: int) -> int:
        """The dataset's category id of a contiguous class."""
        return self.dataset_ids[contiguous]

    def visualizer_metadata(self) -> Metadata:
        """A Detectron2 ``Metadata`` for the ``Visualizer``.

        ``stuff_classes`` names the labels of a ``sem_seg`` output (background first).
        """
        return Metadata(name=f"segcontrast classes from {self.source}",
                        thing_classes=list(self.thing_classes),
                        stuff_classes=["background", *self.thing_classes])

    def describe(self) -> str:
        """``"1 date, 5 fig, 9 kiwi"``: each class's dataset id and name."""
        return ", ".join(f"{i} {n}" for i, n in zip(self.dataset_ids, self.thing_classes,
                                                   strict=True))


def _placeholders(num_classes: int) -> ClassMetadata:
    return ClassMetadata(tuple(f"class_{i}" for i in range(num_classes)), tuple(range(num_classes)),
                         (), "no source (placeholders)")


def _registered_dataset_classes(name: str, flag: str) -> ClassMetadata:
    """The classes of a dataset registered in this process (validated first when it is ours)."""
    # Imported here: data.coco pulls in the validator, which the weights-only path needs not.
    from ..datasets import ensure_builtin_dataset, segcontrast_dataset_names, validate_dataset

    if name not in DatasetCatalog.list():
        known = sorted(n for n in DatasetCatalog.list() if not n.startswith("__"))
        shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
        raise ClassMetadataError(
            f"{flag} {name}: no dataset of that name is registered (registered: {shown}); "
            "register it with --dataset NAME=JSON:IMAGE_ROOT or DATASETS.COCO"
        )
    if name in segcontrast_dataset_names():
        ensure_builtin_dataset(name)
        validate_dataset(name)
    classes = ClassMetadata.from_catalog(name, f"{flag} {name}")
    if classes is None:
        raise ClassMetadataError(f"{flag} {name}: the dataset has no class names (thing_classes)")
    return classes


def _check_count(classes: ClassMetadata, num_classes: int) -> None:
    if classes.num_classes != num_classes:
        raise ClassMetadataError(
            f"{classes.source} has {classes.num_classes} classes ({classes.describe()}), but "
            f"the config's model has {num_classes} (MODEL.ROI_HEADS.NUM_CLASSES; "
            "MODEL.SEM_SEG_HEAD.NUM_CLASSES - 1 for a semantic model): use the config the "
            "weights were trained with, or a dataset with the same classes"
        )


def choose_prediction_classes(
    num_classes: int,
    *,
    from_weights: ClassMetadata | None,
    override: str | None = None,
    override_flag: str = "--metadata",
    config_datasets: Sequence[str] = (),
) -> ClassMetadata:
    """The classes ``tools/predict.py`` names its predictions with.

    In order: the dataset named on the command line; the classes stored in the weights; the
    metadata of the config's first test dataset when it already has names (Detectron2's builtin
    COCO sets, for model-zoo weights); else ``class_<k>`` with ids k, and a warning.

    Args:
        num_classes: ``MODEL.ROI_HEADS.NUM_CLASSES``.
        from_weights: what the checkpoint holds (None for weights saved without it).
        override: a registered dataset's name from the command line.
        override_flag: the flag that named it, for messages.
        config_datasets: ``DATASETS.TEST``.

    Returns:
        The classes, with ``source`` saying where they came from.

    Raises:
        ClassMetadataError: ``override`` is not registered, or the chosen classes are not
            ``num_classes`` many.
    """
    if override:
        chosen = _registered_dataset_classes(override, override_flag)
        if from_weights is not None and from_weights.thing_classes != chosen.thing_classes:
            logger.warning(
                "%s: its classes (%s) differ from those the weights were trained on (%s); "
                "using %s's.", chosen.source, chosen.describe(), from_weights.describe(), override)
    elif from_weights is not None:
        chosen = from_weights
    else:
        chosen = None
        if config_datasets and config_datasets[0] in DatasetCatalog.list():
            chosen = ClassMetadata.from_catalog(config_datasets[0],
                                                f"DATASETS.TEST {config_datasets[0]}")
        if chosen is None:
            logger.warning(
                "The weights hold no class names (saved by another program): predictions are "
                "named class_0..class_%d with category ids 0..%d. Pass --dataset "
                "NAME=JSON:IMAGE_ROOT (or --metadata NAME) to use a dataset's names and ids.",
                num_classes - 1, num_classes - 1)
            return _placeholders(num_classes)
    _check_count(chosen, num_classes)
    return chosen


def check_weights_match_dataset(from_weights: ClassMetadata | None, dataset_name: str) -> None:
    """Compare the classes stored in the weights with the dataset they are evaluated on.

    Args:
        from_weights: what the checkpoint holds (None: nothing to compare).
        dataset_name: the registered, validated test dataset.

    Raises:
        ClassMetadataError: the numbers of classes differ. Other names or ids only warn (the
            dataset may have renamed them), naming both.
    """
    if from_weights is None:
        return
    dataset = ClassMetadata.from_catalog(dataset_name)
    if dataset is None:
        return
    if dataset.num_classes != from_weights.num_classes:
        raise ClassMetadataError(
            f"{from_weights.source} was trained on {from_weights.num_classes} classes "
            f"({from_weights.describe()}), but dataset {dataset_name} has {dataset.num_classes} "
            f"({dataset.describe()})"
        )
    if (dataset.thing_classes, dataset.dataset_ids) != (from_weights.thing_classes,
                                                        from_weights.dataset_ids):
        logger.warning(
            "%s was trained on the classes %s; dataset %s has %s: its predictions are scored as "
            "%s's classes, in that order.", from_weights.source, from_weights.describe(),
            dataset_name, dataset.describe(), dataset_name)
