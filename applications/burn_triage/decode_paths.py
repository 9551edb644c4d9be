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


def loader_options(source: dict[str, Any], image_size: int = 224) -> dict[str, Any]:
    """Keyword arguments of a :class:`~burnscope.operators.dicom_loader.core.DicomLoader` that
    decodes as the folder source does."""
    return {"max_pixels": source["max_pixels"], "workers": source["workers"],
            "frame_source": frame_source_for(source, image_size), "gpu_jpeg": gpu_decode_for(source)}


__all__ = ["frame_source_for", "gpu_decode_for", "loader_options"]
