"""Make the installed Detectron2 importable on today's Python stack, and patch nothing else.

Two shims, each applied only where it is needed:

* ``detectron2._C``: a Detectron2 installed from the Python-only sdist (see
  ``tools/install_detectron2.py``) has no compiled extension. Plain Mask R-CNN needs none of
  its ops (torchvision provides ``nms`` and ``roi_align``), but several Detectron2 modules do
  ``from detectron2 import _C`` at import time. A placeholder module is registered under that
  name; using any compiled op through it raises :class:`CompiledOpsUnavailableError`, which
  names the op and the fix.
* ``PIL.Image.LINEAR``: removed in Pillow 10, still used as a default argument by Detectron2
  v0.6 (``ExtentTransform``); aliased to ``Image.BILINEAR``.

A Detectron2 with its compiled ops (an official build) is left untouched.
"""

from __future__ import annotations

import importlib
import sys
import types

__all__ = [
    "CompiledOpsUnavailableError",
    "apply",
    "has_compiled_ops",
    "detectron2_description",
]


_PLACEHOLDER_MARK = "__segcontrast_placeholder__"
_FIX_HINT = (
    "this detectron2 has no compiled ops: rotated boxes and deformable convolution need an "
    "official build, see README ('Which detectron2 is installed'): reinstall with "
    "D2_SOURCE=<detectron2 git URL or checkout> make setup"
)

# Build-information queries that Detectron2's collect_env_info() makes; answered truthfully
# so that detectron2.engine.default_setup keeps working with the placeholder.
_BUILD_INFO = {
    "get_compiler_version": lambda: "none (detectron2 installed without compiled ops)",
    "get_cuda_version": lambda: "none (detectron2 installed without compiled ops)",
    "has_cuda": lambda: False,
}


class CompiledOpsUnavailableError(RuntimeError):
    """Raised when code asks the placeholder ``detectron2._C`` for a compiled op."""


class _MissingCompiledOps(types.ModuleType):
    """Stands in for ``detectron2._C``; every op lookup raises a clear error."""

    def __getattr__(self, name: str):
        # torch, pickle and inspect probe modules for dunder attributes; those must look
        # absent, not broken.
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        if name in _BUILD_INFO:
            return _BUILD_INFO[name]
        raise CompiledOpsUnavailableError(f"detectron2._C.{name} is unavailable: {_FIX_HINT}.")


_state: dict[str, object] = {"applied": False, "compiled": None}


def has_compiled_ops() -> bool:
    """Whether the installed Detectron2 has its compiled extension (``detectron2._C``).

    Returns:
        bool: True for an official build, False where the placeholder is in use.
    """
    apply()
    return bool(_state["compiled"])


def detectron2_description() -> str:
    """One line naming the Detectron2 in use and whether it has compiled ops."""
    import detectron2

    ops = "with compiled ops" if has_compiled_ops() else "without compiled ops (placeholder _C)"
    return f"detectron2 {detectron2.__version__} at {detectron2.__path__[0]}, {ops}"


def _install_c_placeholder() -> bool:
    """Register the placeholder where ``detectron2._C`` cannot be imported.

    Returns:
        bool: True when the real compiled extension is available.
    """
    existing = sys.modules.get("detectron2._C")
    if existing is not None:
        return not getattr(existing, _PLACEHOLDER_MARK, False)
    try:
        importlib.import_module("detectron2._C")
        return True
    except ImportError:
        pass
    import detectron2

    placeholder = _MissingCompiledOps("detectron2._C", "Placeholder: no compiled ops.")
    setattr(placeholder, _PLACEHOLDER_MARK, True)
    sys.modules["detectron2._C"] = placeholder
    detectron2._C = placeholder
    return False


def _alias_pillow_linear() -> None:
    from PIL import Image

    if not hasattr(Image, "LINEAR"):
        Image.LINEAR = Image.BILINEAR


def apply() -> None:
    """Apply the shims once per process; later calls do nothing.

    Nothing is logged here: this runs at import time, before any tool has set up its logging.
    The tools log :func:`detectron2_description` once their log exists
    (``segcontrast.engine.logging_setup``).
    """
    if _state["applied"]:
        return
    _alias_pillow_linear()
    _state["compiled"] = _install_c_placeholder()
    _state["applied"] = True
