"""Checkpoints that are written atomically and read safely.

* Saving: the checkpoint goes to a temporary file in the same folder, is flushed to disk, then
  renamed over the final name; ``last_checkpoint`` is replaced the same way, after the
  checkpoint itself. An interrupted save leaves at most a stray ``*.tmp`` file, never a
  truncated checkpoint that ``last_checkpoint`` points to.
* Loading: ``.pth`` files go through ``torch.load(weights_only=True)``, which cannot run code.
  Pickled ``.pkl`` weights (Detectron2 / Caffe2 model-zoo format) can run arbitrary code when
  unpickled, so they are read only when they come from Detectron2's model-zoo URLs or when the
  user passes ``--allow-unsafe-pickle``.
* Eval-only: :func:`load_weights_for_eval` refuses weights that leave any parameter of the
  model at its random initial value.
* Every checkpoint a training run writes also holds its classes (names and dataset category
  ids, :mod:`.class_metadata`); :func:`load_weights_for_eval` returns them.
* Problems with ``MODEL.WEIGHTS`` are :class:`WeightsError` with one clear message: a missing
  file, a file that is not a PyTorch checkpoint (checked by its first bytes), a URL that cannot
  be downloaded (no network: the message says how to use a local file instead).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
from collections.abc import Iterator
from typing import Any

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils.file_io import Detectron2Handler, PathManager

from ..utils import atomic_write
from .class_metadata import CHECKPOINT_KEY, ClassMetadata

__all__ = [
    "EMPTY_EVAL_WEIGHTS",
    "MODEL_ZOO_PREFIXES",
    "SafeDetectionCheckpointer",
    "UnsafeWeightsError",
    "WeightsError",
    "check_weights_file",
    "load_weights_for_eval",
    "local_weights_file",
]

logger = logging.getLogger(__name__)

MODEL_ZOO_PREFIXES = ("detectron2://", "https://dl.fbaipublicfiles.com/detectron2/")
EMPTY_EVAL_WEIGHTS = (
    "MODEL.WEIGHTS is empty: --eval-only needs trained weights, e.g. "
    "`MODEL.WEIGHTS output/run/model_final.pth`. Refusing to evaluate a randomly "
    "initialised model."
)


class WeightsError(RuntimeError):
    """Weights are missing, unreadable, or do not fit the model."""


class UnsafeWeightsError(WeightsError):
    """A pickled weights file was refused because loading it could run code."""


# torch.save writes a zip archive; files from torch < 1.6 (and torch.save with
# _use_new_zipfile_serialization=False) are a pickle, which starts with the PROTO opcode.
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = b"\x80"


def _is_url(path: str) -> bool:
    return "://" in path


def _download_url(url: str) -> str:
    """The https URL that a ``detectron2://`` path stands for (other URLs as they are)."""
    if url.startswith(Detectron2Handler.PREFIX):
        return Detectron2Handler.S3_DETECTRON2_PREFIX + url[len(Detectron2Handler.PREFIX):]
    return url


class _DropRecords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


@contextlib.contextmanager
def _without_download_error_log() -> Iterator[None]:
    """Keep iopath's own record of a failed download off the console.

    Without a handler it would be a bare line on stderr; the WeightsError raised instead says
    it once, with what to do.
    """
    download_logger = logging.getLogger("iopath.common.download")
    drop = _DropRecords()
    download_logger.addFilter(drop)
    try:
        yield
    finally:
        download_logger.removeFilter(drop)


