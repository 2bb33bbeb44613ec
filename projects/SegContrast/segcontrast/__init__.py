"""SegContrast: Mask R-CNN mask losses and a semantic-vs-instance contrast evaluator.

Importing this package first makes the installed Detectron2 usable (see :mod:`.compat`), then
registers the project's mask heads in ``ROI_MASK_HEAD_REGISTRY``. Detectron2's and fvcore's
import-time deprecation warnings (``utils.known_warnings``) are hidden during that import only.
"""

from .utils.known_warnings import quiet_known_warnings

with quiet_known_warnings():
    from . import compat

    compat.apply()

    from . import modeling  # noqa: F401  (registers the mask heads)
    from .config import add_segcontrast_config

__all__ = ["add_segcontrast_config"]
__version__ = "0.1.0"
