"""CLI commands of the core applications: ``info``, ``run``, ``bench burn-triage``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .distributed_opts import ADDRESS_OPT, DRIVER_OPT, FRAGMENTS_OPT, WORKER_ADDRESS_OPT, WORKER_OPT, distributed_options
from .options import (
    BACKEND_OPT, CONFIG_OPT, DEVICE_OPT, MODEL_OPT, PRECISION_OPT, SCHEDULER_OPT, console, demo_banner,
    ensure_output_folder, fail,
)

APPLICATIONS = ("burn-triage",)


def info(
    model: Optional[str] = MODEL_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Versions, GPU and TensorRT availability, and which model weights are in use."""
    from burnscope.applications.environment import collect

    facts = collect(model)
    if as_json:
        typer.echo(json.dumps(facts, indent=2))
        return
    table = Table(title="burnscope environment", show_header=False)
    table.add_row("burnscope", str(facts["burnscope"]))
    table.add_row("python", f"{facts['python']} ({facts['platform']}, {facts['cpu_count']} CPUs)")
    for name, version in facts["libraries"].items():
        table.add_row(name, version or "[red]not installed[/red]")
    gpu = facts["gpu"]
    table.add_row("GPU usable", f"{'yes: ' + gpu.get('name', '') if gpu['usable'] else 'no (CPU paths)'}"
                  f"  cupy={gpu['cupy_usable']} torch.cuda={gpu['torch_cuda_usable']}")
    trt = facts["tensorrt"]
    table.add_row("TensorRT", trt.get("version") if trt["importable"] else f"not importable ({trt['error'][:60]})")
    m = facts["model"]
    if m.get("error"):
        table.add_row("model weights", f"[red]{m['error']}[/red]")
    else:
        note = f"[bold yellow]{m['note']}[/bold yellow]" if m.get("note") else ""
        table.add_row("model weights", f"{m['weights']} {note}".strip() if m["weights"] else note)
    console.print(table)


def _prepare(
    app_name: str,
    input_path: Optional[Path],
    config: Optional[Path],
    overrides: dict,
    model: Optional[str] = None,
    output_dir: Optional[Path] = None,
    check_input: bool = True,
) -> dict:
    """Validate everything that needs no model (settings, engine choice, weights and head files,
    input, output folder) before the model loads; return the merged settings."""
    from burnscope.applications.burn_triage.preflight import preflight
    from burnscope.applications.burn_triage.security import check_security
    from burnscope.applications.burn_triage.settings import SettingsError, load_settings

    if app_name not in APPLICATIONS:
        fail(f"unknown application {app_name!r}; available: {', '.join(APPLICATIONS)}")
    try:
        settings = load_settings(config, overrides)
        check_security(settings)  # certificates, keys and secrets usable: before anything starts
        preflight(settings, input_path, model, check_input=check_input)
    except SettingsError as exc:
        fail(str(exc))
    if output_dir is not None:
        ensure_output_folder(output_dir)
    return settings


def _read_case(path: Path) -> dict:
    try:
        case = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        fail(f"--case {path}: {exc}")
    if not isinstance(case, dict):
        fail(f"--case {path}: expected a JSON object")
    return case


def _overrides(backend, precision, device, batch_size, scheduler) -> dict:
    return {
        "inference": {"backend": backend, "precision": precision, "device": device},
        "preprocess": {"device": device},
        "source": {"batch_size": batch_size},
        "scheduler": {"kind": scheduler},
    }


def _load_components(settings: dict, model: Optional[str]):
    from burnscope.applications.burn_triage.app import build_components

    with console.status("Loading BiomedCLIP and preparing the engine (first run exports/caches it)..."):
        try:
            return build_components(settings, model=model)
        except (FileNotFoundError, ValueError, RuntimeError, ImportError) as exc:
            fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def _print_summary(summary: dict) -> None:
    model = summary["model"]
    if model["demo"]:
        demo_banner(console)
    table = Table(title="burn-triage summary")
    table.add_column("item")
    table.add_column("count", justify="right")
    table.add_row("files", str(summary["files"]))
    if summary.get("skipped_by_selection"):
        table.add_row("files not selected (series rules)", str(summary["skipped_by_selection"]))
    table.add_row("images processed", str(summary["images"]))
    table.add_row("reports written", str(summary["reports"]))
    for label, count in summary["findings"].items():
        table.add_row(f"  finding: {label}", str(count))
    table.add_row("errors", str(summary["errors"]))
    for reason, count in summary["error_reasons"].items():
        table.add_row(f"  error: {reason}", str(count))
    if "rejected_associations" in summary:
        table.add_row("associations refused (SCP access control)", str(summary["rejected_associations"]))
    for key, count in (summary.get("delivery") or {}).items():
        table.add_row(f"delivery: {key}", str(count))
    console.print(table)
    console.print(
        f"model: {model['name']} · weights: {model['weights']} · backend: {model['backend']} "
        f"({model['precision']}, {model['device']}) · {summary['wall_s']:.1f} s", highlight=False
    )
    if summary.get("output_dir"):
        console.print(f"reports in {summary['output_dir']}", highlight=False)


