"""`realsys predict-frames`: not landed yet. Replace this module when the predict-frames issue lands."""

from __future__ import annotations

import typer

from realsys_cli.cli.pending import pending_command


def register(app: typer.Typer) -> None:
    app.command("predict-frames", help="Not available yet: the predict-frames issue has not landed.",
                context_settings=pending_command.context)(pending_command("predict-frames", "predict-frames"))
