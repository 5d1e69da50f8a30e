"""The recipe a trainer starts from when it is given no --config: picked by its dataset.

Each trainer has a table from dataset to packaged recipe (realsys_cli/configs/*.toml):
classifier/recipes.py for train-classifier, gan/recipes.py for train-gan. The order of
precedence is the config module's, with the picked recipe in the place of --config:

    the config's defaults < the picked recipe (or --config) < command-line options < --set

An explicit choice of the thing a recipe is about (train-classifier's --model) turns the
picking off, as --config does. The choice is logged and kept in the config's `recipe` field.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from realsys_cli import config as config_lib

log = logging.getLogger("realsys")

C = TypeVar("C")


@dataclasses.dataclass(frozen=True)
class Pick:
    recipe: str  # a packaged recipe's name
    reason: str  # what picked it, for the log line


def dataset_base(name: str) -> str:
    """`imagenette/320px-v2` -> imagenette, `digits:3.0.0` -> digits (lower case)."""
    return re.split(r"[/:]", name.strip().lower(), maxsplit=1)[0]


def explicit_fields(options: dict[str, Any], set_items: list[str] | None) -> dict[str, Any]:
    """The fields the command line gives: options that are not None, then --set's."""
    explicit = {k: v for k, v in options.items() if v is not None}
    explicit.update(config_lib.parse_set_options(set_items))
    return explicit


def given_folder(explicit: dict[str, Any]) -> str | None:
    """The --data-dir the command line gives, or None (not given, or given as a null)."""
    data_dir = explicit.get("data_dir")
    return None if data_dir in ("", "none", "None", "null") else data_dir


def resolve_with_recipe(
    cls: type[C],
    *,
    config_file: str | Path | None,
    options: dict[str, Any],
    set_items: list[str] | None,
    pick: Callable[[dict[str, Any]], Pick | None],
    choosers: Iterable[str] = (),
) -> C:
    """The config of a trainer whose recipe `pick(explicit fields)` names, unless --config or
    one of `choosers` is given. `cls` has a `recipe` field (info only)."""
    explicit = explicit_fields(options, set_items)
    if config_file is None and not set(choosers) & explicit.keys():
        chosen = pick(explicit)
        ways = " or ".join([*(f"--{c}" for c in choosers), "--config"])
        if chosen is not None:
            config_file = config_lib.recipe_path(chosen.recipe)
            log.info("recipe: %s (configs/%s.toml), picked by %s; %s to choose another",
                     chosen.recipe, chosen.recipe, chosen.reason, ways)
        else:
            log.info("recipe: none for dataset %s (realsys's defaults); %s to choose one",
                     explicit.get("dataset"), ways)
    cfg = config_lib.resolve_config(cls, config_file=config_file, options=options,
                                    set_items=set_items)
    if config_file is not None:
        cfg = dataclasses.replace(cfg, recipe=config_lib.recipe_label(config_file))
    return cfg