APP_ARG = typer.Argument(..., metavar="APP", help="Application to run: burn-triage.")


def run(
    app_name: str = APP_ARG,
    input_path: Optional[Path] = typer.Option(None, "-i", "--input", help="DICOM folder (recursive) or file; with --watch, the folder to watch."),
    output_dir: Optional[Path] = typer.Option(None, "-o", "--output", help="Folder for the reports (required unless this process runs only the ingest or inference fragment)."),
    model: Optional[str] = MODEL_OPT,
    backend: Optional[str] = BACKEND_OPT,
    precision: Optional[str] = PRECISION_OPT,
    device: Optional[str] = DEVICE_OPT,
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Images per message."),
    scheduler: Optional[str] = SCHEDULER_OPT,
    config: Optional[Path] = CONFIG_OPT,
    watch: bool = typer.Option(False, "--watch", help="Watch the input folder and process files as they land (until stopped)."),
    listen: Optional[int] = typer.Option(None, "--listen", help="Receive images as a DICOM C-STORE SCP on this port (until stopped)."),
    ae_title: Optional[str] = typer.Option(None, "--ae-title", help="AE title of the C-STORE SCP (default BURNSCOPE)."),
    stop_after_idle: Optional[float] = typer.Option(None, "--stop-after-idle", help="--watch/--listen: stop after this many seconds without a new file."),
    max_files: Optional[int] = typer.Option(None, "--max-files", help="--watch/--listen: stop after this many files."),
    select: Optional[Path] = typer.Option(None, "--select", help="Series-selection rules (JSON); only matching series are processed."),
    case: Optional[Path] = typer.Option(None, "--case", help="Case data (JSON, keys as in `burnscope decide`) for every image; sidecars override it."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bar."),
    driver: bool = DRIVER_OPT,
    worker: bool = WORKER_OPT,
    address: Optional[str] = ADDRESS_OPT,
    worker_address: Optional[str] = WORKER_ADDRESS_OPT,
    fragments: Optional[str] = FRAGMENTS_OPT,
) -> None:
    """Run an application on a folder of DICOM images and write a report per image.

    With --driver/--worker/--fragments the graph runs as fragments ingest, inference and
    reporting, in this process or spread over hosts (docs/deployment.md)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from burnscope.applications.burn_triage.runner import run_triage, write_json

    dist = distributed_options(driver, worker, address, worker_address, fragments)
    if output_dir is None and (dist is None or "reporting" in dist.local_fragments()):
        fail("missing option -o/--output: the folder for the reports")
    overrides = _overrides(backend, precision, device, batch_size, scheduler)
    if case is not None:
        overrides["decision_support"] = {"default_case": _read_case(case)}
    if watch and listen is not None:
        fail("choose one of --watch and --listen")
    source = overrides["source"]
    source.update(stop_after_idle=stop_after_idle, max_files=max_files)
    if select is not None:
        if not select.is_file():
            fail(f"--select: rules file not found: {select}")
        source["select"] = str(select)
    if watch:
        if input_path is None:
            fail("--watch needs -i/--input: the folder to watch")
        source["kind"] = "watch"
    elif listen is not None:
        source.update(kind="scp", scp={"port": listen, "ae_title": ae_title})
        input_path = input_path or output_dir
    settings = _prepare(app_name, input_path, config, overrides, model=model, output_dir=output_dir,
                        check_input=dist is None or "ingest" in dist.local_fragments())
    if dist is not None:
        from .distributed_run import run_distributed_cli

        return run_distributed_cli(settings, input_path, output_dir, model, dist, quiet)
    components = _load_components(settings, model)
    if settings["source"]["kind"] != "folder":
        scp = settings["source"]["scp"]
        where = f"port {scp['port']} as {scp['ae_title']}" if settings["source"]["kind"] == "scp" else str(input_path)
        console.print(f"listening on {where}; Ctrl-C stops", highlight=False)
    progress = Progress(TextColumn("files"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console, disable=quiet or input_path.is_file())
    task = progress.add_task("files", total=None)

    def on_progress(done: int, total: int, _result) -> None:
        progress.update(task, completed=done, total=total)

    with progress:
        summary = run_triage(settings, input_path, output_dir, components, on_progress=on_progress)
    write_json(summary, output_dir / "summary.json")
    _print_summary(summary)
    if summary["reports"] == 0:
        fail("no image could be processed", code=1)


def bench_burn_triage(
    input_path: Path = typer.Option(..., "-i", "--input", help="DICOM folder (recursive) or file."),
    repeat: int = typer.Option(3, "--repeat", min=1, help="Measured runs over the input (after one warm-up run)."),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Also write the figures as JSON."),
    model: Optional[str] = MODEL_OPT,
    backend: Optional[str] = BACKEND_OPT,
    precision: Optional[str] = PRECISION_OPT,
    device: Optional[str] = DEVICE_OPT,
    batch_size: Optional[int] = typer.Option(1, "--batch-size", help="Images per message (1: per-image latency)."),
    scheduler: Optional[str] = SCHEDULER_OPT,
    config: Optional[Path] = CONFIG_OPT,
    formats: Optional[str] = typer.Option(None, "--formats", help="Report formats rendered, comma-separated (default from config: all six)."),
    period_ms: Optional[float] = typer.Option(None, "--period-ms", help="Pace the source: one batch per period (unloaded latency); default: as fast as possible."),
    direct: bool = typer.Option(True, "--direct/--no-direct", help="Also time the same stages called without Holoscan (overhead)."),
) -> None:
    """Run burn-triage headless (reports rendered, not written): latency p50/p95/p99, images/s, peak RSS."""
    from burnscope.applications.burn_triage.runner import write_json
    from burnscope.benchmarks.burn_triage import run_benchmark

    overrides = _overrides(backend, precision, device, batch_size, scheduler)
    overrides["source"]["period_ms"] = period_ms
    if formats:
        overrides["report"] = {"formats": [f.strip() for f in formats.split(",") if f.strip()]}
    settings = _prepare("burn-triage", input_path, config, overrides, model=model)
    components = _load_components(settings, model)
    with console.status(f"benchmarking burn-triage ({repeat} runs after a warm-up)..."):
        # a paced graph waits on purpose: no overhead to compare
        result = run_benchmark(settings, input_path, components, repeat=repeat, direct=direct and not period_ms)
    if result["model"].get("demo"):
        demo_banner(console)
    table = Table(title=f"burn-triage headless · {result['model'].get('backend')} {result['model'].get('precision')} "
                        f"· batch {result['batch_size']} · {result['scheduler']}")
    table.add_column("path")
    for col in ("imgs", "p50 ms", "p95 ms", "p99 ms", "img/s", "run s", "RSS MB"):
        table.add_column(col, justify="right")
    lat = result["latency_ms"]
    table.add_row("graph", str(result["images_per_run"]), f"{lat['p50']:.1f}", f"{lat['p95']:.1f}",
                  f"{lat['p99']:.1f}", f"{result['images_per_s']:.2f}", f"{result['run_wall_s_median']:.2f}",
                  f"{result['peak_rss_mb']:.0f}")
    if "direct" in result:
        d, dl = result["direct"], result["direct"]["latency_ms"]
        table.add_row("direct", str(result["images_per_run"]), f"{dl['p50']:.1f}", f"{dl['p95']:.1f}",
                      f"{dl['p99']:.1f}", f"{d['images_per_s']:.2f}", f"{d['run_wall_s_median']:.2f}", "")
    console.print(table)
    console.print("graph: the Holoscan app headless; direct: the same cores called in a loop; latency per message "
                  "(loader emit → report sink); run s: median wall time of one pass over the input.", highlight=False)
    if result.get("holoscan_overhead_pct") is not None:
        console.print(f"Holoscan overhead (median run time, graph vs direct): {result['holoscan_overhead_pct']:+.1f}%")
    if json_file is not None:
        write_json(result, json_file)
        console.print(f"wrote {json_file}", highlight=False)


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add this module's commands to the ``burnscope`` CLI."""
    app.command("info")(info)
    app.command("run")(run)
    bench_app.command("burn-triage")(bench_burn_triage)
