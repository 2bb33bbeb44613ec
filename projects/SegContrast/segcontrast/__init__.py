"""SegContrast: Mask R-CNN mask losses and a semantic-vs-instance contrast evaluator.

Importing this package first makes the installed Detectron2 usable (see :mod:`.compat`), then
registers the project's mask heads in ``ROI_MASK_HEAD_REGISTRY``.
"""

from . import compat

compat.apply()

from . import modeling  # noqa: E402,F401  (registers the mask heads)
from .config import add_segcontrast_config  # noqa: E402

__all__ = ["add_segcontrast_config"]
__version__ = "0.1.0"
