"""The ``burnscope`` command line.

Each area of the project registers its own commands from a ``cmd_*`` module, so the CLI grows
without one file owning everything::

    cmd_core      info, run, bench burn-triage
    cmd_dicom     inspect, wrap-photo
    cmd_engines   export-onnx, quantize, build-engine, bench engines
    cmd_clinical  decide, train-head, evaluate
    cmd_reports   outbox status|retry|purge-delivered
    cmd_model     finetune, export-bundle, export-triton
"""

from __future__ import annotations

import importlib
import logging
import sys

import typer

app = typer.Typer(
    name="burnscope",
    help="Burn imaging on NVIDIA Holoscan: DICOM in, BiomedCLIP, burn depth, decision support, reports out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _configure(
    verbose: int = typer.Option(0, "-v", "--verbose", count=True, help="More log output (-v: info, -vv: debug)."),
) -> None:
    """Logging for every command: warnings by default. Log lines name images by SOP Instance
    UID or file name, never by patient data."""
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    handler = _CurrentStderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)


class _CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record, so a caller that swaps
    stderr (test runners, embedding applications) never leaves logging on a closed stream."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


#: `burnscope bench <target>`; shared by cmd_core (burn-triage) and cmd_engines (engines).
bench_app = typer.Typer(help="Headless benchmarks: latency percentiles, images/s, memory.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

_COMMAND_MODULES = ("cmd_core", "cmd_dicom", "cmd_engines", "cmd_clinical", "cmd_reports", "cmd_model")

for _name in _COMMAND_MODULES:
    importlib.import_module(f"burnscope.applications.{_name}").register(app, bench_app)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``burnscope`` console script."""
    try:
        app(args=argv, standalone_mode=True)
    except SystemExit as exc:  # typer exits; keep the code for callers and tests
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
