"""Engine benchmark: latency, throughput, memory and fidelity of every backend × precision × batch.

:func:`run_bench` is what ``burnscope bench engines`` and :mod:`burnscope.benchmarks.gpu` call.
Fidelity is measured against fp32 torch on real images: cosine of the embeddings (min, mean) and
agreement of the zero-shot burn class under the burn-severity head's prompt ensemble
(``common/burn_depth_prompts.yaml``).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from burnscope.engines.base import create_engine, l2_normalize

log = logging.getLogger(__name__)

ROW_KEYS = ("backend", "precision", "device", "batch", "p50_ms", "p95_ms", "images_per_s", "peak_mem_mb",
            "cosine_min", "cosine_mean", "top1_agreement")


@dataclass(frozen=True)
class Case:
    """One engine configuration to measure."""

    backend: str
    precision: str
    device: str = "cpu"
    opts: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def label(self) -> str:
        return f"{self.backend} {self.precision} ({self.device})"


def available_cases(backends: Sequence[str] | None = None, device: str = "auto",
                    precisions: Sequence[str] | None = None) -> list[Case]:
    """Backend × precision combinations that can run on this machine (CPU: torch fp32, ORT fp32/int8)."""
    import onnxruntime

    from burnscope.common.gpu import torch_cuda_usable

    cuda = device in ("auto", "cuda") and torch_cuda_usable()
    cases: list[Case] = []
    wanted = list(backends or ("torch", "onnxruntime", "tensorrt"))
    if "torch" in wanted:
        cases.append(Case("torch", "fp32", "cpu") if not cuda else Case("torch", "fp32", "cuda"))
        if cuda:
            cases += [Case("torch", "fp16", "cuda"), Case("torch", "bf16", "cuda")]
        elif cpu_has_bf16():
            cases.append(Case("torch", "bf16", "cpu"))
    if "onnxruntime" in wanted:
        if cuda and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            cases.append(Case("onnxruntime", "fp32", "cuda"))
        if device in ("auto", "cpu") and not cuda or device == "cpu":
            cases += [Case("onnxruntime", "fp32", "cpu"), Case("onnxruntime", "int8", "cpu"),
                      Case("onnxruntime", "int8-dynamic", "cpu")]
    if "tensorrt" in wanted and cuda:
        try:
            import tensorrt  # noqa: F401

            cases += [Case("tensorrt", "fp16", "cuda"), Case("tensorrt", "int8", "cuda")]
        except Exception:
            log.info("TensorRT not installed: no tensorrt rows")
    if precisions:
        cases = [c for c in cases if c.precision in precisions]
    return cases


def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 matrix instructions (AVX512-BF16 or AMX), where torch
    bf16 is worth a row; elsewhere it is emulated and slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def class_embeddings(bundle) -> tuple[np.ndarray, list[str], str]:
    """(class text embeddings C×D, class names, prompt source) for the zero-shot agreement column:
    the burn-severity head's prompt ensemble, as the pipeline classifies."""
    from burnscope.engines.prompts import class_text_embeddings, load_prompts

    prompts = load_prompts()
    embeddings = class_text_embeddings(bundle, prompts)[0]
    return np.asarray(embeddings, np.float32), list(prompts), "common/burn_depth_prompts.yaml"


