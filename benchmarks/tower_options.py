"""Image-tower options on a GPU: torch.compile with CUDA graphs, and FP8 via torchao.

    python -m burnscope.benchmarks.tower_options --out OUT_DIR [--model-config biomedclip] [--batches 1,32,256]

For each option — torch FP16 with CUDA graphs (today's engine), the same after
``torch.compile``, BF16 compiled, and FP8 (:mod:`burnscope.engines.torch_fp8`, torchao dynamic
float8 on the linear layers, compiled, CUDA graphs) — it reports images/s and p50 latency per
batch size (inputs already on the device, as the CuPy preprocessing leaves them), the
image-embedding cosine against torch FP32 (min and mean over the shipped sample photographs
and generated images), and whether each option clears :data:`COSINE_REQUIRED`. FP8 may become an
engine precision (``engines.base.SUPPORTED``) only if its row clears it on the full-size
architecture. Writes ``tower-options.json`` to ``OUT_DIR``. On a machine without a usable CUDA
GPU it writes why and exits 0: everything here needs one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

COSINE_REQUIRED = 0.999
TOWER_TARGET_IMAGES_PER_S = 11_000  # batch 256 (DESIGN.md §7)


def _images(config: dict, count: int = 64):
    """Preprocessed views of the shipped sample photographs, topped up with generated images."""
    import numpy as np

    from burnscope.engines import export
    from burnscope.operators.preprocess.calibration import calibration_images

    try:
        photos = np.asarray(calibration_images(config, limit=count), np.float32)
    except Exception:  # no shipped photographs in this installation
        photos = np.zeros((0, 3, 224, 224), np.float32)
    extra = export.sample_images(max(0, count - len(photos)), seed=5)
    return np.concatenate([photos, extra])[:count]


def _timed(engine: Any, batch: Any, iterations: int) -> tuple[float, float]:
    import torch

    for _ in range(3):
        engine.infer_tensor(batch)
    torch.cuda.synchronize()
    laps = []
    for _ in range(iterations):
        start = time.perf_counter()
        engine.infer_tensor(batch)
        torch.cuda.synchronize()
        laps.append(time.perf_counter() - start)
    p50 = statistics.median(laps)
    return int(batch.shape[0]) / p50, 1000 * p50


def run(model_config: str = "biomedclip", batches: Sequence[int] = (1, 32, 256), iterations: int = 20) -> dict[str, Any]:
    import numpy as np
    import torch

    from burnscope.engines.base import create_engine
    from burnscope.engines.model import load_biomedclip
    from burnscope.engines.torch_fp8 import TorchFp8Engine, fp8_unavailable_reason

    bundle = load_biomedclip(config=model_config)
    images = _images(bundle.config)
    reference = create_engine(bundle, "torch", "fp32", "cuda", batch_sizes=(len(images),), cuda_graphs=False).infer(images)
    options: dict[str, Any] = {
        "fp16 + CUDA graphs": lambda: create_engine(bundle, "torch", "fp16", "cuda", batch_sizes=batches),
        "fp16 + compile + CUDA graphs": lambda: create_engine(bundle, "torch", "fp16", "cuda", batch_sizes=batches, compile=True),
        "bf16 + compile + CUDA graphs": lambda: create_engine(bundle, "torch", "bf16", "cuda", batch_sizes=batches, compile=True),
        "fp8 (torchao) + compile + CUDA graphs": lambda: TorchFp8Engine(bundle, batch_sizes=batches),
    }
    rows = []
    for name, build in options.items():
        row: dict[str, Any] = {"option": name}
        try:
            started = time.perf_counter()
            engine = build().warmup(1)
            row["build_and_warmup_s"] = round(time.perf_counter() - started, 1)
            out = np.concatenate([engine.infer(images[i:i + max(batches)]) for i in range(0, len(images), max(batches))])
            cosine = np.sum(out * reference, axis=1)
            row.update(cosine_min=round(float(cosine.min()), 6), cosine_mean=round(float(cosine.mean()), 6),
                       cosine_ok=bool(cosine.min() >= COSINE_REQUIRED))
            device = torch.from_numpy(np.ascontiguousarray(images)).cuda()
            for size in batches:
                batch = device[torch.arange(size, device=device.device) % len(images)]
                ips, p50 = _timed(engine, batch, iterations)
                row[f"batch{size}_images_per_s"] = round(ips, 1)
                row[f"batch{size}_p50_ms"] = round(p50, 3)
            engine.close()
        except Exception as exc:  # noqa: BLE001 - an option that cannot run here is a row that says why
            row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        rows.append(row)
        print(json.dumps(row), flush=True)
    fp8 = next(r for r in rows if r["option"].startswith("fp8"))
    big = f"batch{max(batches)}_images_per_s"
    best = max((r for r in rows if big in r and r.get("cosine_ok")), key=lambda r: r[big], default=None)
    return {
        "benchmark": "tower-options",
        "model": bundle.info.name, "weights": bundle.info.weights, "demo": bundle.info.demo,
        "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
        "images": len(images), "batches": list(batches), "rows": rows,
        "fp8_unavailable": fp8_unavailable_reason(),
        "fp8_may_join_the_engine_interface": bool(fp8.get("cosine_ok")) and model_config == "biomedclip",
        "tower_target_images_per_s": TOWER_TARGET_IMAGES_PER_S,
        "best_option_at_largest_batch": best and {"option": best["option"], "images_per_s": best[big]},
        "tower_target_met": bool(best and best[big] >= TOWER_TARGET_IMAGES_PER_S),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model-config", default="biomedclip")
    parser.add_argument("--batches", default="1,32,256")
    parser.add_argument("--iterations", type=int, default=20)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    from burnscope.common.gpu import torch_cuda_usable

    if not torch_cuda_usable():
        result: dict[str, Any] = {"benchmark": "tower-options", "skipped": "no usable CUDA GPU: nothing measured"}
        print(result["skipped"])
    else:
        result = run(args.model_config, [int(b) for b in args.batches.split(",") if b], args.iterations)
        print(f"FP8 may join the engine interface: {result['fp8_may_join_the_engine_interface']}; "
              f"best at batch {max(result['batches'])}: {result['best_option_at_largest_batch']}")
    (args.out / "tower-options.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
