"""`--print-config`: a resolved config as TOML (or one JSON object) on stdout.

The TOML is what `--config FILE` reads back: `realsys train-gan --print-config > my.toml`, edit,
then `realsys train-gan --config my.toml`. TOML has no null, so a field that is None is written
as a comment and left out (reading the file back leaves it at its default, None).
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from collections.abc import Mapping
from typing import Any

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
            "\r": "\\r"}


def _string(text: str) -> str:
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:  # the other control characters
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):  # before int: bool is an int
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        text = repr(value)  # the shortest text that reads back as the same float
        return text if any(c in text for c in ".e") else text + ".0"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        if any(v is None for v in value):
            raise ValueError("TOML arrays cannot hold None")
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as a TOML value")


def to_toml(data: Mapping[str, Any], *, header: str = "") -> str:
    """`data` as a TOML document: scalars and arrays first, then one [table] per nested dict.

    None values become comments (`# key = none`); `header` lines become leading comments.
    """
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    tables: list[tuple[str, Mapping[str, Any]]] = []

    def body(items: Mapping[str, Any], prefix: str) -> None:
        for key, value in items.items():
            if isinstance(value, Mapping):
                tables.append((f"{prefix}{_key(key)}", value))
            elif value is None:
                lines.append(f"# {_key(key)} = none")
            else:
                lines.append(f"{_key(key)} = {_value(value)}")

    body(data, "")
    while tables:
        name, items = tables.pop(0)
        lines += ["", f"[{name}]"]
        body(items, f"{name}.")
    return "\n".join(lines) + "\n"


def print_config(cfg: Any, *, command: str, json_mode: bool) -> None:
    """The resolved config on stdout: TOML for `--config`, or one JSON object with --json."""
    from realsys_cli import console

    data = dataclasses.asdict(cfg)
    if json_mode:
        console.print_result(data, json_mode=True)
        return
    header = (f"realsys {command}: the resolved config (defaults < --config < options < --set).\n"
              f"Run it with: realsys {command} --config THIS_FILE")
    sys.stdout.write(to_toml(data, header=header))
    sys.stdout.flush()
