"""``burnscope serve``: burn-triage as a long-running service (C-STORE SCP and/or watched folder,
emergency lane, dynamic batching, reporting pool, metrics and health, graceful shutdown)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .distributed_opts import ADDRESS_OPT, DRIVER_OPT, FRAGMENTS_OPT, WORKER_ADDRESS_OPT, WORKER_OPT, distributed_options
from .options import (
    BACKEND_OPT, CONFIG_OPT, DEVICE_OPT, MODEL_OPT, PRECISION_OPT, SCHEDULER_OPT, console, demo_banner,
    err_console, fail,
)

APP_ARG = typer.Argument(..., metavar="APP", help="Application to serve: burn-triage.")


def serve(
    app_name: str = APP_ARG,
    output_dir: Optional[Path] = typer.Option(None, "-o", "--output", help="Folder for the reports, errors.jsonl and summary.json (not needed by a --worker without the reporting fragment)."),
    listen: Optional[int] = typer.Option(None, "--listen", help="Receive images as a DICOM C-STORE SCP on this port."),
    watch: Optional[Path] = typer.Option(None, "--watch", help="Watch this folder for DICOM files (with --listen: both)."),
    config: Optional[Path] = CONFIG_OPT,
    metrics_port: Optional[int] = typer.Option(
        None, "--metrics-port", help="Serve /metrics, /healthz and /readyz here (127.0.0.1 unless metrics.bind_address)."),
    model: Optional[str] = MODEL_OPT,
    backend: Optional[str] = BACKEND_OPT,
    precision: Optional[str] = PRECISION_OPT,
    device: Optional[str] = DEVICE_OPT,
    scheduler: Optional[str] = SCHEDULER_OPT,
    ae_title: Optional[str] = typer.Option(None, "--ae-title", help="AE title of the C-STORE SCP (default BURNSCOPE)."),
    stop_after_idle: Optional[float] = typer.Option(None, "--stop-after-idle", help="Stop after this many seconds without a new image."),
    max_files: Optional[int] = typer.Option(None, "--max-files", help="Stop accepting after this many files."),
    driver: bool = DRIVER_OPT,
    worker: bool = WORKER_OPT,
    address: Optional[str] = ADDRESS_OPT,
    worker_address: Optional[str] = WORKER_ADDRESS_OPT,
    fragments: Optional[str] = FRAGMENTS_OPT,
) -> None:
    """Run an application as a service until SIGTERM/SIGINT: images from a C-STORE port and/or a
    watched folder, STAT first, reports in the output folder (and through the outbox).

    SIGTERM stops accepting (new associations are refused, the watcher stops), finishes the
    images in flight, drains the outbox for delivery.drain_timeout_s and exits 0 (3 when images
    were left pending); a second SIGTERM exits at once, listing what was pending in summary.json.

    With --driver/--worker/--fragments the service runs as fragments ingest, inference and
    reporting across hosts (docs/deployment.md): one source (--listen or --watch), and without
    the emergency lane's own tower, the dynamic batcher, the reporting pool or metrics, which
    are parts of the single-host service graph.
    """
    dist = distributed_options(driver, worker, address, worker_address, fragments)
    if dist is not None:
        return _serve_distributed(app_name, output_dir, listen, watch, config, metrics_port, model, backend,
                                  precision, device, scheduler, ae_title, stop_after_idle, max_files, dist)
    if output_dir is None:
        fail("missing option -o/--output: the folder for the reports")
    from burnscope.applications.burn_triage.service import path_problems, serve_triage
    from burnscope.operators.monitoring.core import HealthServer, ServiceMetrics, bind_error
    from burnscope.operators.priority.core import PriorityRuleError, PriorityRules

    from .cmd_core import _check_state_files, _load_components, _overrides, _prepare

    overrides = _overrides(backend, precision, device, None, scheduler)
    source = overrides["source"]
    source.update(stop_after_idle=stop_after_idle, max_files=max_files)
    if listen is not None:
        source["scp"] = {"port": listen, "ae_title": ae_title}
    overrides["metrics"] = {"port": metrics_port}
    # the folder check of `run` does not apply: the sources are a port and a folder being filled
    source["kind"] = "scp" if listen is not None else "watch"
    settings = _prepare(app_name, None, config, overrides, model=model, output_dir=output_dir)
    if watch is None and settings["source"]["watch"]["path"]:
        watch = Path(settings["source"]["watch"]["path"])
    if listen is None and watch is None:
        if settings["source"]["kind"] == "scp" and config is not None:
            listen = int(settings["source"]["scp"]["port"])  # a site config that names the SCP
        else:
            fail("serve needs a source: --listen PORT, --watch DIR, or both")
    problems = path_problems(settings, output_dir, watch, listen is not None)
    try:
        PriorityRules.from_settings(settings["priority"])
    except PriorityRuleError as exc:
        problems.append(str(exc))
    if problems:
        fail("\n".join(problems))
    _check_state_files(settings, output_dir)  # the journal and the outbox, before the model loads
    if watch is not None:
        watch.mkdir(parents=True, exist_ok=True)
    metrics, server = ServiceMetrics(), None
    port = settings["metrics"]["port"]
    if port is not None:
        host, token = settings["metrics"]["bind_address"], None
        if settings["metrics"].get("token_file") or settings["metrics"].get("token_env"):
            from burnscope.common.credentials import SecretError, read_secret

            try:
                token = read_secret(settings["metrics"].get("token_file"), settings["metrics"].get("token_env"))
            except SecretError as exc:
                fail(f"metrics.token_file/token_env: {exc}")
        try:  # bound before the model loads: a port in use is one line at start
            server = HealthServer(metrics, port, host, token=token).start()
        except OSError as exc:
            fail(bind_error(exc, host, port))
    try:
        components = _load_components(settings, model, service=True)
        if components.model_info.demo:
            demo_banner(err_console)
        where = []
        if listen is not None:
            scp = settings["source"]["scp"]
            where.append(f"C-STORE {scp['bind_address']}:{listen} as {scp['ae_title']}")
        if watch is not None:
            where.append(f"folder {watch}")
        if server is not None:
            where.append(f"metrics http://{settings['metrics']['bind_address']}:{server.port}/metrics")
        # printed once the source runs (the SCP listens), not before the graph starts
        summary, code = serve_triage(
            settings, output_dir, components, listen=listen is not None, watch=watch, metrics=metrics, server=server,
            on_started=lambda _app: console.print(f"serving burn-triage: {'; '.join(where)}; SIGTERM or Ctrl-C stops",
                                                  highlight=False))
    finally:
        if server is not None:
            server.stop()
    acc = summary["accounting"]
    console.print(
        f"stopped ({summary['outcome']}): accepted {acc['accepted']}, reported {acc['reported']}, errors "
        f"{acc['errors']}, skipped {acc['skipped']}, pending {acc['pending']}; summary in {output_dir / 'summary.json'}",
        highlight=False,
    )
    if code:
        raise typer.Exit(code)


def _serve_distributed(app_name, output_dir, listen, watch, config, metrics_port, model, backend, precision, device,
                       scheduler, ae_title, stop_after_idle, max_files, dist) -> None:
    """``serve`` as fragments: the three-fragment graph fed by the SCP or the watched folder."""
    from .cmd_core import _check_state_files, _overrides, _prepare
    from .distributed_run import run_distributed_cli

    local = dist.local_fragments()
    if metrics_port is not None:
        fail("--metrics-port is not available with --driver/--worker/--fragments (docs/deployment.md)")
    if listen is not None and watch is not None:
        fail("with --driver/--worker/--fragments serve takes one source: --listen or --watch")
    overrides = _overrides(backend, precision, device, None, scheduler)
    source = overrides["source"]
    source.update(stop_after_idle=stop_after_idle, max_files=max_files)
    if listen is not None:
        source.update(kind="scp", scp={"port": listen, "ae_title": ae_title})
        input_path = output_dir
    elif watch is not None:
        source["kind"] = "watch"
        input_path = watch
    elif "ingest" in local:
        fail("serve needs a source: --listen PORT or --watch DIR")
    else:
        input_path = watch
    if output_dir is None and "reporting" in local:
        fail("missing option -o/--output: the folder for the reports")
    settings = _prepare(app_name, input_path, config, overrides, model=model, output_dir=output_dir,
                        check_input="ingest" in local and watch is not None)
    if output_dir is not None:
        _check_state_files(settings, output_dir)
    if watch is not None and "ingest" in local:
        watch.mkdir(parents=True, exist_ok=True)
    run_distributed_cli(settings, input_path, output_dir, model, dist)


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add this module's commands to the ``burnscope`` CLI."""
    app.command("serve")(serve)
