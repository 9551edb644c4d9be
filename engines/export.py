"""Export BiomedCLIP's towers to ONNX, check them against torch, and cache them.

* Image tower: ``images`` (N×3×224×224 float32) → ``embeddings`` (N×D float32, L2-normalised).
* Text tower: ``input_ids`` (N×L int64) → ``embeddings`` (N×D float32, L2-normalised).

The batch axis is dynamic. The classic (TorchScript) exporter is used: it is fast and stable for
these towers, and the graphs it writes are what ONNX Runtime's quantizer and TensorRT's parser
expect. Files larger than ``EXTERNAL_DATA_MB`` keep their weights in a side file
(``<name>.onnx.data``), so the full model never nears protobuf's 2 GB limit and the graph file
stays small to inspect.

Every export is checked against the torch model on fixed inputs; a maximum absolute difference
above ``atol`` or a cosine below ``min_cosine`` raises :class:`ExportCheckError`. Exports are
cached in ``bundle.cache_dir/onnx/`` keyed by the model fingerprint and precision, with a JSON
sidecar holding the check result.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

log = logging.getLogger(__name__)

OPSET = 17
EXTERNAL_DATA_MB = 100
#: Stated tolerances of the export self-check (fp32 ONNX vs fp32 torch, same inputs).
EXPORT_ATOL = 1e-4
EXPORT_MIN_COSINE = 0.99999


class ExportCheckError(RuntimeError):
    """The ONNX model's outputs differ from torch's by more than the stated tolerance."""


@dataclass
class CheckResult:
    max_abs_diff: float
    min_cosine: float
    atol: float
    required_cosine: float
    batch: int

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.atol and self.min_cosine >= self.required_cosine


def onnx_dir(bundle) -> Path:
    directory = Path(bundle.cache_dir) / "onnx"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def onnx_path(bundle, tower: str = "image", precision: str = "fp32") -> Path:
    """Cache path of a tower's ONNX file for this model fingerprint and precision."""
    return onnx_dir(bundle) / f"{tower}-{bundle.fingerprint}-{precision}.onnx"


def _tower_module(bundle, encode: str):
    """``bundle.model.<encode>(x, normalize=True)`` as a module for export (one tower, eval mode)."""
    import torch

    class Tower(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, inputs):
            return getattr(self.model, encode)(inputs, normalize=True)

    return Tower(bundle.model).eval()


