"""CLI commands of the engines: ``export-onnx``, ``quantize``, ``build-engine``, ``bench engines``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import options
from .options import ENGINE_DEVICE_OPT, LEGACY_MODEL_CONFIG_OPT, MODEL_CONFIG_OPT, MODEL_OPT, console, demo_banner, fail


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=False)


def _bundle(model: Optional[str], model_config: str, legacy_config: Optional[str], progress: Progress):
    from burnscope.engines.model import load_biomedclip

    model_config = options.model_config(model_config, legacy_config)
    task = progress.add_task("Loading BiomedCLIP", total=None)
    try:
        bundle = load_biomedclip(model, config=model_config)
    except (FileNotFoundError, ValueError) as exc:
        progress.stop()
        fail(str(exc))
    progress.update(task, description=f"Loaded {bundle.info.name}", completed=1, total=1)
    if bundle.info.demo:
        demo_banner(progress.console)
    return bundle


def export_onnx(
    model: Optional[str] = MODEL_OPT,
    model_config: str = MODEL_CONFIG_OPT,
    legacy_config: Optional[str] = LEGACY_MODEL_CONFIG_OPT,
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write the image tower here (default: the model cache)."),
    text: bool = typer.Option(False, "--text/--no-text", help="Also export the text tower."),
    force: bool = typer.Option(False, "--force", help="Re-export even when a checked export is cached."),
) -> None:
    """Export BiomedCLIP's image (and text) tower to ONNX with a dynamic batch axis; checks it against torch."""
    from burnscope.engines import export

    with _progress() as progress:
        bundle = _bundle(model, model_config, legacy_config, progress)
        task = progress.add_task("Exporting the image tower and checking it against torch", total=None)
        try:
            path = export.export_image_tower(bundle, path=output, force=force)
        except export.ExportCheckError as exc:
            progress.stop()
            fail(str(exc), 1)
        progress.update(task, completed=1, total=1)
        paths = [path]
        if text:
            task = progress.add_task("Exporting the text tower", total=None)
            paths.append(export.export_text_tower(bundle, path=output.with_name(output.stem + "-text.onnx") if output else None, force=force))
            progress.update(task, completed=1, total=1)
    for p in paths:
        meta = p.with_suffix(".json")
        check = json.loads(meta.read_text())["check"] if meta.exists() else {}
        files = ", ".join(str(f) for f in export.onnx_files(p))
        console.print(f"{files}\n  max abs diff vs torch {check.get('max_abs_diff', float('nan')):.2e}, "
                      f"min cosine {check.get('min_cosine', float('nan')):.7f}", highlight=False)


def quantize(
    calib: Optional[Path] = typer.Option(None, "--calib", help="Folder of calibration images (JPEG/PNG/DICOM); default: bundled sample photos."),
    model: Optional[str] = MODEL_OPT,
    model_config: str = MODEL_CONFIG_OPT,
    legacy_config: Optional[str] = LEGACY_MODEL_CONFIG_OPT,
    recipe: str = typer.Option("", "--recipe", help="Which nodes to quantize (see docs/engines.md); default: the measured best."),
    dynamic: bool = typer.Option(False, "--dynamic", help="Dynamic INT8 (no calibration; CPU only) instead of static Q/DQ."),
    limit: int = typer.Option(64, "--limit", help="At most this many calibration images (each adds 2 augmented views)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write the INT8 ONNX here (default: the model cache)."),
) -> None:
    """INT8 post-training quantization of the image tower (Q/DQ ONNX for ONNX Runtime and TensorRT)."""
    from burnscope.engines import export, quantize as q
    from burnscope.operators.preprocess.calibration import calibration_images

    if calib is not None and not calib.exists():
        fail(f"calibration folder not found: {calib}")
    recipe = recipe or q.DEFAULT_RECIPE
    if recipe not in q.RECIPES:
        fail(f"unknown recipe {recipe!r}; known: {', '.join(q.RECIPES)}")
    with _progress() as progress:
        bundle = _bundle(model, model_config, legacy_config, progress)
        task = progress.add_task("Exporting the fp32 image tower", total=None)
        fp32 = export.export_image_tower(bundle)
        progress.update(task, completed=1, total=1)
        if dynamic:
            task = progress.add_task("Dynamic INT8 quantization", total=None)
            path = q.quantize_dynamic_image_tower(bundle, path=output)
            images = None
        else:
            task = progress.add_task("Reading calibration images", total=None)
            try:
                images = calibration_images(bundle.config, calib, limit)
            except ValueError as exc:
                progress.stop()
                fail(str(exc))
            progress.update(task, description=f"Calibrating ({recipe}) on {len(images)} views and writing Q/DQ ONNX")
            path = q.quantize_static_image_tower(bundle, images, recipe=recipe, path=output)
        progress.update(task, completed=1, total=1)
        task = progress.add_task("Measuring fidelity vs fp32", total=None)
        check = images[: min(len(images), 24)] if images is not None else calibration_images(bundle.config, calib, 8)
        result = q.fidelity(q.run_onnx(fp32, check), q.run_onnx(path, check))
        progress.update(task, completed=1, total=1)
    counts = q.qdq_counts(path)
    ops = ", ".join(f"{op} {n}" for op, n in counts.items() if n)
    console.print(f"{path}\n  {ops}; "
                  f"cosine vs fp32 min {result['cosine_min']:.4f} mean {result['cosine_mean']:.4f} "
                  f"({'calibration' if images is not None else 'sample'} images)", highlight=False)


