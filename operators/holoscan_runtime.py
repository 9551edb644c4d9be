"""The one place where burnscope imports Holoscan.

Holoscan's Python wheels link against the CUDA runtime (``libcudart.so.13``). On a machine
with no system CUDA that library is not on the loader path, and ``import holoscan`` fails even
though Holoscan runs fine on the CPU ("support for CPU data only"). The pip wheel
``nvidia-cuda-runtime`` ships the library; preloading it with ``RTLD_GLOBAL`` before the first
Holoscan import makes the import succeed without LD_LIBRARY_PATH.

Use::

    from burnscope.operators.holoscan_runtime import holoscan  # noqa: F401  (preloaded)
    from holoscan.core import Application, Operator, OperatorSpec
"""

from __future__ import annotations

import ctypes
import glob
import importlib.util
import os
import sys

_CUDART_SONAMES = ("libcudart.so.13", "libcudart.so.12")


def _candidate_cudart_paths() -> list[str]:
    """Paths of libcudart shipped by the ``nvidia-cuda-runtime`` wheels in this environment."""
    paths: list[str] = []
    spec = importlib.util.find_spec("nvidia")
    roots = list(spec.submodule_search_locations) if spec and spec.submodule_search_locations else []
    for root in roots:
        # CUDA 13 wheels use nvidia/cu13/lib; CUDA 12 wheels nvidia/cuda_runtime/lib.
        for pattern in ("cu13/lib/libcudart.so.*", "cuda_runtime/lib/libcudart.so.*", "*/lib/libcudart.so.*"):
            paths.extend(sorted(glob.glob(os.path.join(root, pattern))))
    return list(dict.fromkeys(paths))


def preload_cudart() -> str | None:
    """Make ``libcudart`` loadable for Holoscan; return the path used, or None if the system has it.

    The pip wheel's library comes first (it is the version pip resolved beside Holoscan);
    a system CUDA on the loader path is the fallback.
    """
    for path in _candidate_cudart_paths():
        try:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            return path
        except OSError:
            continue
    for soname in _CUDART_SONAMES:
        try:
            ctypes.CDLL(soname, mode=ctypes.RTLD_GLOBAL)
            return None
        except OSError:
            continue
    raise ImportError(
        "burnscope: the CUDA runtime library (libcudart.so.13) was not found. "
        "Install it with `pip install nvidia-cuda-runtime` (it is a dependency of burnscope)."
    )


def raise_stack_limit(wanted: int = 32 * 2**20) -> None:
    """Raise the soft stack limit to the 32 MB Holoscan recommends (within the hard limit).

    The main thread's stack grows on demand up to the soft limit, so raising it at run time
    takes effect; Holoscan checks it at import and at ``run()`` and warns when it is lower.
    """
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
        if soft != resource.RLIM_INFINITY and soft < wanted:
            target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
            resource.setrlimit(resource.RLIMIT_STACK, (target, hard))
    except (ImportError, ValueError, OSError):  # not POSIX, or not permitted: Holoscan only warns
        pass


if "holoscan" not in sys.modules:
    # Holoscan's per-graph INFO lines drown the CLI's own output; HOLOSCAN_LOG_LEVEL still wins.
    os.environ.setdefault("HOLOSCAN_LOG_LEVEL", "WARN")
    raise_stack_limit()
    CUDART_PATH = preload_cudart()
else:  # pragma: no cover - someone imported holoscan before us and it worked
    CUDART_PATH = None

import holoscan  # noqa: E402  (must follow the preload)

__all__ = ["holoscan", "preload_cudart", "CUDART_PATH"]
