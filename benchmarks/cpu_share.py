"""CPU-share benchmark: the per-image CPU time of everything but the image tower.

    burnscope bench cpu-share -i sample_data --copies 8 --batch-sizes 1 32 --json cpu-share.json
    python -m burnscope.benchmarks.cpu_share -i sample_data [--compare OTHER_PYTHON]

The image tower is replaced by :class:`StandInTower`, a zero-cost stand-in (a benchmark
instrument: its :class:`~burnscope.common.messages.ModelInfo` says so, its backend is
:data:`~burnscope.engines.base.INSTRUMENT_BACKEND`, which no setting, option or
``create_engine`` accepts, and ``run_triage`` refuses to write reports with it). Everything
else runs as ``burnscope run`` runs it, called directly (no Holoscan), one stage after another
on one thread: DICOM decode (serial), BiomedCLIP preprocessing (NumPy, thumbnails kept), the
stand-in, the burn head, decision support, and the reports — the JSON + text path together,
and every format alone. Each stage is timed with the wall clock, the process CPU clock
(``time.process_time``: all threads) and the thread CPU clock (``time.thread_time``).

Inputs: ``input_path`` (a DICOM folder; ``copies`` copies of it are read so that batches of 32
fill up), ``batch_sizes``, ``formats``, ``model_config`` (the head's dimension; the tower never
runs). Outputs: per batch size and stage, milliseconds per image (median over ``repeat``
passes after a warm-up pass) and the sums that matter: the JSON + text path after the tower
(head, decision support, JSON + text reports) and the whole JSON + text path.

``--compare OTHER_PYTHON`` runs this same file under another interpreter (another installation
of burnscope, e.g. the previous release) in alternation with this one, so both are measured in
one session under the same load. The file uses only APIs both have.

The figure bounds what any GPU can deliver: at ``c`` ms of CPU per image, one core keeps up
with ``1000 / c`` images per second however fast the tower is.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from burnscope.common.messages import ImageBatch, ModelInfo
from burnscope.engines import base as engine_base

#: Report formats measured one by one (JSON + text are also measured together: the target path).
ALL_FORMATS = ("json", "txt", "sr", "pdf", "pdf_dcm", "fhir", "sc")
JSON_TXT = ("json", "txt")
#: The backend name the stand-in reports (an installation without the constant gets the same).
INSTRUMENT_BACKEND = getattr(engine_base, "INSTRUMENT_BACKEND", "none")
TARGET_MS = 1.0  # DESIGN.md §7: JSON + text path, batch 32, per image per core
ABSTAINED_SHARE = 0.25  # of the stand-in's findings (see Pipeline)


class StandInTower(engine_base.Engine):
    """A zero-cost stand-in for the BiomedCLIP image tower: a **benchmark instrument**.

    ``infer`` returns rows of a fixed table of unit vectors near the head's class directions
    (so the head's labels, confidences and abstentions vary as with a real tower) without
    looking at the pixels. Its ``model_info`` names it as an instrument, with demo set so that
    anything rendered with it carries the demo banner. Only this benchmark builds it.
    """

    backend = INSTRUMENT_BACKEND

    def __init__(self, bundle: Any, class_directions: np.ndarray | None = None, rows: int = 97, seed: int = 0):
        super().__init__(bundle, precision="fp32", device="cpu", batch_sizes=(1,))
        rng = np.random.default_rng(seed)
        table = rng.standard_normal((rows, self.embed_dim)).astype(np.float32)
        if class_directions is not None and len(class_directions):
            directions = np.asarray(class_directions, np.float32)
            directions = engine_base.l2_normalize(directions - directions.mean(axis=0))  # what tells classes apart
            pick = directions[np.arange(rows) % len(directions)]
            # mostly confident findings, some close calls (abstentions) and some noise
            table = pick * rng.uniform(0.0, 3.0, (rows, 1)).astype(np.float32) + 0.05 * table
        self.table = engine_base.l2_normalize(table)

    def _infer(self, batch: Any) -> np.ndarray:
        n = int(batch.shape[0])
        return self.table[np.arange(n) % len(self.table)]

    def warmup(self, iterations: int = 1, sizes: Sequence[int] | None = None) -> "StandInTower":
        self._warm = True
        return self

    @property
    def model_info(self) -> ModelInfo:
        return ModelInfo(
            name=f"zero-cost stand-in for the image tower of {self.bundle.info.name} (benchmark instrument)",
            weights="none: benchmark instrument, the image tower does not run",
            demo=True,
            backend=INSTRUMENT_BACKEND,
            precision="none",
            device="cpu",
        )


class StageClock:
    """Sums of wall, process-CPU and thread-CPU seconds per named stage; ``sync`` (e.g. a CUDA
    device synchronisation) runs at the end of each stage, so GPU work counts where it is queued."""

    def __init__(self, sync: Any = None) -> None:
        self.totals: dict[str, list[float]] = {}
        self.sync = sync

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        wall, cpu, thread = time.perf_counter(), time.process_time(), time.thread_time()
        try:
            yield
            if self.sync is not None:
                self.sync()
        finally:
            acc = self.totals.setdefault(stage, [0.0, 0.0, 0.0])
            acc[0] += time.perf_counter() - wall
            acc[1] += time.process_time() - cpu
            acc[2] += time.thread_time() - thread


def _cuda_sync() -> None:
    import cupy

    cupy.cuda.Device().synchronize()


def copy_inputs(source: Path, copies: int, into: Path) -> Path:
    """``copies`` copies of the folder ``source`` side by side under ``into`` (returned)."""
    for i in range(copies):
        shutil.copytree(source, into / f"copy-{i + 1:03d}")
    return into


def _report_sets(formats: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Emitters measured: the report dict alone, the JSON + text path, each format alone, and
    all of ``formats`` together (as one run writes them: the PDF is rendered once for both PDF
    formats) when they are more than JSON + text."""
    sets = {"report: dict only": (), "report: json+txt": JSON_TXT}
    sets.update({f"report: {fmt} alone": (fmt,) for fmt in formats})
    if set(formats) - set(JSON_TXT):
        sets[ALL_TOGETHER] = tuple(formats)
    return sets


class Pipeline:
    """The cores of burn-triage with the stand-in tower, built once per process."""

    def __init__(self, model_config: str, formats: Sequence[str], keep_thumbnails: bool = True,
                 default_case: dict[str, Any] | None = None, gpu: bool = False) -> None:
        from burnscope.engines.model import load_biomedclip
        from burnscope.operators.burn_severity.core import BurnSeverity, load_head
        from burnscope.operators.decision_support.core import DecisionSupport
        from burnscope.operators.inference.core import ImageEncoder
        from burnscope.operators.preprocess.core import Preprocessor

        bundle = load_biomedclip(config=model_config)
        head = load_head(bundle)
        self.gpu = gpu
        self.tower = StandInTower(bundle, class_directions=head.weights)
        # The demo model's class embeddings are nearly parallel, so every finding would abstain
        # (the cheapest path through decision support): put the abstain threshold where a
        # quarter of the stand-in's findings abstain and the rest take the full path.
        top = head.predict_proba(self.tower.table).max(axis=1)
        head.abstain_threshold = float(np.quantile(top, ABSTAINED_SHARE))
        self.engine = self.tower
        if gpu:  # the real GPU path: nvImageCodec, CuPy preprocessing, torch FP16 with CUDA graphs
            from burnscope.engines.base import create_engine

            self.engine = create_engine(bundle, "torch", "fp16", "cuda", batch_sizes=(1, 32)).warmup(1)
        self.encoder = ImageEncoder(self.engine)
        self.preprocessor = Preprocessor.from_config(bundle.preprocess_cfg, device="gpu" if gpu else "cpu")
        self.severity = BurnSeverity(head)
        self.support = DecisionSupport(default_case or {})
        self.formats = tuple(formats)
        self.keep_thumbnails = keep_thumbnails

    def one_pass(self, root: Path, batch_size: int) -> tuple[dict[str, list[float]], int]:
        """Every stage over every image under ``root``; returns (stage totals, images)."""
        from burnscope.operators.dicom_loader.core import DicomLoader
        from burnscope.operators.report.core import ReportEmitter

        clock = StageClock(sync=_cuda_sync if self.gpu else None)
        loader = DicomLoader(workers=8, gpu_jpeg=True) if self.gpu else DicomLoader(workers=1)
        emitters = {name: ReportEmitter(fmts, source_root=str(root)) for name, fmts in _report_sets(self.formats).items()}
        batches = loader.iter_batches(root, batch_size)
        images = 0
        while True:
            with clock("decode"):
                batch = next(batches, None)
            if batch is None:
                break
            records, _errors = batch
            if not records:
                continue
            images += len(records)
            with clock("preprocess"):
                pre = self.preprocessor.process([r.pixels for r in records], thumbnails=self.keep_thumbnails)
            with clock(TOWER):
                embedded = self.encoder.run(ImageBatch([r.context for r in records], pre.tensor, pre.thumbnails))
            with clock("head"):
                findings = self.severity(embedded)
            with clock("decision support"):
                decisions = self.support(findings)
            for name, emitter in emitters.items():
                with clock(name):
                    emitter.emit(decisions)
            with clock(ROLLUP):
                touched = sorted({d.finding.context.study_instance_uid for d in decisions} - {""})
                emitters["report: json+txt"].study_rollups(touched)
        if not self.gpu:
            self._gpu_host_decode(root, batch_size, clock)
        return clock.totals, images

    @staticmethod
    def _gpu_host_decode(root: Path, batch_size: int, clock: StageClock) -> None:
        """The loader's CPU work when the GPU decodes JPEG/J2K: headers, context and codestream
        extraction only (frames kept encoded); other frames decoded as usual. Installations
        without the GPU path skip it."""
        try:
            from burnscope.operators.dicom_loader.gpu_jpeg import encoded_frames
            from burnscope.operators.dicom_loader.core import DicomLoader

            loader = DicomLoader(workers=1, frame_source=encoded_frames)
        except (ImportError, TypeError):
            return
        batches = loader.iter_batches(root, batch_size)
        while True:
            with clock(GPU_HOST_DECODE):
                batch = next(batches, None)
            if batch is None:
                break


def measure(pipeline: Pipeline, root: Path, batch_sizes: Sequence[int], repeat: int) -> dict[str, Any]:
    """Per batch size: per stage, ms per image (median over ``repeat`` passes after a warm-up)."""
    out: dict[str, Any] = {}
    for size in batch_sizes:
        pipeline.one_pass(root, size)  # warm-up: imports, caches, allocator
        passes = [pipeline.one_pass(root, size) for _ in range(repeat)]
        images = passes[0][1]
        stages: dict[str, dict[str, float]] = {}
        for stage in passes[0][0]:
            per_image = [[1000.0 * t[stage][k] / images for t, _ in passes] for k in range(3)]
            stages[stage] = {
                "wall_ms": round(statistics.median(per_image[0]), 4),
                "cpu_ms": round(statistics.median(per_image[1]), 4),
                "thread_cpu_ms": round(statistics.median(per_image[2]), 4),
            }
        out[str(size)] = {"images": images, "stages": stages, "sums": _sums(stages)}
    return out


GPU_HOST_DECODE = "decode, GPU path's CPU part (headers + codestreams)"
TOWER = "tower"
ALL_TOGETHER = "report: all formats together"
ROLLUP = "study roll-up (json+txt)"
#: Stage sums reported besides the stages (the report-dict-only emitter is part of every report;
#: the study roll-ups, JSON + text whatever the formats, are part of every report stage).
SUMS = {
    "sum: json+txt after the tower (head, decisions, reports, roll-ups)": (
        "head", "decision support", "report: json+txt", ROLLUP,
    ),
    "sum: json+txt on a GPU host (CPU part of decode … roll-ups)": (
        GPU_HOST_DECODE, "head", "decision support", "report: json+txt", ROLLUP,
    ),
    "sum: json+txt on the CPU alone (decode … roll-ups)": (
        "decode", "preprocess", TOWER, "head", "decision support", "report: json+txt", ROLLUP,
    ),
    "sum: all formats after the tower (head, decisions, reports, roll-ups)": (
        "head", "decision support", ALL_TOGETHER, ROLLUP,
    ),
}


def _sums(stages: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """The sums whose stages were all measured (an installation without the GPU path has no
    GPU-host decode stage, so no GPU-host sum)."""
    return {
        name: {k: round(sum(stages[s][k] for s in parts), 4) for k in ("wall_ms", "cpu_ms", "thread_cpu_ms")}
        for name, parts in SUMS.items() if all(s in stages for s in parts)
    }


def _environment() -> dict[str, Any]:
    import pydicom

    try:
        from importlib.metadata import version

        burnscope_version = version("burnscope")
    except Exception:
        burnscope_version = "?"
    return {
        "python": platform.python_version(),
        "executable": sys.executable,
        "burnscope": burnscope_version,
        "source": str(Path(engine_base.__file__).resolve().parents[1]),
        "numpy": np.__version__,
        "pydicom": pydicom.__version__,
    }


def run_local(input_path: Path, copies: int, batch_sizes: Sequence[int], repeat: int,
              formats: Sequence[str], model_config: str, gpu: bool = False) -> dict[str, Any]:
    """Measure this installation in this process (``gpu``: the GPU path instead of the stand-in)."""
    pipeline = Pipeline(model_config, formats, gpu=gpu)
    with tempfile.TemporaryDirectory(prefix="burnscope-cpu-share-") as tmp:
        root = copy_inputs(Path(input_path), copies, Path(tmp)) if copies > 1 else Path(input_path)
        results = measure(pipeline, root, batch_sizes, repeat)
    return {"environment": _environment(), "model": pipeline.engine.model_info.__dict__, "gpu_path": gpu,
            "batches": results}


def _run_worker(python: str, args: list[str]) -> dict[str, Any]:
    proc = subprocess.run([python, str(Path(__file__).resolve()), "--worker", *args],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{python} {Path(__file__).name} exited {proc.returncode}: {proc.stderr[-800:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _median_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of several runs' per-image figures (same stages and batch sizes)."""
    first = runs[0]
    merged = {"environment": first["environment"], "model": first["model"], "rounds": len(runs), "batches": {}}
    for size, entry in first["batches"].items():
        stages = {
            stage: {k: round(statistics.median(r["batches"][size]["stages"][stage][k] for r in runs), 4) for k in values}
            for stage, values in entry["stages"].items()
        }
        merged["batches"][size] = {"images": entry["images"], "stages": stages, "sums": _sums(stages)}
    return merged


def run_benchmark(input_path: Path, copies: int = 8, batch_sizes: Sequence[int] = (1, 32), repeat: int = 3,
                  formats: Sequence[str] = ALL_FORMATS, model_config: str = "biomedclip",
                  compare: str | None = None, rounds: int = 3, gpu: bool = False) -> dict[str, Any]:
    """The benchmark; with ``compare`` (another Python), both installations in alternation,
    ``rounds`` times each (each in a fresh process), medians reported."""
    from burnscope.benchmarks.environment import cpu_facts

    result: dict[str, Any] = {
        "benchmark": "cpu-share",
        "input": str(input_path),
        "copies": copies,
        "repeat": repeat,
        "formats": list(formats),
        "model_config": model_config,
        "target_ms": TARGET_MS,
        "machine": {**cpu_facts(), "load_average": list(os.getloadavg())},
        "note": "image tower replaced by a zero-cost stand-in (benchmark instrument); nothing here is a report"
        if not gpu else "GPU path: nvImageCodec decoding, CuPy preprocessing, torch FP16 with CUDA graphs; every stage "
        "synchronised; nothing here is a report",
    }
    if gpu:
        from burnscope.common.gpu import torch_cuda_usable
        from burnscope.operators.dicom_loader import gpu_jpeg

        if not (torch_cuda_usable() and gpu_jpeg.available()):
            raise RuntimeError("--gpu needs a usable CUDA GPU, CuPy and nvidia-nvimgcodec-cu13")
    if compare is None or gpu:
        result["installations"] = {"this": run_local(input_path, copies, batch_sizes, repeat, formats, model_config, gpu)}
        return result
    worker_args = ["-i", str(Path(input_path).resolve()), "--copies", str(copies), "--repeat", str(repeat),
                   "--model-config", model_config, "--formats", ",".join(formats),
                   "--batch-sizes", *map(str, batch_sizes)]
    pythons = {"this": sys.executable, "compared": compare}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in pythons}
    for _ in range(rounds):
        for name, python in pythons.items():
            runs[name].append(_run_worker(python, worker_args))
    result["installations"] = {name: _median_runs(r) for name, r in runs.items()}
    return result


def print_table(result: dict[str, Any]) -> None:
    """Stage × batch size, CPU ms per image (process clock) and wall ms, per installation."""
    installations = result["installations"]
    names = list(installations)
    sizes = list(next(iter(installations.values()))["batches"])
    what = "the GPU path, each stage synchronised" if "GPU path" in result["note"] else \
        "image tower replaced by a zero-cost stand-in"
    print(f"CPU share per image (ms; {what}) — {result['input']} "
          f"× {result['copies']}, median of {result['repeat']} passes")
    header = f"{'stage':<64}" + "".join(
        f"{f'{n} b{s} cpu':>17}{'wall':>8}" for s in sizes for n in names
    )
    print(header)
    first = installations[names[0]]["batches"][sizes[0]]
    rows = list(first["stages"]) + list(first["sums"])
    for row in rows:
        cells = ""
        for s in sizes:
            for n in names:
                entry = installations[n]["batches"][s]
                value = entry["stages"].get(row) or entry["sums"].get(row) or {}
                cells += f"{value.get('cpu_ms', float('nan')):>17.3f}{value.get('wall_ms', float('nan')):>8.3f}"
        print(f"{row[:63]:<64}{cells}")
    for n in names:
        batches = installations[n]["batches"]
        if "32" not in batches:
            continue
        for key in list(SUMS)[:2]:
            if key not in batches["32"]["sums"]:
                continue
            cpu = batches["32"]["sums"][key]["cpu_ms"]
            verdict = "met" if cpu <= TARGET_MS else "not met"
            print(f"{n}, batch 32, {key.removeprefix('sum: ')}: {cpu:.3f} ms/image (target ≤ {TARGET_MS:g} ms: {verdict})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-i", "--input", type=Path, required=True, help="DICOM folder (e.g. sample_data)")
    parser.add_argument("--copies", type=int, default=8, help="copies of the input read per pass (batches fill up)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--repeat", type=int, default=3, help="measured passes per batch size (after a warm-up)")
    parser.add_argument("--formats", default=",".join(ALL_FORMATS), help="formats measured one by one")
    parser.add_argument("--model-config", default="biomedclip", help="architecture (the head's dimension)")
    parser.add_argument("--compare", default=None, help="another Python (installation) measured alternately")
    parser.add_argument("--rounds", type=int, default=3, help="with --compare: fresh processes per installation")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--gpu", action="store_true", help="the GPU path instead of the stand-in (GPU machine)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    if args.worker:  # one measurement of this installation, as one JSON line
        result = run_local(args.input, args.copies, args.batch_sizes, args.repeat, formats, args.model_config)
        print(json.dumps(result))
        return 0
    result = run_benchmark(args.input, args.copies, args.batch_sizes, args.repeat, formats, args.model_config,
                           compare=args.compare, rounds=args.rounds, gpu=args.gpu)
    if args.json:
        from burnscope.applications.burn_triage.runner import write_json

        write_json(result, args.json)
    print_table(result)
    return 0


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.ERROR)
    raise SystemExit(main())
