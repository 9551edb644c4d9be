"""Scaled-decode benchmark: speed and fidelity of DCT-domain JPEG downscaling against full decoding.

    burnscope bench scaled-decode -i CLINICAL_DIR [--models biomedclip,biomedclip-tiny] [--json FILE]
    python -m burnscope.benchmarks.scaled_decode -i CLINICAL_DIR

``CLINICAL_DIR`` holds large JPEG photographs as DICOM (``python -m
burnscope.benchmarks.clinical_photos DIR`` writes 12 MP ones). For every JPEG file whose frames
:class:`~burnscope.operators.dicom_loader.scaled.ScaledJpegFrames` reduces, the benchmark
decodes it both ways — in full with pydicom's decoders (what the loader does without it), and
at the largest 1/2, 1/4 or 1/8 DCT scale that keeps the short side ≥ 224 — applies the exact
BiomedCLIP transform to both, and reports:

* CPU milliseconds per image (process clock, median of ``repeat`` passes) of decoding, and of
  decoding + preprocessing, each way, and the speed-up;
* the transform's output difference in 8-bit levels (mean and max |Δ| over the 224×224 crops);
* the image-embedding cosine between the two, per model architecture (ONNX Runtime fp32 on the
  CPU; the full-size ``biomedclip`` architecture is the one that decides, the tiny test
  architecture is shown beside it), min and mean over the images.

The verdict line says whether the cosine clears :data:`FIDELITY_THRESHOLD` for every model: only
then may ``source.scaled_decode`` default to ``auto``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

FIDELITY_THRESHOLD = 0.999


def _decode_all(loader: Any, files: Sequence[Path]) -> tuple[list[np.ndarray], float]:
    start = time.process_time()
    pixels = []
    for f in files:
        result = loader.load_file_result(f)
        if result.error is not None:
            raise RuntimeError(f"{f.name}: {result.error.reason} ({result.error.message})")
        pixels.extend(r.pixels for r in result.images)
    return pixels, time.process_time() - start


def run_benchmark(input_path: Path, models: Sequence[str] = ("biomedclip", "biomedclip-tiny"), repeat: int = 3,
                  min_side: int = 224) -> dict[str, Any]:
    import pydicom

    from burnscope.benchmarks.environment import cpu_facts
    from burnscope.engines.base import create_engine
    from burnscope.engines.model import load_biomedclip
    from burnscope.operators.dicom_loader.core import DicomLoader
    from burnscope.operators.dicom_loader.scaled import ScaledJpegFrames, reduction, scalable
    from burnscope.operators.preprocess.core import Preprocessor

    files = []
    for f in sorted(DicomLoader().scan(input_path)):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        if scalable(ds, str(ds.file_meta.TransferSyntaxUID)) and reduction(ds.Rows, ds.Columns, min_side) > 1:
            files.append((f, int(ds.Rows), int(ds.Columns), reduction(ds.Rows, ds.Columns, min_side)))
    if not files:
        raise ValueError(f"{input_path}: no JPEG photograph large enough to decode scaled (short side ≥ {2 * min_side})")
    paths = [f for f, *_ in files]
    loaders = {"full": DicomLoader(workers=1, max_pixels=1 << 31),
               "scaled": DicomLoader(workers=1, max_pixels=1 << 31, frame_source=ScaledJpegFrames(min_side))}
    preprocessor = Preprocessor(device="cpu")
    timing: dict[str, dict[str, float]] = {}
    tensors: dict[str, np.ndarray] = {}
    for name, loader in loaders.items():
        _decode_all(loader, paths[:1])  # warm-up
        decode_s, total_s = [], []
        for _ in range(repeat):
            pixels, seconds = _decode_all(loader, paths)
            start = time.process_time()
            tensors[name] = preprocessor(pixels)
            decode_s.append(seconds)
            total_s.append(seconds + time.process_time() - start)
        timing[name] = {
            "decode_cpu_ms": round(1000 * statistics.median(decode_s) / len(paths), 2),
            "decode_preprocess_cpu_ms": round(1000 * statistics.median(total_s) / len(paths), 2),
            "decoded_shape": list(pixels[0].shape),
        }
    levels = np.abs(tensors["full"] - tensors["scaled"]) * (np.asarray(preprocessor.std, np.float32)[None, :, None, None] * 255)
    fidelity = {}
    for model in models:
        bundle = load_biomedclip(config=model)
        engine = create_engine(bundle, backend="onnxruntime", precision="fp32", device="cpu", batch_sizes=(1, 8))
        full = engine.infer(tensors["full"])
        scaled = engine.infer(tensors["scaled"])
        cosine = np.sum(full * scaled, axis=1)
        fidelity[model] = {
            "model": bundle.info.name, "weights": bundle.info.weights, "demo": bundle.info.demo,
            "cosine_min": round(float(cosine.min()), 6), "cosine_mean": round(float(cosine.mean()), 6),
            "cosine_per_image": [round(float(c), 6) for c in cosine],
        }
    passed = all(f["cosine_min"] >= FIDELITY_THRESHOLD for f in fidelity.values())
    return {
        "benchmark": "scaled-decode",
        "input": str(input_path),
        "images": len(paths),
        "image_size": [files[0][2], files[0][1]],
        "reduction": sorted({scale for *_, scale in files}),
        "min_side": min_side,
        "repeat": repeat,
        "machine": cpu_facts(),
        "timing": timing,
        "speedup_decode": round(timing["full"]["decode_cpu_ms"] / timing["scaled"]["decode_cpu_ms"], 2),
        "speedup_decode_preprocess": round(
            timing["full"]["decode_preprocess_cpu_ms"] / timing["scaled"]["decode_preprocess_cpu_ms"], 2),
        "transform_output_levels": {"mean_abs": round(float(levels.mean()), 3), "max_abs": round(float(levels.max()), 1)},
        "fidelity": fidelity,
        "threshold": FIDELITY_THRESHOLD,
        "passes": passed,
        "verdict": "cosine ≥ threshold for every model: scaled decoding may be the default"
        if passed else "cosine below threshold: scaled decoding stays an option (source.scaled_decode: auto)",
    }


def print_table(result: dict[str, Any]) -> None:
    t = result["timing"]
    print(f"scaled JPEG decode on {result['images']} photographs of {result['image_size'][0]}×{result['image_size'][1]} "
          f"(reduction 1/{','.join(map(str, result['reduction']))}; CPU ms per image, median of {result['repeat']})")
    print(f"{'path':<10}{'decoded to':>14}{'decode ms':>12}{'decode+preprocess ms':>24}")
    for name in ("full", "scaled"):
        shape = "×".join(map(str, t[name]["decoded_shape"][1::-1]))
        print(f"{name:<10}{shape:>14}{t[name]['decode_cpu_ms']:>12.1f}{t[name]['decode_preprocess_cpu_ms']:>24.1f}")
    print(f"speed-up: decode ×{result['speedup_decode']}, decode + preprocess ×{result['speedup_decode_preprocess']}; "
          f"transform output |Δ| mean {result['transform_output_levels']['mean_abs']} levels, "
          f"max {result['transform_output_levels']['max_abs']}")
    for name, f in result["fidelity"].items():
        print(f"embedding cosine, {name}: min {f['cosine_min']:.6f}, mean {f['cosine_mean']:.6f}"
              + (" (demo weights)" if f["demo"] else ""))
    print(result["verdict"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-i", "--input", type=Path, required=True, help="folder of large JPEG photographs (DICOM)")
    parser.add_argument("--models", default="biomedclip,biomedclip-tiny", help="architectures, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    result = run_benchmark(args.input, [m for m in args.models.split(",") if m], args.repeat)
    if args.json:
        from burnscope.applications.burn_triage.runner import write_json

        write_json(result, args.json)
    print_table(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
