"""Which decoding paths burn-triage's sources use, from ``source.scaled_decode`` and
``source.gpu_decode`` (the graph, the direct-call benchmark and the tests agree through here)."""

from __future__ import annotations

from typing import Any


def frame_source_for(source: dict[str, Any], image_size: int = 224) -> Any:
    """``ScaledJpegFrames`` (large JPEG photographs decoded at the size the model needs) for
    ``scaled_decode: auto``; None for ``off``."""
    if source.get("scaled_decode", "auto") == "off":
        return None
    from burnscope.operators.dicom_loader.scaled import ScaledJpegFrames

    return ScaledJpegFrames(min_side=image_size)


def gpu_decode_for(source: dict[str, Any]) -> bool:
    """True when the folder source should decode JPEG/JPEG 2000 on the GPU: ``gpu_decode: on``,
    or ``auto`` with nvImageCodec and a GPU usable here; the thread executor only."""
    mode = source.get("gpu_decode", "off")
    if mode == "off" or source.get("executor", "thread") != "thread":
        return False
    if mode == "on":
        return True
    from burnscope.operators.dicom_loader import gpu_jpeg

    return gpu_jpeg.available()


def loader_options(source: dict[str, Any], image_size: int = 224, *, gpu: bool = True) -> dict[str, Any]:
    """Keyword arguments of a :class:`~burnscope.operators.dicom_loader.core.DicomLoader` that
    decodes as the folder source does (``gpu=False``: as the watch and SCP sources, which decode
    on the CPU). GPU decoding runs in this process: device arrays do not cross the isolated
    decode workers' process boundary, so ``gpu_decode`` trades crash isolation for speed."""
    gpu_jpeg = gpu and gpu_decode_for(source)
    return {"max_pixels": source["max_pixels"], "workers": source["workers"],
            "frame_source": frame_source_for(source, image_size), "gpu_jpeg": gpu_jpeg,
            "isolate": bool(source.get("isolate", True)) and not gpu_jpeg,
            "decode_timeout_s": source.get("decode_timeout_s", 30.0),
            "worker_memory_mb": source.get("worker_memory_mb", 4096)}


__all__ = ["frame_source_for", "gpu_decode_for", "loader_options"]
