"""Commands whose issue has not landed yet: they say so and exit 1. None pretends."""

from __future__ import annotations

from typing import Any

import typer

from realsys_cli.cli.options import handle_errors

PENDING = {
    "fool": "fooling images (issue: fool)",
    "train-gan": "the DCGAN (issue: train-gan)",
    "predict-frames": "next-frame prediction (issue: predict-frames)",
    "sample": "sampling a trained GAN (issue: train-gan)",
}


def register(app: typer.Typer) -> None:
    for name, what in PENDING.items():
        app.command(
            name,
            help=f"Not available yet: {what} has not landed.",
            context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        )(_pending(name, what))


def _pending(name: str, what: str) -> Any:
    @handle_errors
    def command(ctx: typer.Context) -> None:
        from realsys_cli.errors import NotImplementedYetError

        raise NotImplementedYetError(f"`realsys {name}` is not implemented yet: {what} has not "
                                     "landed in this version")

    command.__name__ = name.replace("-", "_")
    return command
