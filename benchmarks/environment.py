"""The machine a figure was measured on: CPU model, the instruction-set flags that move CPU
figures (AVX2, AVX-512, VNNI, AMX), core count and load. Every benchmark's JSON records it,
since these shared machines differ from one session to the next."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

#: The flags that change how fast the CPU paths run (matmuls, INT8 kernels, bf16).
RELEVANT_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8")


def cpu_facts() -> dict[str, Any]:
    """``{"cpu_model", "cpu_flags", "cpu_count", "machine"}`` from /proc/cpuinfo (as lscpu shows)."""
    model, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model in ("", "unknown", platform.machine()):
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cpu_flags": [f for f in RELEVANT_FLAGS if f in flags],
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
    }


__all__ = ["RELEVANT_FLAGS", "cpu_facts"]