def local_weights_file(weights: str) -> str:
    """The local file of ``MODEL.WEIGHTS``: the path itself, or a URL downloaded to the cache.

    Args:
        weights: a path or a URL (``detectron2://``, ``https://``).

    Returns:
        A path that exists.

    Raises:
        WeightsError: a missing file, or a URL that cannot be downloaded; the message says
            which URL, that it needs a network, and how to use a local file instead.
    """
    if not _is_url(weights):
        if not os.path.isfile(weights):
            what = "is a folder, not a file" if os.path.isdir(weights) else "no such file"
            raise WeightsError(f"MODEL.WEIGHTS = {weights}: {what}.")
        return weights
    url = _download_url(weights)
    try:
        with _without_download_error_log():
            local = PathManager.get_local_path(weights)
    except Exception as err:  # urllib, http.client and iopath raise many types
        reason = str(getattr(err, "reason", "") or err).strip() or type(err).__name__
        via = f" ({url})" if url != weights else ""
        raise WeightsError(
            f"MODEL.WEIGHTS = {weights}{via}: cannot download it ({reason}); this needs a "
            "network connection. Download the file on a machine that has one and set "
            "MODEL.WEIGHTS to the local file, or set MODEL.WEIGHTS \"\" to train from scratch."
        ) from None
    if not os.path.isfile(local):
        raise WeightsError(f"MODEL.WEIGHTS = {weights}: the download gave no file ({local}).")
    return local


def check_weights_file(path: str) -> None:
    """Refuse a local file that is not a PyTorch checkpoint, by its first bytes.

    ``.pkl`` files (Detectron2's pickled weights) are checked when they are read.

    Args:
        path: a local file.

    Raises:
        WeightsError: the file is empty or is not a zip archive or a pickle.
    """
    if path.endswith(".pkl"):
        return
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as err:
        raise WeightsError(f"{path}: cannot read the weights file: {err}") from None
    if not head:
        raise WeightsError(f"{path} is not a PyTorch checkpoint: the file is empty (0 bytes).")
    if not (head.startswith(_ZIP_MAGIC) or head.startswith(_PICKLE_PROTO)):
        raise WeightsError(
            f"{path} is not a PyTorch checkpoint (it starts with {head!r}; a file written by "
            "torch.save starts with b'PK' or b'\\x80'). Check MODEL.WEIGHTS / --weights."
        )


class SafeDetectionCheckpointer(DetectionCheckpointer):
    """A ``DetectionCheckpointer`` with atomic saves and safe loads (see module docstring).

    Args:
        model: the model (or DDP-wrapped model).
        save_dir: where checkpoints go.
        allow_unsafe_pickle: read ``.pkl`` files that are not from Detectron2's model zoo.
        class_metadata: the classes of the training data, stored in every checkpoint.
        **checkpointables: other objects with ``state_dict`` (optimizer, scheduler, trainer).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        save_dir: str = "",
        *,
        allow_unsafe_pickle: bool = False,
        class_metadata: ClassMetadata | None = None,
        **checkpointables: Any,
    ) -> None:
        super().__init__(model, save_dir, **checkpointables)
        self.allow_unsafe_pickle = allow_unsafe_pickle
        self.class_metadata = class_metadata
        self._requested_path = ""

    def load(self, path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Load a checkpoint (see ``fvcore``'s ``Checkpointer.load``), remembering its source.

        A URL is downloaded first, and a missing file or a failed download is a
        :class:`WeightsError` (fvcore would assert or let ``URLError`` through).
        """
        self._requested_path = path
        if path:
            path = local_weights_file(path)
        return super().load(path, *args, **kwargs)

    def save(self, name: str, **kwargs: Any) -> None:
        """Write ``<save_dir>/<name>.pth`` atomically, then tag it as the last checkpoint."""
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        if self.class_metadata is not None:
            data[CHECKPOINT_KEY] = self.class_metadata.to_checkpoint()
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info("Saving checkpoint to %s", save_file)
        atomic_write(save_file, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        """Point ``last_checkpoint`` at a checkpoint, atomically."""
        path = os.path.join(self.save_dir, "last_checkpoint")
        atomic_write(path, lambda f: f.write(last_filename_basename.encode()))

    def _load_file(self, filename: str) -> dict[str, Any]:
        if filename.endswith(".pkl"):
            source = self._requested_path or filename
            from_zoo = source.startswith(MODEL_ZOO_PREFIXES)
            if not (from_zoo or self.allow_unsafe_pickle):
                raise UnsafeWeightsError(
                    f"{source}: refusing to unpickle a .pkl weights file that is not from "
                    "Detectron2's model zoo (unpickling can run arbitrary code). Convert it to "
                    ".pth, or pass --allow-unsafe-pickle if you trust the file."
                )
            try:
                return super()._load_file(filename)
            except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError) as err:
                raise WeightsError(
                    f"{source}: not a pickled weights file ({type(err).__name__}: {err})"
                ) from None
        check_weights_file(filename)
        try:
            with PathManager.open(filename, "rb") as f:
                loaded = torch.load(f, map_location=torch.device("cpu"), weights_only=True)
        except pickle.UnpicklingError as err:
            raise UnsafeWeightsError(
                f"{filename}: not a plain weights file (torch.load with weights_only=True "
                f"refused it: {str(err).splitlines()[0]}). Only tensors and plain containers are "
                "loaded, so that a checkpoint cannot run code."
            ) from err
        except Exception as err:  # a damaged file: torch raises many types (even KeyError)
            raise WeightsError(
                f"{filename} is not a PyTorch checkpoint, or it is damaged "
                f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
            ) from None
        if not isinstance(loaded, dict):
            raise WeightsError(f"{filename}: expected a dict of weights, found {type(loaded)}")
        if "model" not in loaded:
            loaded = {"model": loaded}
        return loaded


