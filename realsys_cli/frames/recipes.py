"""Which recipe `realsys predict-frames` trains when it is given no --config: its model picks it.

  simvp (the default)   simvp_moving_digits       SimVP gSTA, one epoch: the best per CPU-minute
  convlstm              convlstm_moving_digits    the lecture's ConvLSTM encoder-forecaster

(docs/frames.md, "ConvLSTM against SimVP", has the measurements.) The recipes are about the
model, not the data: a --dataset of the same frame size still starts from them. Command-line
options and --set override the picked recipe's fields; FramesConfig's own defaults are the
ConvLSTM recipe's, written out in configs/convlstm_moving_digits.toml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from realsys_cli.frames.config import FramesConfig
from realsys_cli.recipes import Pick, resolve_with_recipe

DEFAULT_MODEL = "simvp"
BY_MODEL = {"simvp": "simvp_moving_digits", "convlstm": "convlstm_moving_digits"}


def pick_recipe(explicit: dict[str, Any]) -> Pick | None:
    model = explicit.get("model")
    if model is None:
        return Pick(BY_MODEL[DEFAULT_MODEL], f"the default model, {DEFAULT_MODEL}")
    recipe = BY_MODEL.get(str(model))
    return None if recipe is None else Pick(recipe, f"--model {model}")


def resolve_frames_config(*, config_file: str | Path | None, options: dict[str, Any],
                          set_items: list[str] | None) -> FramesConfig:
    """predict-frames' config: the picked (or given) recipe < options < --set."""
    return resolve_with_recipe(FramesConfig, config_file=config_file, options=options,
                               set_items=set_items, pick=pick_recipe)
