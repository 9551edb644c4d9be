"""CLI commands that measure how the pipeline scales: ``bench cpu-share``, ``bench scaled-decode``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Optional

import typer

from .options import MODEL_CONFIG_OPT, console, fail


def bench_cpu_share(
    input_path: Path = typer.Option(..., "-i", "--input", help="DICOM folder (e.g. sample_data)."),
    copies: int = typer.Option(8, "--copies", min=1, help="Copies of the input read per pass (batches of 32 fill up)."),
    batch_sizes: str = typer.Option("1,32", "--batch-sizes", help="Batch sizes, comma-separated."),
    repeat: int = typer.Option(3, "--repeat", min=1, help="Measured passes per batch size (after a warm-up pass)."),
    formats: Optional[str] = typer.Option(None, "--formats", help="Report formats timed one by one (default: all seven)."),
    model_config: str = MODEL_CONFIG_OPT,
    compare: Optional[str] = typer.Option(None, "--compare", help="Another installation's python, measured alternately (before/after)."),
    rounds: int = typer.Option(3, "--rounds", min=1, help="With --compare: fresh processes per installation."),
    gpu: bool = typer.Option(False, "--gpu", help="Time the GPU path instead (nvImageCodec, CuPy, torch FP16): a per-stage breakdown."),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Also write the figures as JSON."),
) -> None:
    """Per-image CPU time of everything but the image tower (replaced by a zero-cost stand-in):
    decode, preprocess, head, decision support, each report format; batch 1 and 32. With --gpu,
    the same stages on the GPU path, each synchronised (where the time goes on a GPU machine)."""
    from burnscope.benchmarks.cpu_share import ALL_FORMATS, print_table, run_benchmark

    if not input_path.is_dir():
        fail(f"--input: not a folder: {input_path}")
    try:
        sizes = [int(s) for s in batch_sizes.split(",") if s.strip()]
    except ValueError:
        fail(f"--batch-sizes: expected integers, got {batch_sizes!r}")
    chosen = [f.strip() for f in formats.split(",") if f.strip()] if formats else list(ALL_FORMATS)
    unknown = [f for f in chosen if f not in ALL_FORMATS]
    if unknown:
        fail(f"--formats: unknown {', '.join(unknown)}; known: {', '.join(ALL_FORMATS)}")
    with console.status("measuring the CPU share (image tower replaced by a zero-cost stand-in)..."):
        try:
            result = run_benchmark(input_path, copies, sizes, repeat, chosen, model_config, compare=compare,
                                   rounds=rounds, gpu=gpu)
        except RuntimeError as exc:
            fail(str(exc))
    _show(result, print_table, json_file)


def bench_scaled_decode(
    input_path: Path = typer.Option(..., "-i", "--input", help="Folder of large JPEG photographs as DICOM "
                                    "(python -m burnscope.benchmarks.clinical_photos DIR writes 12 MP ones)."),
    models: str = typer.Option("biomedclip,biomedclip-tiny", "--models", help="Architectures whose embedding cosine is measured."),
    repeat: int = typer.Option(3, "--repeat", min=1, help="Timed passes (median)."),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Also write the figures as JSON."),
) -> None:
    """Decode speed-up and image-embedding cosine of DCT-domain scaled JPEG decoding against full decoding."""
    from burnscope.benchmarks.scaled_decode import print_table, run_benchmark

    if not input_path.is_dir():
        fail(f"--input: not a folder: {input_path}")
    with console.status("decoding both ways and embedding..."):
        try:
            result = run_benchmark(input_path, [m.strip() for m in models.split(",") if m.strip()], repeat)
        except (ValueError, RuntimeError) as exc:
            fail(str(exc))
    _show(result, print_table, json_file)


def _show(result: dict, print_table: Callable[[dict], None], json_file: Optional[Path]) -> None:
    """The JSON first (the figures survive whatever the table does), then the table."""
    from burnscope.applications.burn_triage.runner import write_json

    if json_file is not None:
        write_json(result, json_file)
    print_table(result)
    if json_file is not None:
        console.print(f"wrote {json_file}", highlight=False)


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add this module's commands to the ``burnscope`` CLI."""
    bench_app.command("cpu-share")(bench_cpu_share)
    bench_app.command("scaled-decode")(bench_scaled_decode)
