"""Which recipe `realsys train-classifier` trains when it is given neither --model nor --config.

The dataset picks it (the recipes are realsys_cli/configs/*.toml, linked as configs/):

  imagenette, imagenette/<config>         alexnet_imagenette     the paper's AlexNet at 224 px
  mnist, fashion_mnist, digits[/...]      lenet_digits           LeNet at 28 px
  cifar10, cifar100                       alexnet_small_cifar10  alexnet-small at 32 px
  shapes[/...]                            alexnet_shapes         alexnet-small at 64 px

A local folder (--data-dir, without a --dataset label of the table) is judged by its images,
from the headers of up to 32 training files (nothing is decoded): the median shorter side
<= 40 px picks lenet_digits for greyscale and alexnet_small_cifar10 for colour, up to 159 px
alexnet_shapes, and from 160 px on alexnet_imagenette. Any other dataset keeps the config's
defaults (lenet at the dataset's size). Command-line options and --set still override the
picked recipe's fields; an explicit model (--model, --set model=...) or --config turns the
picking off. The choice is logged and kept in the config's `recipe` field (and the result).
"""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path
from typing import Any

from PIL import Image

from realsys_cli.classifier.config import ClassifierConfig
from realsys_cli.data.folder import IMAGE_EXTENSIONS
from realsys_cli.recipes import (
    Pick,
    dataset_base,
    explicit_fields,
    given_folder,
    resolve_with_recipe,
)

BY_DATASET = {
    "imagenette": "alexnet_imagenette",
    "mnist": "lenet_digits",
    "fashion_mnist": "lenet_digits",
    "digits": "lenet_digits",
    "cifar10": "alexnet_small_cifar10",
    "cifar100": "alexnet_small_cifar10",
    "shapes": "alexnet_shapes",
}
SMALL_SIDE = 40  # px: at most this, a folder's images are "small" (28-px digits, 32-px CIFAR)
LARGE_SIDE = 160  # px: from this on, photographs for the 224-px AlexNet
GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def recipe_for_dataset(name: str) -> str | None:
    """`imagenette/320px-v2` -> alexnet_imagenette; a name the table lacks -> None."""
    return BY_DATASET.get(dataset_base(name))


def folder_image_sizes(root: str | Path, sample: int = 32) -> list[tuple[int, int, str]]:
    """(width, height, mode) of up to `sample` files spread over ROOT/train/<class>/."""
    train = Path(root).expanduser() / "train"
    if not train.is_dir():
        return []
    files = sorted(p for p in train.glob("*/*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    picked = files[:: max(1, len(files) // sample)][:sample]
    sizes = []
    for path in picked:
        try:
            with Image.open(path) as im:  # reads the header only
                sizes.append((im.width, im.height, im.mode))
        except Exception:  # an unreadable file: the data layer names it when it prepares
            continue
    return sizes


def recipe_for_folder(root: str | Path) -> Pick | None:
    sizes = folder_image_sizes(root)
    if not sizes:
        return None  # no readable train images: the data layer says what is wrong
    side = int(statistics.median(min(w, h) for w, h, _ in sizes))
    grey = sum(mode in GREY_MODES for _, _, mode in sizes) * 2 > len(sizes)
    kind = "greyscale" if grey else "colour"
    why = f"the folder's images ({kind}, {side} px on the shorter side)"
    if side <= SMALL_SIDE:
        return Pick("lenet_digits" if grey else "alexnet_small_cifar10", why)
    if side < LARGE_SIDE:
        return Pick("alexnet_shapes", why)
    return Pick("alexnet_imagenette", why)


def pick_recipe(dataset: str | None, data_dir: str | None) -> Pick | None:
    """The recipe for `--dataset` (None: not given) and `--data-dir`, or None (the defaults)."""
    if dataset is not None and (recipe := recipe_for_dataset(dataset)) is not None:
        return Pick(recipe, f"--dataset {dataset}")
    if data_dir is not None:
        return recipe_for_folder(data_dir)
    if dataset is None:
        default = ClassifierConfig().dataset
        return Pick(BY_DATASET[default], f"the default dataset, {default}")
    return None


def resolve_train_config(
    *,
    config_file: str | Path | None,
    options: dict[str, Any],
    set_items: list[str] | None,
) -> ClassifierConfig:
    """train-classifier's config: the picked (or given) recipe < options < --set."""
    def pick(explicit: dict[str, Any]) -> Pick | None:
        return pick_recipe(explicit.get("dataset"), given_folder(explicit))

    cfg = resolve_with_recipe(ClassifierConfig, config_file=config_file, options=options,
                              set_items=set_items, pick=pick, choosers=("model",))
    explicit = explicit_fields(options, set_items)
    data_dir = given_folder(explicit)
    if data_dir is not None and explicit.get("dataset") is None:
        # The dataset field is only a label for a folder: name the folder, not the recipe's
        # dataset (it names the workdir: runs/train-classifier-<label>-<model>-<time>).
        label = Path(data_dir).expanduser().resolve().name or "folder"
        cfg = dataclasses.replace(cfg, dataset=label)
    return cfg