def build_engine(
    backend: str = typer.Option("onnxruntime", "--backend", help="onnxruntime | torch | tensorrt"),
    precision: str = typer.Option("fp32", "--precision", help="fp32 | fp16 | bf16 | int8 | int8-dynamic | fp8"),
    device: str = ENGINE_DEVICE_OPT,
    batch: str = typer.Option("1,8", "--batch", help="Batch sizes (TensorRT profiles, CUDA graphs)."),
    calib: Optional[Path] = typer.Option(None, "--calib", help="Calibration folder for int8."),
    onnx_path: Optional[Path] = typer.Option(None, "--onnx", help="Build from this ONNX file (e.g. an FP8 Q/DQ model)."),
    model: Optional[str] = MODEL_OPT,
    model_config: str = MODEL_CONFIG_OPT,
    legacy_config: Optional[str] = LEGACY_MODEL_CONFIG_OPT,
) -> None:
    """Build (or load from the cache) an engine, warm it up, and describe it."""
    from burnscope.engines.base import EngineError, create_engine
    from burnscope.operators.preprocess.calibration import calibration_for

    sizes = options.batch_sizes(batch)
    with _progress() as progress:
        bundle = _bundle(model, model_config, legacy_config, progress)
        task = progress.add_task(f"Building {backend} {precision} engine", total=None)
        opts = {"calibration": calibration_for(bundle.config, calib)} if backend != "torch" else {}
        if onnx_path is not None and backend != "torch":
            opts["onnx_path"] = onnx_path
        try:
            engine = create_engine(bundle, backend, precision, device, batch_sizes=sizes, **opts).warmup(1)
        except (ValueError, EngineError) as exc:
            progress.stop()
            fail(str(exc))
        progress.update(task, completed=1, total=1)
    console.print_json(json.dumps(engine.describe(), default=str))


def bench_engines(
    backends: Optional[str] = typer.Option(None, "--backends", help="Comma-separated: torch,onnxruntime,tensorrt (default: all available)."),
    batch: str = typer.Option("1,8", "--batch", help="Batch sizes, e.g. 1,8,32."),
    images: Optional[List[Path]] = typer.Option(None, "--images", help="Image folder(s) for fidelity (default: the sample photographs installed with burnscope)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the rows (and run facts) to this JSON file."),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="Also write the table as Markdown here."),
    precisions: Optional[str] = typer.Option(None, "--precisions", help="Only these precisions (comma-separated)."),
    device: str = ENGINE_DEVICE_OPT,
    repeat: int = typer.Option(20, "--repeat", help="Timed runs per batch size."),
    calib: Optional[Path] = typer.Option(None, "--calib", help="Calibration folder for static INT8 (default: the installed sample photographs, i.e. the default fidelity images)."),
    model: Optional[str] = MODEL_OPT,
    model_config: str = MODEL_CONFIG_OPT,
    legacy_config: Optional[str] = LEGACY_MODEL_CONFIG_OPT,
) -> None:
    """Latency, throughput, memory and fidelity vs fp32 torch for each backend × precision × batch."""
    from burnscope.benchmarks import engines as bench
    from burnscope.engines.base import BACKENDS

    chosen = [b.strip() for b in backends.split(",")] if backends else None
    for name in chosen or []:
        if name not in BACKENDS:
            fail(f"unknown backend {name!r}; valid backends: {', '.join(BACKENDS)}")
    for folder in images or []:
        if not folder.exists():
            fail(f"image folder not found: {folder}")
    sizes = options.batch_sizes(batch)
    with _progress() as progress:
        bundle = _bundle(model, model_config, legacy_config, progress)
        task = progress.add_task("Benchmark", total=None)
        result = bench.run_bench(
            bundle=bundle, backends=chosen, batches=sizes, images=images or None, device=device, repeat=repeat,
            calib_dir=calib, progress=lambda message: progress.update(task, description=message),
            cases=[c for c in bench.available_cases(chosen, device, precisions.split(",") if precisions else None)],
        )
        progress.update(task, description="Benchmark done", completed=1, total=1)
    rows = result["rows"]
    if not rows:
        fail("no engine could be measured on this machine")
    ratio = bench.speedups(rows)
    table = Table(title=f"BiomedCLIP image tower · {result['meta']['images']} images · fidelity vs torch fp32")
    for column in ("backend", "precision", "device", "batch", "p50 ms", "p95 ms", "img/s", "× torch", "peak MB", "cos min", "cos mean", "top-1 agree"):
        table.add_column(column, justify="left" if column in ("backend", "precision", "device") else "right")
    for r in rows:
        x = ratio.get((r["backend"], r["precision"], r["device"], r["batch"]))
        table.add_row(r["backend"], r["precision"], r["device"], str(r["batch"]), f"{r['p50_ms']:.1f}", f"{r['p95_ms']:.1f}",
                      f"{r['images_per_s']:.1f}", "" if x is None else f"{x:.2f}×", f"{r['peak_mem_mb']:.0f}",
                      f"{r['cosine_min']:.4f}", f"{r['cosine_mean']:.4f}", f"{r['top1_agreement']:.3f}")
    console.print(table)
    if bundle.info.demo:
        demo_banner(console, " fidelity is measured on random weights")
    if json_path:
        bench.write_json(result, json_path)
        console.print(f"rows written to {json_path}", highlight=False)
    if markdown:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(bench.markdown_table(rows) + "\n")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add this module's commands to the burnscope CLI."""
    app.command("export-onnx")(export_onnx)
    app.command("quantize")(quantize)
    app.command("build-engine")(build_engine)
    bench_app.command("engines")(bench_engines)
