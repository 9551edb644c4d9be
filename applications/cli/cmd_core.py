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


def _load_components(settings: dict, model: Optional[str], service: bool = False):
    """The model and engines; ``service``: sized for the dynamic batcher, plus the emergency lane's."""
    from burnscope.applications.burn_triage.app import build_components

    extra = {}
    if service:
        from burnscope.operators.batching.core import engine_batch_sizes

        extra = {"batch_sizes": engine_batch_sizes(settings["batching"]["max_batch"]),
                 "stat_engine": bool(settings["priority"]["stat_lane"])}
    with console.status("Loading BiomedCLIP and preparing the engine (first run exports/caches it)..."):
        try:
            return build_components(settings, model=model, **extra)
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
    acc = summary.get("accounting") or {}
    if acc:
        table.add_row("accepted = reported + errors + skipped",
                      f"{acc['accepted']} = {acc['reported']} + {acc['errors']} + {acc['skipped']}"
                      if acc["balanced"] and not (acc["lost"] or acc["pending"]) else
                      f"{acc['accepted']} ≠ {acc['reported']} + {acc['errors']} + {acc['skipped']}")
        for key in ("lost", "pending"):
            if acc.get(key):
                table.add_row(f"[bold red]{key}[/bold red]" if key == "lost" else key, str(acc[key]))
    console.print(table)
    console.print(
        f"model: {model['name']} · weights: {model['weights']} · backend: {model['backend']} "
        f"({model['precision']}, {model['device']}) · {summary['wall_s']:.1f} s", highlight=False
    )
    if summary.get("output_dir"):
        console.print(f"reports in {summary['output_dir']}", highlight=False)


