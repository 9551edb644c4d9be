"""The ``burnscope`` command line (console script ``burnscope = burnscope.applications.cli:main``).

Each area of the project registers its own commands from one module of this package, so the CLI
grows without one file owning everything; options and error exits shared by all of them are in
:mod:`.options`::

    cmd_core      info, run, bench burn-triage
    cmd_serve     serve (burn-triage as a service)
    cmd_dicom     inspect, wrap-photo
    cmd_engines   export-onnx, quantize, build-engine, bench engines
    cmd_clinical  decide, train-head, evaluate, calibrate
    cmd_reports   outbox status|retry|purge-delivered
    cmd_web       web (review app and REST API), web users add|remove|list
    cmd_model     finetune, export-bundle, export-triton
    cmd_reliability  bench stress, bench soak

A new command group is a module with ``register(app, bench_app)`` that adds its functions with
``app.command(NAME)(function)`` (or a sub-``Typer`` with ``app.add_typer``), listed in
:data:`COMMAND_MODULES`. Benchmarks themselves live in :mod:`burnscope.benchmarks`; the
``bench`` commands only parse options and print what those return.
"""

from __future__ import annotations

import logging
import sys

import typer

from . import cmd_clinical, cmd_core, cmd_dicom, cmd_engines, cmd_model, cmd_reliability, cmd_reports, cmd_serve, cmd_web

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

#: Command groups, in the order ``burnscope --help`` lists their commands.
COMMAND_MODULES = (cmd_core, cmd_serve, cmd_dicom, cmd_engines, cmd_clinical, cmd_reports, cmd_web, cmd_model,
                   cmd_reliability)

for _module in COMMAND_MODULES:
    _module.register(app, bench_app)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``burnscope`` console script."""
    try:
        app(args=argv, standalone_mode=True)
    except SystemExit as exc:  # typer exits; keep the code for callers and tests
        return int(exc.code or 0)
    return 0
