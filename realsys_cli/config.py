"""Typed run configs: defaults < config file (TOML) < command-line options < --set key=value.

Every command has one dataclass of fields with units in their names (`num_epochs`,
`learning_rate`, ...). A recipe is a TOML file of some of those fields; its leading comment says
the command and what it measured. The recipes ship inside the package (realsys_cli/configs/, which
the repository's `configs/` links to), and `--config NAME` finds one by name (`--config
lenet_digits`) when no file of that name exists. `--set key=value` overrides are checked against
the dataclass: an unknown key or a value of the wrong type is a ConfigError naming the field.
The resolved config is written to `<workdir>/config.json` so a run can be read back and resumed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from realsys_cli.errors import CheckpointError, ConfigError

C = TypeVar("C")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


# Counts are int32 in jitted code (steps, sizes) and seeds uint32 (numpy, jax): larger ones
# overflow far from where they were given.
INT_MAX = 2**31 - 1
SEED_MAX = 2**32 - 1


def check_fields(cfg: Any) -> None:
    """The checks every config shares, for its __post_init__ (after its own): no number field
    is NaN or infinite, no count is negative or past int32, a seed fits in 32 bits. Raises
    ValueError, which `apply_overrides` reports as a ConfigError."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        for item in value if isinstance(value, tuple) else (value,):
            _check_number(f.name, item)


def _check_number(name: str, value: Any) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if not isinstance(value, int):
        return
    if name == "seed" and not 0 <= value <= SEED_MAX:
        raise ValueError(f"seed must be between 0 and {SEED_MAX}, got {value}")
    if value < 0:
        raise ValueError(f"{name} must be 0 or more, got {value}")
    if value > INT_MAX and name != "seed":
        raise ValueError(f"{name} must be at most {INT_MAX}, got {value}")


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Convert a TOML value or a --set string into the field's declared type, or raise."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: cannot be {value!r}")
    if origin is typing.Literal:
        text = str(value)
        for choice in args:
            if text == str(choice):
                return choice
        raise ConfigError(f"{key} must be one of {', '.join(map(str, args))}, got {value!r}")
    if origin in (tuple, list):
        items = value
        if isinstance(value, str):
            items = [v for v in value.replace(" ", "").strip("()[]").split(",") if v]
        if not isinstance(items, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        item_type = args[0] if args else str
        return origin(_coerce(v, item_type, key) for v in items)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in _TRUE:
            return True
        if str(value).lower() in _FALSE:
            return False
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        try:
            if isinstance(value, str) and "e" in value.lower():  # 1e3; but not 1e-3 -> 0
                number = float(value)
                if not number.is_integer():
                    raise ValueError(value)
                return int(number)
            return int(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{key} must be an integer, got {value!r}") from None
    if annotation is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a number, got {value!r}") from None
    if annotation is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{key}: unsupported field type {annotation!r}")


def apply_overrides(cfg: C, overrides: dict[str, Any], *, source: str) -> C:
    """Return a copy of `cfg` with `overrides` checked and converted to the field types."""
    hints = typing.get_type_hints(type(cfg))
    known = field_names(type(cfg))
    changes = {}
    for key, value in overrides.items():
        if key not in known:
            raise ConfigError(
                f"unknown config key {key!r} in {source}; valid keys: {', '.join(known)}"
            )
        changes[key] = _coerce(value, hints[key], key)
    try:
        return dataclasses.replace(cfg, **changes)
    except (ValueError, TypeError) as e:  # raised by the dataclass's __post_init__ checks
        raise ConfigError(str(e)) from None


def parse_set_options(items: list[str] | None) -> dict[str, str]:
    """`["a=1", "b=x"]` -> `{"a": "1", "b": "x"}`, with a clear error for a missing '='."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


RECIPES_DIR = Path(__file__).parent / "configs"


def recipe_names() -> list[str]:
    """The recipes that ship with realsys, by name (`alexnet_imagenette`, `lenet_digits`, ...)."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.toml"))


def recipe_path(name: str) -> Path:
    """The file of the packaged recipe `name` (with or without .toml), or a ConfigError."""
    stem = name.removesuffix(".toml")
    path = RECIPES_DIR / f"{stem}.toml"
    if stem not in recipe_names():
        raise ConfigError(f"no recipe named {name!r}; recipes: {', '.join(recipe_names())}")
    return path


