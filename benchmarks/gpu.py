"""The whole GPU side of the inference path in one command (run it on a machine with an NVIDIA GPU)::

    python -m burnscope.benchmarks.gpu --out out/gpu [--images DIR] [--model-config NAME] [-m WEIGHTS]

It measures, with the same engines code the pipeline uses (:mod:`burnscope.benchmarks.engines`):

* torch CUDA FP16 and BF16 with CUDA graphs (plus FP32), batch 1 … 256: p50/p95 latency,
  images/s, peak device memory, and fidelity against fp32 torch (cosine, zero-shot top-1);
* ONNX Runtime on the CUDA execution provider and TensorRT, when they are installed;
* CuPy vs NumPy preprocessing parity and speed (:mod:`burnscope.benchmarks.preprocess`);

and writes ``engines-gpu.json`` and ``engines-gpu.md`` (table + targets) to ``--out``.
Targets (H100): image tower ≥ 8,000 images/s in FP16 at large batch, batch-1 p50 ≤ 1.5 ms.
The parts that need no GPU (argument parsing, case selection, the report) are tested on the CPU.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any, Sequence

COMMAND = "python -m burnscope.benchmarks.gpu"
DEFAULT_BATCHES = (1, 8, 32, 64, 128, 256)
TARGETS = {"fp16_large_batch_images_per_s": 8000.0, "batch1_p50_ms": 1.5}


def parse_batches(text: str) -> tuple[int, ...]:
    values = sorted({int(v) for v in str(text).split(",") if v.strip()})
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be positive integers, got {text!r}")
    return tuple(values)


def gpu_cases(precisions: Sequence[str] = ("fp32", "fp16", "bf16"), have_ort_cuda: bool = False,
              have_tensorrt: bool = False) -> list:
    """The engine cases of the GPU run (torch always; ORT CUDA and TensorRT when present)."""
    from burnscope.benchmarks.engines import Case

    cases = [Case("torch", p, "cuda") for p in precisions]
    if have_ort_cuda:
        cases.append(Case("onnxruntime", "fp32", "cuda"))
    if have_tensorrt:
        cases += [Case("tensorrt", "fp16", "cuda"), Case("tensorrt", "int8", "cuda")]
    return cases


def check_targets(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Best FP16 images/s at large batch and FP16 batch-1 p50 against the H100 targets."""
    fp16 = [r for r in rows if r["precision"] == "fp16" and r["device"] == "cuda"]
    best = max(fp16, key=lambda r: r["images_per_s"], default=None)
    batch1 = min((r for r in fp16 if r["batch"] == 1), key=lambda r: r["p50_ms"], default=None)
    return {
        "fp16_best_images_per_s": best["images_per_s"] if best else None,
        "fp16_best_at": f"{best['backend']} batch {best['batch']}" if best else None,
        "fp16_large_batch_ok": bool(best and best["images_per_s"] >= TARGETS["fp16_large_batch_images_per_s"]),
        "fp16_batch1_p50_ms": batch1["p50_ms"] if batch1 else None,
        "fp16_batch1_by": batch1["backend"] if batch1 else None,
        "batch1_ok": bool(batch1 and batch1["p50_ms"] <= TARGETS["batch1_p50_ms"]),
    }


