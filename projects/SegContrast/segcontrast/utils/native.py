"""The compiled kernels (``segcontrast._kernels``), with a message that says how to build them."""

from __future__ import annotations

try:
    from .. import _kernels as kernels
except ImportError as err:  # a source checkout whose extension was never built
    raise ImportError(
        "segcontrast's compiled kernels (segcontrast._kernels) are not built: run `make setup` "
        "or `pip install -e .` in the clone (or `python setup.py build_ext --inplace`)"
    ) from err

__all__ = ["kernels"]