def fidelity(reference: np.ndarray, candidate: np.ndarray, classes: np.ndarray) -> dict[str, float]:
    reference, candidate = l2_normalize(reference), l2_normalize(candidate)
    cos = np.sum(reference * candidate, axis=1)
    agree = np.argmax(reference @ classes.T, 1) == np.argmax(candidate @ classes.T, 1)
    return {"cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()), "top1_agreement": float(agree.mean())}


class PeakMemory:
    """Peak host RSS (sampled every few ms) and peak CUDA memory (torch allocator) of a block."""

    def __init__(self, cuda: bool = False, interval: float = 0.005):
        self.cuda, self.interval = cuda, interval
        self.host_mb = 0.0
        self.device_mb: float | None = None
        self._stop = threading.Event()

    def _sample(self):
        import psutil

        process = psutil.Process()
        while not self._stop.is_set():
            self.host_mb = max(self.host_mb, process.memory_info().rss / 2**20)
            self._stop.wait(self.interval)

    def __enter__(self):
        import psutil

        self.start_mb = psutil.Process().memory_info().rss / 2**20
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            self.device_mb = torch.cuda.max_memory_allocated() / 2**20


def tile(images: np.ndarray, batch: int) -> np.ndarray:
    """A batch of ``batch`` real images (repeating the set when it is smaller)."""
    reps = -(-batch // len(images))
    return np.ascontiguousarray(np.concatenate([images] * reps)[:batch])


def time_engine(engine, batch_input: Any, repeat: int, warmup: int = 2, sync: Callable[[], None] | None = None) -> np.ndarray:
    """Wall-clock seconds of ``repeat`` calls of ``engine.infer`` (after ``warmup`` calls)."""
    for _ in range(warmup):
        engine.infer(batch_input)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        engine.infer(batch_input)
        if sync:
            sync()
        times.append(time.perf_counter() - started)
    return np.asarray(times)


def embed_all(engine, images: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([engine.infer(images[i : i + batch]) for i in range(0, len(images), batch)])


def run_bench(
    config: str = "biomedclip",
    model: str | None = None,
    backends: Sequence[str] | None = None,
    batches: Sequence[int] = (1, 8),
    images: str | os.PathLike | Iterable | None = None,
    cases: Sequence[Case] | None = None,
    device: str = "auto",
    repeat: int = 20,
    max_images: int = 64,
    calib_dir: str | os.PathLike | None = None,
    device_input: bool = False,
    progress: Callable[[str], None] | None = None,
    bundle=None,
) -> dict[str, Any]:
    """Measure every case × batch; returns ``{"rows": [...], "meta": {...}}`` (rows keyed by :data:`ROW_KEYS`).

    ``device_input=True`` hands GPU engines a device-resident batch (what the pipeline does when
    preprocessing runs on the GPU), so host-to-device copies are not timed.
    """
    import torch

    from burnscope.engines.model import load_biomedclip
    from burnscope.operators.preprocess import calibration

    say = progress or (lambda message: log.info("%s", message))
    bundle = bundle or load_biomedclip(model, config=config)
    folders = calibration.sample_photo_dirs() if images is None else ([images] if isinstance(images, (str, os.PathLike)) else list(images))
    names, pixels = calibration.load_batch(folders, bundle.config, limit=max_images)
    if len(pixels) == 0:
        raise ValueError(f"no decodable images in {', '.join(map(str, folders))}")
    classes, class_names, prompt_source = class_embeddings(bundle)
    cases = list(cases) if cases is not None else available_cases(backends, device)
    batches = sorted({int(b) for b in batches})
    say(f"reference: torch fp32 on {len(pixels)} images")
    reference_engine = create_engine(bundle, "torch", "fp32", "cpu", batch_sizes=(8,))
    reference = embed_all(reference_engine, pixels, 8)
    rows: list[dict[str, Any]] = []
    described: list[dict[str, Any]] = []
    for case in cases:
        say(f"{case.label}: build")
        cuda = case.device == "cuda"
        try:
            with PeakMemory(cuda=cuda) as memory:
                calibrate = {"calibration": calibration.calibration_for(bundle.config, calib_dir)}
                engine = create_engine(bundle, case.backend, case.precision, case.device, batch_sizes=batches,
                                       **(calibrate if case.backend in ("onnxruntime", "tensorrt") else {}), **case.opts)
                engine.warmup(1)
                say(f"{case.label}: fidelity on {len(pixels)} images")
                quality = fidelity(reference, embed_all(engine, pixels, max(batches)), classes)
                timings = {}
                for batch in batches:
                    say(f"{case.label}: batch {batch}")
                    data = tile(pixels, batch)
                    sync = None
                    if cuda and device_input:
                        data = torch.from_numpy(data).to("cuda", torch.float16 if case.precision in ("fp16",) else torch.float32)
                        sync = torch.cuda.synchronize
                    timings[batch] = time_engine(engine, data, max(3, repeat if batch <= 8 else repeat // 2), sync=sync)
        except Exception as exc:
            log.warning("%s: skipped (%s)", case.label, exc)
            say(f"{case.label}: skipped ({exc})")
            continue
        described.append(engine.describe())
        for batch, times in timings.items():
            p50 = float(np.percentile(times, 50))
            rows.append({
                "backend": case.backend,
                "precision": case.precision,
                "device": case.device,
                "batch": batch,
                "p50_ms": round(p50 * 1000, 3),
                "p95_ms": round(float(np.percentile(times, 95)) * 1000, 3),
                "images_per_s": round(batch / p50, 2),
                "peak_mem_mb": round(memory.device_mb if cuda and memory.device_mb is not None else memory.host_mb, 1),
                "host_peak_rss_mb": round(memory.host_mb, 1),
                # what building and running this engine added to the process (the torch model
                # the benchmark holds for the reference is in every host figure)
                "host_added_mb": round(max(0.0, memory.host_mb - memory.start_mb), 1),
                **{k: round(v, 6) for k, v in quality.items()},
                "runs": int(len(times)),
            })
        engine.close()
        del engine
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    meta = {
        "model": bundle.info.name,
        "weights": bundle.info.weights,
        "demo": bundle.info.demo,
        "fingerprint": bundle.fingerprint,
        "images": len(pixels),
        "image_sources": [str(f) for f in folders],
        "classes": class_names,
        "prompts": prompt_source,
        "reference": "torch fp32 (cpu)",
        "torch_threads": torch.get_num_threads(),
        "engines": described,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return {"rows": rows, "meta": meta}


def speedups(rows: Sequence[dict[str, Any]], baseline: tuple[str, str] = ("torch", "fp32")) -> dict[tuple, float]:
    """images/s of each row divided by the baseline's at the same batch size and device."""
    base = {(r["batch"], r["device"]): r["images_per_s"] for r in rows if (r["backend"], r["precision"]) == baseline}
    return {(r["backend"], r["precision"], r["device"], r["batch"]): r["images_per_s"] / base[(r["batch"], r["device"])]
            for r in rows if (r["batch"], r["device"]) in base}


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a Markdown table (with speed-up vs torch fp32 at the same batch)."""
    ratio = speedups(rows)
    lines = ["| backend | precision | device | batch | p50 ms | p95 ms | images/s | × torch fp32 | peak mem MB | engine added MB | cosine min | cosine mean | top-1 agreement |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        x = ratio.get((r["backend"], r["precision"], r["device"], r["batch"]))
        added = r.get("host_added_mb")
        lines.append(
            f"| {r['backend']} | {r['precision']} | {r['device']} | {r['batch']} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | "
            f"{r['images_per_s']:.1f} | {'' if x is None else f'{x:.2f}×'} | {r['peak_mem_mb']:.0f} | "
            f"{'' if added is None else f'{added:.0f}'} | "
            f"{r['cosine_min']:.4f} | {r['cosine_mean']:.4f} | {r['top1_agreement']:.3f} |"
        )
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str))
    return path
