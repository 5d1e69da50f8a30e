"""`realsys fool`: not landed yet. Replace this module when the fool issue lands."""

from __future__ import annotations

import typer

from realsys_cli.cli.pending import pending_command


def register(app: typer.Typer) -> None:
    app.command("fool", help="Not available yet: the fool issue has not landed.",
                context_settings=pending_command.context)(pending_command("fool", "fool"))