def find_config_file(spec: str | os.PathLike) -> Path:
    """--config: a TOML file, else (a bare name, no directory) a packaged recipe of that name."""
    path = Path(spec)
    if path.is_file():
        return path
    if len(path.parts) == 1 and path.name.removesuffix(".toml") in recipe_names():
        return recipe_path(path.name)
    raise ConfigError(f"config file {path} does not exist, and no recipe has that name; "
                      f"recipes: {', '.join(recipe_names())}")


def recipe_label(path: str | os.PathLike) -> str:
    """A config file as a result names it: a packaged recipe by its name, any other by path."""
    found = find_config_file(path)
    if found.resolve().parent == RECIPES_DIR.resolve():
        return found.stem
    return str(path)


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    path = find_config_file(path)
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None


def resolve_config(
    cls: type[C],
    *,
    config_file: str | os.PathLike | None = None,
    options: dict[str, Any] | None = None,
    set_items: list[str] | None = None,
) -> C:
    """Build a config: defaults, then the file, then explicit CLI options, then --set."""
    cfg = cls()
    if config_file is not None:
        cfg = apply_overrides(cfg, read_config_file(config_file), source=str(config_file))
    explicit = {k: v for k, v in (options or {}).items() if v is not None}
    cfg = apply_overrides(cfg, explicit, source="the command line")
    return apply_overrides(cfg, parse_set_options(set_items), source="--set")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def config_from_dict(cls: type[C], data: dict[str, Any]) -> C:
    """Rebuild a config saved by `write_config`; keys the class no longer has are an error."""
    return apply_overrides(cls(), data, source="the saved config")


def write_config(cfg: Any, workdir: str | os.PathLike) -> Path:
    path = Path(workdir) / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".config.json.tmp")  # write, fsync, rename: never half a config
    with tmp.open("w") as f:
        f.write(json.dumps(config_to_dict(cfg), indent=2) + "\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    return path


def read_run_config(workdir: str | os.PathLike, cls: type[C], *, command: str,
                    markers: tuple[str, ...], hint: str = "") -> C:
    """The config a run of `command` wrote into `workdir`, checked to be that command's run.

    `markers` are keys only that command's config has; `hint` is appended to the error for a
    workdir without a config (e.g. how to train one).
    """
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise CheckpointError(f"workdir {workdir} does not exist")
    path = workdir / "config.json"
    if not path.exists():
        raise CheckpointError(f"{workdir} holds no {command} run (no config.json){hint}")
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        saved = None
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path} is damaged (not a JSON object); the checkpoints beside "
                              "it carry the config too: delete config.json and run the training "
                              "command again to resume")
    if not all(key in saved for key in markers):
        raise CheckpointError(f"{workdir} holds a run of another kind, not a {command} run")
    return config_from_dict(cls, saved)


def check_resumable(saved: dict[str, Any], cfg: Any, workdir: str | os.PathLike,
                    resumable: set[str]) -> None:
    """Refuse to resume a run whose saved config differs in a field outside `resumable`."""

    def plain(value: Any) -> Any:  # JSON gives lists where the dataclass holds tuples
        return list(value) if isinstance(value, (list, tuple)) else value

    current = config_to_dict(cfg)
    # A field the saved config lacks came in a later release, off by default: a run saved
    # before it trained with its default, so only another value is a difference.
    defaults = config_to_dict(type(cfg)())
    was = {k: saved.get(k, defaults.get(k)) for k in current}
    differ = sorted(k for k in current if k not in resumable and plain(was[k]) != plain(current[k]))
    if differ:
        shown = ", ".join(f"{k} ({was[k]!r} -> {current[k]!r})" for k in differ[:4])
        raise CheckpointError(
            f"{workdir} holds a run with another config: {shown}; use another --workdir, "
            "or the same settings to resume it"
        )


def default_runs_dir() -> Path:
    """Where runs go when --workdir is not given: ./runs, or $REALSYS_RUNS_DIR."""
    return Path(os.environ.get("REALSYS_RUNS_DIR", "runs"))
