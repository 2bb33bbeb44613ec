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
"""

from __future__ import annotations

import logging
import os
import pickle
from typing import Any

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils.file_io import PathManager

from ..utils import atomic_write

__all__ = [
    "MODEL_ZOO_PREFIXES",
    "SafeDetectionCheckpointer",
    "UnsafeWeightsError",
    "WeightsError",
    "load_weights_for_eval",
]

logger = logging.getLogger(__name__)

MODEL_ZOO_PREFIXES = ("detectron2://", "https://dl.fbaipublicfiles.com/detectron2/")


class WeightsError(RuntimeError):
    """Weights are missing, unreadable, or do not fit the model."""


class UnsafeWeightsError(WeightsError):
    """A pickled weights file was refused because loading it could run code."""


class SafeDetectionCheckpointer(DetectionCheckpointer):
    """A ``DetectionCheckpointer`` with atomic saves and safe loads (see module docstring).

    Args:
        model: the model (or DDP-wrapped model).
        save_dir: where checkpoints go.
        allow_unsafe_pickle: read ``.pkl`` files that are not from Detectron2's model zoo.
        **checkpointables: other objects with ``state_dict`` (optimizer, scheduler, trainer).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        save_dir: str = "",
        *,
        allow_unsafe_pickle: bool = False,
        **checkpointables: Any,
    ) -> None:
        super().__init__(model, save_dir, **checkpointables)
        self.allow_unsafe_pickle = allow_unsafe_pickle
        self._requested_path = ""

    def load(self, path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Load a checkpoint (see ``fvcore``'s ``Checkpointer.load``), remembering its source."""
        self._requested_path = path
        return super().load(path, *args, **kwargs)

    def save(self, name: str, **kwargs: Any) -> None:
        """Write ``<save_dir>/<name>.pth`` atomically, then tag it as the last checkpoint."""
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
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
            return super()._load_file(filename)
        try:
            with PathManager.open(filename, "rb") as f:
                loaded = torch.load(f, map_location=torch.device("cpu"), weights_only=True)
        except pickle.UnpicklingError as err:
            raise UnsafeWeightsError(
                f"{filename}: not a plain weights file (torch.load with weights_only=True "
                f"refused it: {str(err).splitlines()[0]}). Only tensors and plain containers are "
                "loaded, so that a checkpoint cannot run code."
            ) from err
        except (RuntimeError, EOFError, OSError) as err:
            raise WeightsError(f"{filename}: cannot read checkpoint: {err}") from err
        if not isinstance(loaded, dict):
            raise WeightsError(f"{filename}: expected a dict of weights, found {type(loaded)}")
        if "model" not in loaded:
            loaded = {"model": loaded}
        return loaded


def _describe_keys(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def load_weights_for_eval(
    model: torch.nn.Module, weights: str, *, allow_unsafe_pickle: bool = False
) -> None:
    """Load trained weights for evaluation, refusing anything that leaves parameters random.

    Args:
        model: the freshly built (randomly initialised) model.
        weights: ``MODEL.WEIGHTS``: a local path or a model-zoo URL.
        allow_unsafe_pickle: read ``.pkl`` files from outside the model zoo.

    Raises:
        WeightsError: empty or missing path, unreadable file, any parameter missing from the
            file, or any shape that does not match the model.
    """
    if not weights:
        raise WeightsError(
            "MODEL.WEIGHTS is empty: --eval-only needs trained weights, e.g. "
            "`MODEL.WEIGHTS output/run/model_final.pth`. Refusing to evaluate a randomly "
            "initialised model."
        )
    is_url = "://" in weights
    if not is_url and not os.path.isfile(weights):
        raise WeightsError(f"MODEL.WEIGHTS = {weights}: no such file.")
    checkpointer = SafeDetectionCheckpointer(model, allow_unsafe_pickle=allow_unsafe_pickle)
    checkpointer._requested_path = weights
    local = PathManager.get_local_path(weights) if is_url else weights
    checkpoint = checkpointer._load_file(local)
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
