"""Holoscan's distributed options, shared by ``burnscope run`` and ``burnscope serve``.

typer parses them; only these five reach Holoscan (as an explicit argv), never the rest of the
command line (Holoscan would take ``--config``, and exit on ``--help``/``--version``).
"""

from __future__ import annotations

from typing import Optional

import typer

PANEL = "Distributed (Holoscan fragments over UCX; docs/deployment.md)"

DRIVER_OPT = typer.Option(False, "--driver", help="Run the app driver here (it schedules the fragments).",
                          rich_help_panel=PANEL)
WORKER_OPT = typer.Option(False, "--worker", help="Run fragments here (--fragments; all when not given).",
                          rich_help_panel=PANEL)
ADDRESS_OPT = typer.Option(None, "--address", metavar="HOST:PORT",
                           help="The driver's address (where it listens; where workers connect).", rich_help_panel=PANEL)
WORKER_ADDRESS_OPT = typer.Option(None, "--worker-address", metavar="HOST:PORT",
                                  help="This worker's address, as the others reach it.", rich_help_panel=PANEL)
FRAGMENTS_OPT = typer.Option(None, "--fragments", metavar="NAMES",
                             help="Fragments run here: ingest, inference, reporting (comma-separated) or all.",
                             rich_help_panel=PANEL)


def distributed_options(driver: bool, worker: bool, address: Optional[str], worker_address: Optional[str],
                        fragments: Optional[str]):
    """A validated :class:`~burnscope.applications.burn_triage.fragments.DistributedOptions`, or
    None when no distributed option was given (the single-fragment graph)."""
    from burnscope.applications.burn_triage.fragments import DistributedOptions

    from .options import fail

    options = DistributedOptions(driver, worker, address, worker_address, fragments)
    if not options.enabled:
        return None
    try:
        options.validate()
    except ValueError as exc:
        fail(str(exc))
    return options
