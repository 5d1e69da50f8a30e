"""`realsys train-gan, sample`: not landed yet. Replace this module when the train-gan issue lands."""

from __future__ import annotations

import typer

from realsys_cli.cli.pending import pending_command


def register(app: typer.Typer) -> None:
    app.command("train-gan", help="Not available yet: the train-gan issue has not landed.",
                context_settings=pending_command.context)(pending_command("train-gan", "train-gan"))
    app.command("sample", help="Not available yet: the train-gan issue has not landed.",
                context_settings=pending_command.context)(pending_command("sample", "train-gan"))
