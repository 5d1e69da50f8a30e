"""train-classifier's recipe picking (the dataset picks the recipe) and its training length
(the default length has a floor in steps, so it holds on a small dataset)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image
from resolving import like_the_cli

from realsys_cli.classifier.config import ClassifierConfig, total_steps
from realsys_cli.classifier.recipes import pick_recipe, recipe_for_dataset, resolve_train_config
from realsys_cli.config import read_config_file, recipe_path
from realsys_cli.errors import ConfigError


@pytest.mark.parametrize("dataset, recipe", [
    ("imagenette", "alexnet_imagenette"),  # the data layer reads it as imagenette/full-size-v2
    ("imagenette/320px-v2", "alexnet_imagenette"),
    ("imagenette/160px-v2", "alexnet_imagenette"),
    ("mnist", "lenet_digits"),
    ("mnist:3.0.1", "lenet_digits"),
    ("fashion_mnist", "lenet_digits"),
    ("digits", "lenet_digits"),
    ("digits/train=256,test=64", "lenet_digits"),
    ("cifar10", "alexnet_small_cifar10"),
    ("cifar100", "alexnet_small_cifar10"),
    ("shapes", "alexnet_shapes"),
    ("shapes/size=224", "alexnet_shapes"),
    ("moving-digits", None),
    ("emnist", None),
    ("imagenet2012", None),
])
def test_the_dataset_picks_the_recipe(dataset, recipe):
    assert recipe_for_dataset(dataset) == recipe
    if recipe is not None:
        recipe_path(recipe)  # it exists


_resolve = like_the_cli(resolve_train_config)


def test_picked_recipe_gives_its_fields_and_says_so(caplog):
    with caplog.at_level(logging.INFO, logger="realsys"):
        cfg = _resolve(dataset="imagenette")
    written = read_config_file(recipe_path("alexnet_imagenette"))
    for key, value in written.items():
        assert getattr(cfg, key) == value, key
    assert cfg.model == "alexnet" and cfg.image_size == 224 and cfg.recipe == "alexnet_imagenette"
    assert ("recipe: alexnet_imagenette (configs/alexnet_imagenette.toml), picked by --dataset "
            "imagenette; --model or --config to choose another") in caplog.text
    cfg = _resolve(dataset="cifar10")
    assert (cfg.model, cfg.image_size, cfg.crop_padding, cfg.flip, cfg.optimizer,
            cfg.schedule) == ("alexnet-small", 32, 4, True, "sgd", "cosine")
    assert _resolve(dataset="cifar100").dataset == "cifar100"  # the recipe says cifar10


def test_no_options_is_lenet_on_digits(caplog):
    with caplog.at_level(logging.INFO, logger="realsys"):
        cfg = _resolve()
    assert (cfg.dataset, cfg.model, cfg.recipe, cfg.num_epochs) == ("digits", "lenet",
                                                                    "lenet_digits", 0)
    assert "picked by the default dataset, digits" in caplog.text
    # The recipe is the dataclass's defaults written out (but for its name).
    assert cfg == ClassifierConfig(recipe="lenet_digits")


def test_explicit_options_win_over_the_picked_recipe():
    cfg = _resolve(dataset="imagenette/320px-v2", num_epochs=2, batch_size=32,
                   set_items=["pca_noise=0", "resize_size=240"])
    assert cfg.model == "alexnet" and cfg.recipe == "alexnet_imagenette"
    assert (cfg.dataset, cfg.num_epochs, cfg.batch_size, cfg.pca_noise, cfg.resize_size) == (
        "imagenette/320px-v2", 2, 32, 0.0, 240)


@pytest.mark.parametrize("how", ["--model", "--set model", "--config"])
def test_an_explicit_model_or_config_turns_the_picking_off(how, caplog):
    with caplog.at_level(logging.INFO, logger="realsys"):
        if how == "--model":
            cfg = _resolve(dataset="imagenette", model="alexnet-small")
        elif how == "--set model":
            cfg = _resolve(dataset="imagenette", set_items=["model=alexnet-small"])
        else:
            cfg = _resolve(dataset="imagenette", config_file="alexnet_shapes")
    assert "picked by" not in caplog.text
    assert cfg.model == "alexnet-small" and cfg.dataset == "imagenette"
    assert cfg.pca_noise == (0.1 if how == "--config" else 0.0)  # no imagenette fields
    assert cfg.recipe == ("alexnet_shapes" if how == "--config" else "")


def test_unknown_dataset_keeps_the_defaults(caplog):
    with caplog.at_level(logging.INFO, logger="realsys"):
        cfg = _resolve(dataset="emnist")
    assert cfg == ClassifierConfig(dataset="emnist")
    assert "recipe: none for dataset emnist" in caplog.text


def _folder(root, side: int, mode: str, per_class: int = 2):
    for split in ("train", "val"):
        for label in ("a", "b"):
            d = root / split / label
            d.mkdir(parents=True)
            for i in range(per_class):
                Image.new(mode, (side + i, side)).save(d / f"{i}.png")
    return root


@pytest.mark.parametrize("side, mode, recipe", [
    (28, "L", "lenet_digits"),
    (32, "RGB", "alexnet_small_cifar10"),
    (40, "L", "lenet_digits"),
    (64, "L", "alexnet_shapes"),
    (120, "RGB", "alexnet_shapes"),
    (160, "RGB", "alexnet_imagenette"),
    (500, "L", "alexnet_imagenette"),
])
def test_a_folder_is_judged_by_its_images(tmp_path, side, mode, recipe, caplog):
    root = _folder(tmp_path / "pics", side, mode)
    kind = "greyscale" if mode == "L" else "colour"
    assert pick_recipe(None, str(root)).recipe == recipe
    with caplog.at_level(logging.INFO, logger="realsys"):
        cfg = _resolve(data_dir=str(root))
    assert cfg.recipe == recipe and cfg.data_dir == str(root)
    assert cfg.dataset == "pics"  # a folder's label is its name, not the recipe's dataset
    assert f"picked by the folder's images ({kind}, {side} px on the shorter side)" in caplog.text
    # A --dataset label the table knows wins over the images; one it does not, does not.
    assert pick_recipe("imagenette", str(root)).recipe == "alexnet_imagenette"
    assert pick_recipe("my_pictures", str(root)).recipe == recipe
    assert _resolve(data_dir=str(root), dataset="my_pictures").dataset == "my_pictures"


def test_a_folder_without_train_images_is_left_to_the_data_layer(tmp_path):
    assert pick_recipe(None, str(tmp_path / "missing")) is None
    assert _resolve(data_dir=str(tmp_path / "missing")).recipe == ""


def test_bad_recipe_name_is_a_config_error():
    with pytest.raises(ConfigError, match="no recipe named 'nope'; recipes: alexnet_imagenette"):
        recipe_path("nope")


# ------------------------------------------------------------------------- training length
def test_the_default_recipe_trains_three_quarters_of_an_epoch_of_the_digits():
    cfg = resolve_train_config(config_file=None, options={}, set_items=[])
    assert (cfg.recipe, cfg.auto_epochs, cfg.min_steps) == ("lenet_digits", 0.75, 350)
    assert total_steps(cfg, 468) == 351


@pytest.mark.parametrize("fields, steps_per_epoch, expected", [
    ({}, 11, 350),  # 1,500 images at batch 128: the floor
    ({}, 468, 351),  # the built-in digits: 3/4 of an epoch
    ({}, 466, 350),  # 349.5 -> 350 = the floor
    ({}, 468 * 2, 702),
    ({"min_steps": 40}, 8, 40),
    ({"min_steps": 0}, 8, 6),  # no floor: 3/4 of 8 steps
    ({"min_steps": 0, "auto_epochs": 2}, 8, 16),
    ({"num_epochs": 3}, 11, 33),  # an explicit length is exact, floor or not
    ({"num_epochs": 3}, 468, 1404),
    ({"max_steps": 7}, 11, 7),  # max_steps wins over both
    ({"max_steps": 7, "num_epochs": 3}, 468, 7),
    ({"max_steps": 2000}, 11, 2000),
    ({"num_epochs": 2}, 468, 936),
])
def test_total_steps(fields, steps_per_epoch, expected):
    assert total_steps(ClassifierConfig(**fields), steps_per_epoch) == expected


def test_negative_lengths_are_config_errors():
    for key in ("num_epochs", "min_steps", "max_steps", "auto_epochs"):
        with pytest.raises(ConfigError, match=f"{key} must be 0 or more"):
            resolve_train_config(config_file=None, options={}, set_items=[f"{key}=-1"])


def test_the_schedule_follows_the_floor(tmp_path):
    """A tiny dataset trains min_steps steps, and the cosine schedule ends exactly there."""
    import json

    from realsys_cli.classifier.train import train_and_evaluate

    cfg = ClassifierConfig(dataset="digits/train=64,test=32", batch_size=32, min_steps=12,
                           warmup_steps=2, log_every_steps=1, learning_rate=0.05)
    result = train_and_evaluate(cfg, tmp_path / "run")
    assert result["steps"] == 12 and result["epochs"] == 6.0  # 2 steps an epoch, floor 12
    lrs = [r["lr"] for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text()
                                .splitlines()) if "lr" in r]
    # The lr of step k is schedule(k - 1): linear warmup to 0.05 over 2 steps, then a cosine
    # over the remaining 10, which reaches 0 exactly at step 12, the floor (hand-computed).
    expected = [0.0, 0.025] + [0.05 * 0.5 * (1 + np.cos(np.pi * (t - 2) / 10)) for t in range(2, 12)]
    assert lrs == pytest.approx(expected, abs=1e-6)