def environment() -> dict[str, Any]:
    facts: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("torch", "numpy", "onnxruntime", "cupy", "open_clip", "timm", "tensorrt"):
        try:
            facts[name] = importlib.import_module(name).__version__
        except Exception:
            facts[name] = None
    try:
        import torch

        if torch.cuda.is_available():
            facts["gpu"] = torch.cuda.get_device_name(0)
            facts["cuda"] = torch.version.cuda
            facts["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
    except Exception:
        pass
    return facts


def render_markdown(result: dict[str, Any], command: str = f"{COMMAND} --out out/gpu") -> str:
    """The report: environment, the engines table, targets, preprocessing rows."""
    from burnscope.benchmarks.engines import markdown_table

    env, meta, targets = result.get("environment", {}), result.get("meta", {}), result.get("targets", {})
    lines = [
        "# BiomedCLIP image tower on the GPU",
        "",
        f"Command: `{command}`",
        "",
        f"GPU: {env.get('gpu', 'none')} · CUDA {env.get('cuda')} · torch {env.get('torch')} · "
        f"onnxruntime {env.get('onnxruntime')} · cupy {env.get('cupy')} · TensorRT {env.get('tensorrt') or 'not installed'}",
        "",
        f"Model: {meta.get('model', '?')} · weights: {meta.get('weights', '?')}"
        + (" · **DEMO MODEL (random weights) — not for clinical use**" if meta.get("demo") else ""),
        f"Fidelity: {meta.get('images', '?')} real images vs {meta.get('reference', 'torch fp32')}; zero-shot classes from "
        f"{meta.get('prompts', '?')}. Batch inputs are already on the GPU (as the pipeline's CuPy preprocessing leaves them); "
        "torch rows use CUDA graphs.",
        "",
        markdown_table(result.get("rows", [])),
        "",
        "## Targets",
        "",
        f"- FP16 large batch ≥ {TARGETS['fp16_large_batch_images_per_s']:,.0f} images/s: best "
        f"{targets.get('fp16_best_images_per_s')} ({targets.get('fp16_best_at')}) → "
        f"{'met' if targets.get('fp16_large_batch_ok') else 'not met'}",
        f"- batch-1 p50 ≤ {TARGETS['batch1_p50_ms']} ms: {targets.get('fp16_batch1_p50_ms')} ms "
        f"({targets.get('fp16_batch1_by')}) → {'met' if targets.get('batch1_ok') else 'not met'}",
    ]
    pre = result.get("preprocess_rows")
    if pre:
        lines += ["", "## Preprocessing (CuPy vs NumPy)", "", "| " + " | ".join(pre[0].keys()) + " |",
                  "|" + "---|" * len(pre[0])]
        lines += ["| " + " | ".join(str(v) for v in row.values()) + " |" for row in pre]
    if result.get("errors"):
        lines += ["", "## Skipped", ""] + [f"- {e}" for e in result["errors"]]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out/gpu"))
    parser.add_argument("--model-config", default="biomedclip", help="Model architecture (engines/configs/<name>.json).")
    parser.add_argument("-m", "--model", default=None, help="BiomedCLIP weights (file or folder); default: as the app finds them.")
    parser.add_argument("--batch", type=parse_batches, default=DEFAULT_BATCHES)
    parser.add_argument("--precisions", default="fp32,fp16,bf16")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--images", action="append", default=None, help="Image folder(s) for fidelity.")
    parser.add_argument("--no-preprocess", action="store_true", help="Skip the CuPy/NumPy preprocessing section.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import onnxruntime

    from burnscope.benchmarks import engines as bench

    env = environment()
    errors: list[str] = []
    if not env.get("gpu"):
        errors.append("no CUDA GPU visible to torch: nothing to measure")
    cases = gpu_cases(tuple(args.precisions.split(",")),
                      "CUDAExecutionProvider" in onnxruntime.get_available_providers(), bool(env.get("tensorrt")))
    started = time.time()
    result: dict[str, Any] = {"environment": env}
    if env.get("gpu"):
        result.update(bench.run_bench(config=args.model_config, model=args.model, batches=args.batch, images=args.images,
                                      cases=cases, repeat=args.repeat, device_input=True,
                                      progress=lambda m: logging.info("%s", m)))
    result.setdefault("rows", [])
    result["targets"] = check_targets(result["rows"])
    if not args.no_preprocess:
        try:
            from burnscope.benchmarks import preprocess

            result["preprocess_rows"] = preprocess.run_benchmark(batch_sizes=(1, 64, 256))
        except Exception as exc:
            errors.append(f"preprocessing benchmark: {type(exc).__name__}: {exc}")
    result["errors"] = errors
    result["seconds"] = round(time.time() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "engines-gpu.json").write_text(json.dumps(result, indent=2, default=str))
    command = f"{COMMAND} " + " ".join(argv if argv is not None else sys.argv[1:])
    (args.out / "engines-gpu.md").write_text(render_markdown(result, command.strip()))
    print(render_markdown(result, command.strip()))
    return result


if __name__ == "__main__":
    main()
