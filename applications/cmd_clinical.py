"""CLI commands of one area (see burnscope.applications.cli)."""

from __future__ import annotations

import typer


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add this module's commands to the burnscope CLI."""
