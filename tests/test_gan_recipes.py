"""train-gan's recipe: its dataset picks it (gan/recipes.py); the paper's settings one flag away."""

from __future__ import annotations

import dataclasses
import json
import logging

from resolving import like_the_cli
from typer.testing import CliRunner

from realsys_cli.cli import app
from realsys_cli.config import read_config_file, recipe_path
from realsys_cli.gan.config import GanConfig
from realsys_cli.gan.recipes import resolve_gan_config

_resolve = like_the_cli(resolve_gan_config)


def test_no_options_trains_the_digits_recipe_and_says_so(caplog):
    with caplog.at_level(logging.INFO, logger="realsys"):
        cfg = _resolve()
    written = read_config_file(recipe_path("dcgan_digits"))
    for key, value in written.items():
        assert getattr(cfg, key) == value, key
    assert (cfg.dataset, cfg.recipe, cfg.image_size, cfg.width) == ("digits", "dcgan_digits",
                                                                    32, 32)
    assert ("recipe: dcgan_digits (configs/dcgan_digits.toml), picked by the default dataset, "
            "digits; --config to choose another") in caplog.text
    assert _resolve(dataset="mnist").recipe == "dcgan_digits"
    assert _resolve(dataset="mnist").dataset == "mnist"  # the option beats the recipe's field
    assert _resolve(dataset="shapes/size=64").recipe == "dcgan_shapes"


def test_options_and_set_beat_the_recipe():
    cfg = _resolve(num_epochs=3, set_items=["width=16", "ema_decay=0"])
    assert (cfg.num_epochs, cfg.width, cfg.ema_decay, cfg.recipe) == (3, 16, 0.0, "dcgan_digits")


def test_unknown_datasets_and_folders_start_from_the_papers_settings(caplog, tmp_path):
    with caplog.at_level(logging.INFO, logger="realsys"):
        cfg = _resolve(dataset="cifar10")
    assert cfg == GanConfig(dataset="cifar10")
    assert "recipe: none for dataset cifar10" in caplog.text
    assert _resolve(data_dir=str(tmp_path)) == GanConfig(data_dir=str(tmp_path))


def test_the_paper_recipe_is_the_dataclass_defaults_written_out():
    """configs/dcgan_paper.toml (the paper-faithful flag) sets the paper's value of every field
    the digits recipe changes, and each equals GanConfig's default."""
    paper = _resolve(config_file=recipe_path("dcgan_paper"))
    assert paper == dataclasses.replace(GanConfig(), recipe="dcgan_paper")
    digits = read_config_file(recipe_path("dcgan_digits"))
    written = read_config_file(recipe_path("dcgan_paper"))
    beyond_the_paper = set(digits) - {"dataset", "image_size", "num_epochs", "judge_model",
                                      "judge_epochs", "fid_samples", "fid_every_epochs"}
    assert beyond_the_paper <= set(written), beyond_the_paper - set(written)


def test_print_config_names_the_recipe():
    result = CliRunner().invoke(app, ["train-gan", "--print-config", "--json"])
    assert result.exit_code == 0, result.output
    cfg = json.loads(result.stdout)
    assert (cfg["recipe"], cfg["image_size"], cfg["width"]) == ("dcgan_digits", 32, 32)
