"""Which recipe `realsys train-gan` trains when it is given no --config: its dataset picks it.

  digits[/...], mnist     dcgan_digits    32 px, width 32: the best measured (README, train-gan)
  shapes[/...]            dcgan_shapes    64 px, width 32, 50 epochs

Any other dataset, and a --data-dir folder, starts from GanConfig's defaults, the paper's
settings (configs/dcgan_paper.toml writes them out). Command-line options and --set still override the picked recipe's fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from realsys_cli.gan.config import GanConfig
from realsys_cli.recipes import Pick, dataset_base, given_folder, resolve_with_recipe

BY_DATASET = {"digits": "dcgan_digits", "mnist": "dcgan_digits", "shapes": "dcgan_shapes"}


def pick_recipe(explicit: dict[str, Any]) -> Pick | None:
    dataset = explicit.get("dataset")
    if dataset is None and given_folder(explicit) is not None:
        return None  # a folder of the user's images: the paper's settings, at their size
    if dataset is None:
        default = GanConfig().dataset
        return Pick(BY_DATASET[default], f"the default dataset, {default}")
    recipe = BY_DATASET.get(dataset_base(str(dataset)))
    return None if recipe is None else Pick(recipe, f"--dataset {dataset}")


def resolve_gan_config(*, config_file: str | Path | None, options: dict[str, Any],
                       set_items: list[str] | None) -> GanConfig:
    """train-gan's config: the picked (or given) recipe < options < --set."""
    return resolve_with_recipe(GanConfig, config_file=config_file, options=options,
                               set_items=set_items, pick=pick_recipe)
