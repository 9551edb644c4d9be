"""What every ``burnscope`` command shares: its consoles, its options, and one way to fail.

Option names mean the same thing in every command:

* ``-c/--config FILE``       the application's YAML (merged over ``burn_triage/config.yaml``);
* ``--model-config NAME``    the model architecture (``engines/configs/<NAME>.json``, or a path);
* ``-m/--model PATH``        BiomedCLIP weights: a file or a model folder.

Errors end a command through :func:`fail`: one line on stderr, a non-zero exit, no traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn, Optional

import typer
from rich.console import Console

#: Tables and results (stdout) and messages about the run (stderr).
console = Console()
err_console = Console(stderr=True)

MODEL_OPT = typer.Option(
    None, "-m", "--model",
    help="BiomedCLIP weights (file or folder); else HOLOSCAN_MODEL_PATH, the HF cache, or the demo model.",
)
MODEL_CONFIG_OPT = typer.Option(
    "biomedclip", "--model-config",
    help="Model architecture: biomedclip | biomedclip-tiny (engines/configs/<name>.json) or a path.",
)
#: The spelling ``--config NAME`` of the engine commands before ``--model-config``; hidden,
#: warns, and goes away in the next release (``-c/--config`` is the app YAML everywhere else).
LEGACY_MODEL_CONFIG_OPT = typer.Option(None, "--config", hidden=True)
CONFIG_OPT = typer.Option(None, "-c", "--config", help="YAML overriding applications/burn_triage/config.yaml.")

# The application's engine choice (``burnscope run`` / ``bench burn-triage``): unset = from the config.
BACKEND_OPT = typer.Option(None, "--backend", help="auto | onnxruntime | torch | tensorrt (auto: torch on a GPU, onnxruntime on CPU).")
PRECISION_OPT = typer.Option(None, "--precision", help="auto | fp32 | fp16 | bf16 | int8 | int8-dynamic | fp8 (auto: fp16 on a GPU, fp32 on CPU).")
DEVICE_OPT = typer.Option(None, "--device", help="auto | cpu | gpu.")
SCHEDULER_OPT = typer.Option(None, "--scheduler", help="greedy | event_based.")

# One engine, built directly (``build-engine`` / ``bench engines``).
ENGINE_DEVICE_OPT = typer.Option("auto", "--device", help="auto | cpu | cuda")


def fail(message: str, code: int = 2) -> NoReturn:
    """One clear error line on stderr and exit ``code`` (2: bad options or input, 1: nothing done)."""
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def ensure_output_folder(path: Path, option: str = "-o/--output") -> Path:
    """Create ``path`` if needed and prove it writable, before any heavy work; :func:`fail` with one
    line naming the problem (a file in the way, a read-only file system, no permission)."""
    import errno
    import tempfile

    from burnscope.common.private_files import private_dirs

    if path.exists() and not path.is_dir():
        fail(f"{option} {path} is not a folder (a file of that name exists)")
    try:
        private_dirs(path)  # reports hold patient data: a new folder is the owner's only (0700)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".burnscope-write-check-"):
            pass
    except OSError as exc:
        reason = {errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
                  errno.ENOSPC: "no space left on the device"}.get(exc.errno, exc.strerror or type(exc).__name__)
        fail(f"{option} {path} is not writable: {reason}")
    return path


def model_config(name: str, legacy: Optional[str]) -> str:
    """The architecture config to use: ``--model-config``, or the deprecated ``--config`` spelling."""
    if legacy is None:
        return name
    err_console.print(
        "[yellow]warning:[/yellow] --config NAME is deprecated for the model architecture; use --model-config NAME "
        "(-c/--config names the application's YAML)", highlight=False, soft_wrap=True,
    )
    return legacy


def demo_banner(console_: Console, suffix: str = "") -> None:
    """The demo-model banner, prominently (yellow background), optionally with a note after it."""
    from burnscope.common.messages import DEMO_BANNER

    console_.print(f"[bold black on yellow] {DEMO_BANNER} [/bold black on yellow]{suffix}")


def batch_sizes(text: str, option: str = "--batch") -> list[int]:
    """Comma-separated positive batch sizes, sorted and de-duplicated; :func:`fail` otherwise."""
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        fail(f"{option} must be comma-separated integers, got {text!r}")
    if not values or min(values) < 1:
        fail(f"{option} needs positive integers, got {text!r}")
    return values
