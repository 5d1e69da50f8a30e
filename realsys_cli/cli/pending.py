"""Commands whose issue has not landed yet: they say so and exit 1. None pretends."""

from __future__ import annotations

from typing import Any

from realsys_cli.cli.options import handle_errors

PENDING: set[str] = set()  # the commands registered as not landed (the CLI tests read it)


def pending_command(name: str, issue: str) -> Any:
    PENDING.add(name)

    @handle_errors
    def command() -> None:
        from realsys_cli.errors import NotImplementedYetError

        raise NotImplementedYetError(
            f"`realsys {name}` is not implemented yet: the {issue} issue has not landed in "
            "this version"
        )

    command.__name__ = name.replace("-", "_")
    return command


# Accept and ignore any options, so the answer is always the same honest one-liner.
pending_command.context = {"allow_extra_args": True, "ignore_unknown_options": True}
