"""The distributed path of ``burnscope run/serve burn-triage`` (any of ``--driver``,
``--worker``, ``--fragments``, ``--address``, ``--worker-address``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from .options import console, demo_banner, err_console, fail


def run_distributed_cli(settings: dict[str, Any], input_path: Optional[Path], output_dir: Optional[Path],
                        model: Optional[str], options: Any, quiet: bool = False) -> None:
    """Run this process's fragments; print and write the summary; exit with its code."""
    from burnscope.applications.burn_triage.distributed import run_distributed
    from burnscope.applications.burn_triage.link_ops import INGEST, REPORTING

    local = options.local_fragments()
    if INGEST in local and input_path is None:
        fail("the ingest fragment needs -i/--input")
    if REPORTING in local and output_dir is None:
        fail("the reporting fragment needs -o/--output")
    summary_path = output_dir / "summary.json" if (output_dir is not None and REPORTING in local) else None
    where = ", ".join(local)
    console.print(f"burn-triage fragments here: {where}"
                  + (f" · driver {options.address or 'default address'}" if options.driver else "")
                  + (f" · worker of {options.address}" if options.worker and not options.driver else ""),
                  highlight=False)
    summary = run_distributed(settings, input_path, output_dir, options, model=model, summary_path=summary_path,
                              handle_signals=True)
    _print(summary)
    if "accounting" in summary:
        from .cmd_core import _print_problems

        _print_problems(summary)
    code, reason = summary["exit"]["code"], summary["exit"]["reason"]
    if code:
        err_console.print(f"[bold]exit {code}[/bold]: {reason}", highlight=False)
        if (summary.get("run") or {}).get("hung"):
            import os
            import sys

            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        raise typer.Exit(code)


def _print(summary: dict[str, Any]) -> None:
    model = summary.get("model")
    if model and model.get("demo"):
        demo_banner(console)
    if "reports" in summary:
        acc = summary.get("accounting") or {}
        console.print(
            f"files {summary['files']} · images {summary['images']} · reports {summary['reports']} · "
            f"errors {summary['errors']} · findings {json.dumps(summary['findings'])}"
            + (f" · lost {acc['lost']}" if acc.get("lost") else "")
            + (f" · pending {acc['pending']}" if acc.get("pending") else ""),
            highlight=False,
        )
    links = summary["distributed"]["links"]
    for name, row in links.items():
        per = f" · {row['payload_bytes_per_image']:.0f} B/image" if "payload_bytes_per_image" in row else ""
        console.print(f"link {name}: {row['messages']} message(s), {row['payload_bytes']} B payload{per}",
                      highlight=False)