def sample_images(batch: int = 2, size: int = 224, seed: int = 0) -> np.ndarray:
    """Deterministic, image-like normalised inputs for the export check (smooth + noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack([np.sin(6 * xx + c) * np.cos(4 * yy - c) for c in range(3)])
    images = base[None] + 0.5 * rng.standard_normal((batch, 3, size, size))
    return images.astype(np.float32)


def sample_tokens(bundle, batch: int = 2) -> np.ndarray:
    texts = ["a photo of a burn wound", "a clinical photograph of skin", "an image that is not a burn"]
    tokens = bundle.tokenizer([texts[i % len(texts)] for i in range(batch)])
    return np.asarray(tokens, dtype=np.int64)


def compare(reference: np.ndarray, candidate: np.ndarray, atol: float, min_cosine: float) -> CheckResult:
    reference = np.asarray(reference, np.float64)
    candidate = np.asarray(candidate, np.float64)
    if reference.shape != candidate.shape:
        raise ExportCheckError(f"ONNX output shape {candidate.shape} != torch output shape {reference.shape}")
    cos = np.sum(reference * candidate, -1) / (
        np.linalg.norm(reference, axis=-1) * np.linalg.norm(candidate, axis=-1) + 1e-12
    )
    return CheckResult(
        max_abs_diff=float(np.max(np.abs(reference - candidate))) if reference.size else 0.0,
        min_cosine=float(np.min(cos)) if cos.size else 1.0,
        atol=atol,
        required_cosine=min_cosine,
        batch=int(reference.shape[0]),
    )


def ort_session(path: str | os.PathLike, threads: int | None = None):
    """A CPU ONNX Runtime session with full graph optimisation (used by checks and calibration)."""
    import onnxruntime as ort

    from burnscope.engines.base import cpu_cores

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or cpu_cores()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def verify_onnx(
    path: str | os.PathLike,
    reference: Callable[[np.ndarray], np.ndarray],
    inputs: np.ndarray,
    atol: float = EXPORT_ATOL,
    min_cosine: float = EXPORT_MIN_COSINE,
) -> CheckResult:
    """Run the ONNX file on ``inputs`` and compare with ``reference(inputs)``; raise past tolerance."""
    session = ort_session(path)
    name = session.get_inputs()[0].name
    candidate = session.run(None, {name: inputs})[0]
    result = compare(reference(inputs), candidate, atol, min_cosine)
    if not result.ok:
        raise ExportCheckError(
            f"{Path(path).name}: ONNX differs from torch (max abs diff {result.max_abs_diff:.3g} > {atol:g} "
            f"or min cosine {result.min_cosine:.6f} < {min_cosine}) — the export is not faithful"
        )
    return result


def save_onnx(model_proto, path: Path, external_data_mb: float = EXTERNAL_DATA_MB) -> Path:
    """Write an ONNX model; weights go to ``<name>.data`` beside it when the model is large."""
    import onnx

    path = Path(path)
    data_name = path.name + ".data"
    if (path.parent / data_name).exists():
        (path.parent / data_name).unlink()  # onnx appends to an existing data file
    size_mb = model_proto.ByteSize() / 2**20 if external_data_mb else 0.0
    if external_data_mb and size_mb > external_data_mb:
        onnx.save_model(
            model_proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
            location=data_name, size_threshold=1024,
        )
    else:
        onnx.save_model(model_proto, str(path))
    return path


def onnx_files(path: Path) -> list[Path]:
    """The ONNX file and its external-data side file, if any."""
    path = Path(path)
    side = path.with_name(path.name + ".data")
    return [path] + ([side] if side.exists() else [])


def _export(module, example, path: Path, input_name: str, opset: int, external_data_mb: float) -> Path:
    import onnx
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    # Export to a private temp dir then move in, so concurrent processes never read a half file.
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        raw = Path(tmp) / "raw.onnx"
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            # Tracing warns about shape-dependent Python branches; the dynamic-batch check below
            # (run at a batch size other than the traced one) is what proves the graph general.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (torch.as_tensor(example),),
                str(raw),
                input_names=[input_name],
                output_names=["embeddings"],
                dynamic_axes={input_name: {0: "batch"}, "embeddings": {0: "batch"}},
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        proto = onnx.load(str(raw))
        staged = Path(tmp) / path.name
        save_onnx(proto, staged, external_data_mb)
        for file in onnx_files(staged):
            os.replace(file, path.parent / file.name)
    return path


def _cached(path: Path, fingerprint: str) -> dict[str, Any] | None:
    meta_path = path.with_suffix(".json")
    if not (path.exists() and meta_path.exists()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError:
        return None
    return meta if meta.get("fingerprint") == fingerprint and meta.get("check", {}).get("ok") else None


def _export_tower(
    bundle,
    tower: str,
    path: str | os.PathLike | None,
    encode: str,
    input_name: str,
    example: Callable[[], np.ndarray],
    check_inputs: Callable[[], np.ndarray],
    reference: Callable[[np.ndarray], np.ndarray],
    opset: int,
    atol: float,
    min_cosine: float,
    external_data_mb: float,
    force: bool,
) -> Path:
    """Exports one tower to fp32 ONNX, checks it against ``reference`` and records the check.

    ``example`` and ``check_inputs`` are called only when no valid cached file exists.
    """
    path = Path(path) if path else onnx_path(bundle, tower, "fp32")
    if not force and _cached(path, bundle.fingerprint):
        return path
    started = time.perf_counter()
    _export(_tower_module(bundle, encode), example(), path, input_name, opset, external_data_mb)
    result = verify_onnx(path, reference, check_inputs(), atol, min_cosine)
    _write_meta(path, bundle, tower, "fp32", opset, result, time.perf_counter() - started)
    log.info("exported %s tower to %s (max abs diff %.2e)", tower, path, result.max_abs_diff)
    return path


def export_image_tower(
    bundle,
    path: str | os.PathLike | None = None,
    opset: int = OPSET,
    atol: float = EXPORT_ATOL,
    min_cosine: float = EXPORT_MIN_COSINE,
    external_data_mb: float = EXTERNAL_DATA_MB,
    force: bool = False,
) -> Path:
    """The image tower as a checked fp32 ONNX file (cached per model fingerprint)."""
    size = int(bundle.config.get("preprocess_cfg", {}).get("image_size", 224))
    return _export_tower(
        bundle, "image", path, "encode_image", "images",
        example=lambda: sample_images(2, size),
        # Batch 3 for the check: the traced batch was 2, so this also proves the batch axis is dynamic.
        check_inputs=lambda: sample_images(3, size, seed=1),
        reference=bundle.encode_images,
        opset=opset, atol=atol, min_cosine=min_cosine, external_data_mb=external_data_mb, force=force,
    )


def export_text_tower(
    bundle,
    path: str | os.PathLike | None = None,
    opset: int = OPSET,
    atol: float = EXPORT_ATOL,
    min_cosine: float = EXPORT_MIN_COSINE,
    external_data_mb: float = EXTERNAL_DATA_MB,
    force: bool = False,
) -> Path:
    """The text tower (token ids → normalised embeddings) as a checked fp32 ONNX file."""
    import torch

    def reference(tokens: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return bundle.model.encode_text(torch.as_tensor(tokens), normalize=True).float().numpy()

    return _export_tower(
        bundle, "text", path, "encode_text", "input_ids",
        example=lambda: sample_tokens(bundle, 2),
        check_inputs=lambda: sample_tokens(bundle, 3),  # batch 3 proves the batch axis is dynamic
        reference=reference,
        opset=opset, atol=atol, min_cosine=min_cosine, external_data_mb=external_data_mb, force=force,
    )


def _write_meta(path: Path, bundle, tower: str, precision: str, opset: int, result: CheckResult, seconds: float) -> None:
    import onnx
    import torch

    meta = {
        "tower": tower,
        "precision": precision,
        "fingerprint": bundle.fingerprint,
        "model": bundle.info.name,
        "demo": bundle.info.demo,
        "opset": opset,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "external_data": [f.name for f in onnx_files(path)[1:]],
        "check": {**asdict(result), "ok": result.ok},
        "seconds": round(seconds, 2),
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, path.with_suffix(".json"))
