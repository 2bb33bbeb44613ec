"""Training, prediction and the Detectron2 evaluator (the training extra: torch, Detectron2).

Importing it makes the installed Detectron2 usable (:mod:`segcontrast.compat`) and registers
SegContrast's mask and semantic heads (:mod:`segcontrast.modeling`), so that configs naming
them build.
"""

from .. import compat
from ..utils.known_warnings import quiet_known_warnings

with quiet_known_warnings():
    compat.apply()
    from .. import modeling  # noqa: F401  (registers the heads)
    from .launch import launch, use_cuda

__all__ = ["launch", "use_cuda"]
