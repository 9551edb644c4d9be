"""Deprecated location of GPU detection: it now lives in :mod:`burnscope.common.gpu`.

Kept for one release so that integrators' imports keep working (docs/architecture.md).
"""

from burnscope.common.gpu import array_module, cupy_usable, to_numpy, torch_cuda_usable  # noqa: F401