def _print_problems(summary: dict) -> None:
    """What the exit status is about: lost, pending, unwritten or unqueued images, by SOP UID / file."""
    from .options import err_console

    acc = summary.get("accounting") or {}
    run = summary.get("run") or {}
    listings = (
        ("lost_items", "lost (accepted, neither reported nor recorded as an error)"),
        ("pending_items", "pending (in flight when the run was stopped; a watch/listen restart takes them up)"),
        ("write_failures", "not written (see errors.jsonl)"),
        ("not_queued_items", "not handed to the outbox"),
    )
    for key, what in listings:
        items = acc.get(key) or []
        if not items:
            continue
        err_console.print(f"{len(items)} image(s) {what}:", highlight=False)
        for item in items[:20]:
            extra = f" ({item['file']})" if item.get("file") and item["file"] != item.get("label") else ""
            err_console.print(f"  {item.get('label')}{extra}", highlight=False)
        if len(items) > 20:
            err_console.print(f"  ... and {len(items) - 20} more in summary.json", highlight=False)
    if run.get("files_not_started"):
        err_console.print(f"{run['files_not_started']} file(s) not started (the run was stopped)", highlight=False)
    if run.get("outcome") in ("stalled", "error", "ended_by_scheduler") and (acc.get("lost") or run.get("error")):
        err_console.print(f"the run ended: {run['outcome']}" + (f" ({run['error']})" if run.get("error") else ""),
                          highlight=False)


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
    if output_dir is not None:
        _check_state_files(settings, output_dir)
    if dist is not None:
        from .distributed_run import run_distributed_cli

        return run_distributed_cli(settings, input_path, output_dir, model, dist, quiet)
    components = _load_components(settings, model)
    announce = None
    if settings["source"]["kind"] != "folder":
        scp = settings["source"]["scp"]
        where = f"port {scp['port']} as {scp['ae_title']}" if settings["source"]["kind"] == "scp" else str(input_path)

        def announce() -> None:  # from the source's start(): the SCP accepts associations from now on
            console.print(f"listening on {where}; Ctrl-C or SIGTERM stops (after the images in flight)", highlight=False)
    progress = Progress(TextColumn("files"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console, disable=quiet or input_path.is_file())
    task = progress.add_task("files", total=None)

    def on_progress(done: int, total: int, _result) -> None:
        progress.update(task, completed=done, total=total)

    from burnscope.operators.dicom_loader.journal import JournalError

    try:
        with progress:
            summary = run_triage(settings, input_path, output_dir, components, on_progress=on_progress,
                                 handle_signals=True, on_ready=announce)
    except JournalError as exc:  # opened as the graph is built; checked before, but it can change
        fail(str(exc))
    try:
        write_json(summary, output_dir / "summary.json")
    except OSError as exc:
        from .options import err_console

        err_console.print(f"[bold red]error:[/bold red] summary.json not written: {exc}", highlight=False)
    _print_summary(summary)
    _print_problems(summary)
    code, reason = summary["exit"]["code"], summary["exit"]["reason"]
    if code == 1:
        fail(reason, code=1)
    if code:
        from .options import err_console

        err_console.print(f"[bold]exit {code}[/bold]: {reason}", highlight=False)
        _exit(code, hung=summary.get("run", {}).get("hung", False))


def _exit(code: int, hung: bool = False) -> None:
    """Exit with ``code``; when the graph did not stop, without waiting for its threads."""
    if hung:
        import os
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise typer.Exit(code)


def _check_state_files(settings: dict, output_dir: Path) -> None:
    """The outbox and the intake journal must be usable before the model loads: a database locked
    by another process or corrupt stops the command with one line (it is never reset)."""
    from burnscope.applications.burn_triage.app import open_journal
    from burnscope.operators.dicom_loader.journal import JournalError
    from burnscope.operators.sinks.outbox import Outbox, OutboxError

    delivery = settings.get("delivery") or {}
    if delivery.get("destinations"):
        path = Path(delivery.get("outbox") or output_dir / "outbox.sqlite")
        try:
            with Outbox(path, busy_timeout_s=5.0) as outbox:
                outbox.check_writable()
        except OutboxError as exc:
            fail(str(exc))
    try:
        journal = open_journal(settings, output_dir)
    except JournalError as exc:
        fail(str(exc))
    if journal is not None:
        journal.close()


def bench_burn_triage(
    input_path: Optional[Path] = typer.Option(None, "-i", "--input", help="DICOM folder (recursive) or file; with --rate, the images to send (default: the shipped sample photographs)."),
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
    rate: Optional[float] = typer.Option(None, "--rate", help="Open-loop load on the service (burnscope serve's graph): Poisson arrivals, images/s over C-STORE."),
    stat_fraction: float = typer.Option(0.1, "--stat-fraction", help="--rate: share of images sent STAT (DIMSE Priority HIGH)."),
    duration: float = typer.Option(60.0, "--duration", help="--rate: seconds of arrivals."),
) -> None:
    """Run burn-triage headless (reports rendered, not written): latency p50/p95/p99, images/s, peak RSS.
    With --rate: open-loop load on the service, STAT and routine latency, achieved images/s, queue depths."""
    from burnscope.applications.burn_triage.runner import write_json
    from burnscope.benchmarks.burn_triage import run_benchmark

    if rate is not None:
        return _bench_load(input_path, rate, stat_fraction, duration, json_file, model, backend, precision, device,
                           scheduler, config, formats)
    if input_path is None:
        fail("-i/--input is required (or --rate IMG_PER_S for the open-loop service load)")

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


def _bench_load(input_path, rate, stat_fraction, duration, json_file, model, backend, precision, device, scheduler,
                config, formats) -> None:
    """``bench burn-triage --rate``: :func:`burnscope.benchmarks.service_load.run_load`."""
    from burnscope.applications.burn_triage.runner import write_json
    from burnscope.benchmarks.service_load import run_load, table

    if rate <= 0 or not 0 <= stat_fraction <= 1 or duration <= 0:
        fail("--rate and --duration must be positive, --stat-fraction between 0 and 1")
    overrides = _overrides(backend, precision, device, None, scheduler)
    overrides["source"]["kind"] = "scp"
    if formats:
        overrides["report"] = {"formats": [f.strip() for f in formats.split(",") if f.strip()]}
    settings = _prepare("burn-triage", None, config, overrides, model=model)
    components = _load_components(settings, model, service=True)
    with console.status(f"open-loop load: {rate} img/s for {duration:.0f} s ({stat_fraction:.0%} STAT)..."):
        result = run_load(settings, components, rate=rate, stat_fraction=stat_fraction, duration_s=duration,
                          images=input_path)
    if result["model"].get("demo"):
        demo_banner(console)
    typer.echo(table([("load", result)]))
    console.print("latency: C-STORE done → report written, per image; queue depths sampled every 100 ms", highlight=False)
    if json_file is not None:
        write_json(result, json_file)
        console.print(f"wrote {json_file}", highlight=False)


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add this module's commands to the ``burnscope`` CLI."""
    app.command("info")(info)
    app.command("run")(run)
    bench_app.command("burn-triage")(bench_burn_triage)
