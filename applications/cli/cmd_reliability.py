"""CLI commands that try to lose an image: ``bench stress`` (many runs under CPU load, each
scheduler) and ``bench soak`` (thousands of images through a watched folder, memory and file
descriptors sampled)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .options import CONFIG_OPT, MODEL_OPT, console, demo_banner, fail

MODEL_CONFIG_NAME_OPT = typer.Option(
    None, "--model-config", help="Model architecture (e.g. biomedclip-tiny); default: from the config.")


def bench_stress(
    input_path: Path = typer.Option(..., "-i", "--input", help="DICOM folder (recursive) or file."),
    runs: int = typer.Option(200, "--runs", min=1, help="Runs per scheduler."),
    schedulers: str = typer.Option("event_based,greedy", "--schedulers", help="Comma-separated: event_based, greedy."),
    load: int = typer.Option(2, "--load", min=0, help="CPU burners beside the runs (stress-ng --cpu N when installed)."),
    deliver: bool = typer.Option(True, "--deliver/--no-deliver", help="Deliver every report to a local FHIR endpoint."),
    worker_threads: Optional[int] = typer.Option(None, "--worker-threads", min=1, help="event_based worker threads."),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Also write the figures as JSON."),
    config: Optional[Path] = CONFIG_OPT,
    model_config: Optional[str] = MODEL_CONFIG_NAME_OPT,
    model: Optional[str] = MODEL_OPT,
) -> None:
    """Run burn-triage many times under CPU load with each scheduler; count lost images (must be 0)."""
    from burnscope.applications.burn_triage.runner import write_json
    from burnscope.benchmarks.stress import run_stress

    from .cmd_core import _load_components, _prepare

    settings = _prepare("burn-triage", input_path, config, {"inference": {"model_config": model_config}})
    components = _load_components(settings, model)
    names = [s.strip() for s in schedulers.split(",") if s.strip()]
    done = {"n": 0, "bad": 0}

    def on_run(kind: str, index: int, problems: list[str]) -> None:
        done["n"] += 1
        done["bad"] += bool(problems)
        if problems:
            console.print(f"[red]{kind} run {index}: {'; '.join(problems)}[/red]", highlight=False)
        elif done["n"] % 20 == 0:
            console.print(f"{done['n']} runs, {done['bad']} failed", highlight=False)

    try:
        result = run_stress(settings, input_path, components, runs=runs, schedulers=names, load=load,
                            deliver=deliver, worker_threads=worker_threads, on_run=on_run)
    except ValueError as exc:
        fail(str(exc))
    if result["model"].get("demo"):
        demo_banner(console)
    table = Table(title=f"burn-triage stress · {runs} runs per scheduler · load {result['cpu_load']['by']}")
    for col in ("scheduler", "runs", "failed", "images lost", "images/run", "median s", "p95 s", "max s"):
        table.add_column(col, justify="left" if col == "scheduler" else "right")
    for kind, r in result["schedulers"].items():
        w = r["run_wall_s"]
        table.add_row(kind, str(r["runs"]), str(r["failed_runs"]), str(r["images_lost"]), str(r["images_per_run"]),
                      f"{w['median']:.2f}", f"{w['p95']:.2f}", f"{w['max']:.2f}")
    console.print(table)
    if json_file is not None:
        write_json(result, json_file)
        console.print(f"wrote {json_file}", highlight=False)
    if any(r["failed_runs"] for r in result["schedulers"].values()):
        raise typer.Exit(3)


def bench_soak(
    images: int = typer.Option(10_000, "--images", min=1, help="Images fed through the watched folder."),
    source: Optional[Path] = typer.Option(None, "-i", "--input", help="DICOM files to copy (default: sample_data of a checkout)."),
    workdir: Optional[Path] = typer.Option(None, "--workdir", help="Where the watched and output folders go (default: a temporary folder, removed)."),
    sample_s: float = typer.Option(5.0, "--sample-s", min=0.2, help="Seconds between RSS/FD samples."),
    backlog: int = typer.Option(200, "--backlog", min=1, help="Files waiting in the watched folder at most."),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Also write the samples and figures as JSON."),
    config: Optional[Path] = CONFIG_OPT,
    max_growth_pct: float = typer.Option(10.0, "--max-growth-pct", help="Allowed RSS/FD growth, first vs last thousand images."),
) -> None:
    """Feed thousands of images through `run --watch`, sample its RSS and open files; flat after warm-up?"""
    from burnscope.applications.burn_triage.runner import write_json
    from burnscope.benchmarks.soak import run_soak

    try:
        result = run_soak(images=images, source=source, workdir=workdir, sample_s=sample_s, backlog=backlog,
                          config=config, on_sample=lambda s: console.print(
                              f"{s['done']:>6} images · RSS {s['rss_mb']:.0f} MB · {s['fds']} fds", highlight=False))
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        fail(str(exc))
    table = Table(title=f"burn-triage soak · {result['images']} images through --watch")
    for col in ("measure", "first window", "last window", "growth %", "limit %"):
        table.add_column(col, justify="left" if col == "measure" else "right")
    for key in ("rss_mb", "fds"):
        g = result["growth"][key]
        table.add_row(key, f"{g['first']:.1f}", f"{g['last']:.1f}", f"{g['pct']:+.1f}", f"{max_growth_pct:.0f}")
    console.print(table)
    console.print(f"{result['reported']} reported, lost {result['lost']}, exit {result['exit_code']}, "
                  f"{result['wall_s']:.0f} s ({result['images_per_s']:.2f} images/s)", highlight=False)
    if json_file is not None:
        write_json(result, json_file)
        console.print(f"wrote {json_file}", highlight=False)
    flat = all(result["growth"][k]["pct"] <= max_growth_pct for k in ("rss_mb", "fds"))
    if result["lost"] or result["exit_code"] not in (0, 130) or not flat:
        raise typer.Exit(3)


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add this module's commands to the ``burnscope`` CLI."""
    bench_app.command("stress")(bench_stress)
    bench_app.command("soak")(bench_soak)