def _describe_keys(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def load_weights_for_eval(
    model: torch.nn.Module,
    weights: str,
    *,
    allow_unsafe_pickle: bool = False,
    num_classes: int | None = None,
) -> ClassMetadata | None:
    """Load trained weights for evaluation, refusing anything that leaves parameters random.

    Args:
        model: the freshly built (randomly initialised) model.
        weights: ``MODEL.WEIGHTS``: a local path or a model-zoo URL.
        allow_unsafe_pickle: read ``.pkl`` files from outside the model zoo.
        num_classes: the model's ``NUM_CLASSES``; when given, weights that say they were
            trained on another number of classes are refused with a message naming both.

    Returns:
        The classes stored in the checkpoint by the training run (None when it has none,
        e.g. Detectron2's model-zoo weights).

    Raises:
        WeightsError: empty or missing path, unreadable file, any parameter missing from the
            file, or any shape that does not match the model.
    """
    if not weights:
        raise WeightsError(EMPTY_EVAL_WEIGHTS)
    local = local_weights_file(weights)
    checkpointer = SafeDetectionCheckpointer(model, allow_unsafe_pickle=allow_unsafe_pickle)
    checkpointer._requested_path = weights
    checkpoint = checkpointer._load_file(local)
    classes = ClassMetadata.from_checkpoint(checkpoint.get(CHECKPOINT_KEY),
                                            f"MODEL.WEIGHTS {weights}")
    if classes is not None and num_classes is not None and classes.num_classes != num_classes:
        raise WeightsError(
            f"MODEL.WEIGHTS = {weights} was trained on {classes.num_classes} classes "
            f"({classes.describe()}), but the config's model has {num_classes} "
            "(MODEL.ROI_HEADS.NUM_CLASSES; MODEL.SEM_SEG_HEAD.NUM_CLASSES - 1 for a semantic "
            "model). "
            "Use the config the weights were trained with."
        )
    incompatible = checkpointer._load_model(checkpoint)
    param_names = {name for name, _ in model.named_parameters()}
    missing = sorted(k for k in incompatible.missing_keys if k in param_names)
    shapes = [
        f"{k} (file {tuple(a)}, model {tuple(b)})" for k, a, b in incompatible.incorrect_shapes
    ]
    problems = []
    if missing:
        problems.append(
            f"{len(missing)} of the model's {len(param_names)} parameters are not in the file: "
            + _describe_keys(missing)
        )
    if shapes:
        problems.append(f"{len(shapes)} parameters have another shape: " + _describe_keys(shapes))
    if problems:
        raise WeightsError(
            f"MODEL.WEIGHTS = {weights} does not fit the model built from this config; "
            + "; ".join(problems)
            + ". Evaluating would use random values for those parameters, so it is refused. "
            "Use the config the weights were trained with."
        )
    logger.info("Loaded all %d parameters from %s", len(param_names), weights)
    return classes
