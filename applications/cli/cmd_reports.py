"""CLI commands of the reports area: ``burnscope outbox status|retry|purge-delivered``.

The outbox (SQLite) holds every network delivery of reports (PACS C-STORE, STOW-RS, FHIR) until
it is acknowledged. These commands inspect it and act on it without the application running;
destination settings are read from the outbox itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .options import fail

DEFAULT_OUTBOX = Path("out/outbox.sqlite")

_DB_OPTION = typer.Option(
    DEFAULT_OUTBOX, "--db", "-d", help="Outbox database (the app's <output>/outbox.sqlite)."
)


def _open(db: Path):
    from burnscope.operators.sinks.outbox import Outbox

    if not db.exists():
        fail(f"no outbox at {db}")
    return Outbox(db)


def status(
    db: Path = _DB_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    show_failed: bool = typer.Option(True, "--failed/--no-failed", help="List failed deliveries."),
) -> None:
    """Deliveries per destination and status; failed ones with their reason and status code."""
    with _open(db) as outbox:
        counts = outbox.counts()
        failed = outbox.rows("failed") if show_failed else []
        destinations = {name: kind for name, (kind, _) in outbox.destinations().items()}
    if as_json:
        typer.echo(json.dumps({"destinations": destinations, "counts": counts, "failed": failed}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"outbox {db}")
    for column in ("destination", "kind", "pending", "delivering", "delivered", "failed"):
        table.add_column(column, justify="left" if column in ("destination", "kind") else "right")
    for name in sorted(set(destinations) | set(counts)):
        c = counts.get(name, {})
        table.add_row(
            name,
            destinations.get(name, "?"),
            *(str(c.get(s, 0)) for s in ("pending", "delivering", "delivered", "failed")),
        )
    console = Console()
    console.print(table)
    for row in failed:
        status_code = f"0x{row['last_status']:04X}" if isinstance(row["last_status"], int) else "-"
        console.print(
            f"failed: {row['key']} -> {row['destination']} (status {status_code}): {row['last_error']}"
        )


def retry(
    db: Path = _DB_OPTION,
    destination: str = typer.Option(None, "--destination", help="Only this destination."),
    deliver: bool = typer.Option(True, "--deliver/--no-deliver", help="Send now (else the next run sends)."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds to keep trying when delivering."),
) -> None:
    """Make failed and waiting deliveries due now, and (by default) deliver them."""
    from burnscope.operators.sinks.network import AuditLog, DeliveryService

    with _open(db) as outbox:
        if destination and destination not in outbox.destinations():
            fail(f"no destination {destination!r} in {db}; known: {', '.join(sorted(outbox.destinations()))}")
        n = outbox.retry(destination=destination)
        typer.echo(f"{n} delivery(ies) due now")
        if not deliver or n == 0:
            return
        service = DeliveryService(outbox, audit=AuditLog(db.with_name("audit.jsonl")))
        try:
            done = service.drain(timeout_s=timeout, destination=destination)
        finally:
            service.close()
        counts = outbox.counts()
    typer.echo(
        f"delivered {service.delivered}, failed {service.failed}, still pending "
        f"{sum(c['pending'] + c['delivering'] for c in counts.values())}"
    )
    if not done:
        raise typer.Exit(1)


def purge_delivered(
    db: Path = _DB_OPTION,
    older_than_hours: float = typer.Option(
        0.0, "--older-than-hours", help="Keep deliveries acknowledged more recently."
    ),
) -> None:
    """Delete delivered entries (and their stored payloads) from the outbox."""
    with _open(db) as outbox:
        n = outbox.purge_delivered(older_than_s=older_than_hours * 3600.0)
    typer.echo(f"purged {n} delivered entr{'y' if n == 1 else 'ies'}")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add this module's commands to the burnscope CLI."""
    outbox_app = typer.Typer(
        help="Inspect and operate the durable delivery outbox (PACS, DICOMweb, FHIR).", no_args_is_help=True
    )
    outbox_app.command("status")(status)
    outbox_app.command("retry")(retry)
    outbox_app.command("purge-delivered")(purge_delivered)
    app.add_typer(outbox_app, name="outbox")
