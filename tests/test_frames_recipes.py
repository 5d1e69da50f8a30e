"""predict-frames' recipe: its model picks it (frames/recipes.py); SimVP by default, the ConvLSTM
and OpenSTL's SimVP training one flag away."""

from __future__ import annotations

import dataclasses
import json
import logging

from resolving import like_the_cli
from typer.testing import CliRunner

from realsys_cli.cli import app
from realsys_cli.config import read_config_file, recipe_path
from realsys_cli.frames.config import FramesConfig
from realsys_cli.frames.recipes import resolve_frames_config

_resolve = like_the_cli(resolve_frames_config)


def test_no_options_trains_the_simvp_recipe_and_says_so(caplog):
    with caplog.at_level(logging.INFO, logger="realsys"):
        cfg = _resolve()
    for key, value in read_config_file(recipe_path("simvp_moving_digits")).items():
        assert getattr(cfg, key) == value, key
    assert (cfg.model, cfg.recipe, cfg.observed_loss_weight, cfg.schedule, cfg.learning_rate) == (
        "simvp", "simvp_moving_digits", 0.0, "cosine", 3e-3)
    assert ("recipe: simvp_moving_digits (configs/simvp_moving_digits.toml), picked by the "
            "default model, simvp; --config to choose another") in caplog.text
    # the default SimVP is FramesConfig's SimVP: the recipe leaves the ConvLSTM's loss out,
    # raises the rate to 3e-3, patches 4x4 (3 encoder blocks of 16 channels, one strided) and
    # trains 5,000 steps of 8
    assert cfg == dataclasses.replace(
        FramesConfig(model="simvp"), observed_loss_weight=0.0, learning_rate=3e-3,
        simvp_patch=4, simvp_n_s=3, simvp_hid_s=16, batch_size=8, max_steps=5000,
        recipe="simvp_moving_digits")


def test_epochs_alone_replace_the_recipes_step_count():
    def printed(*args):
        result = CliRunner().invoke(app, ["predict-frames", *args, "--print-config", "--json"])
        assert result.exit_code == 0, result.output
        cfg = json.loads(result.stdout)
        return cfg["num_epochs"], cfg["max_steps"]

    assert printed() == (1, 5000)
    assert printed("--epochs", "3") == (3, 0)  # 3 epochs, not the recipe's 5,000 steps
    assert printed("--epochs", "3", "--steps", "10") == (3, 10)  # --steps still wins
    assert printed("--steps", "10") == (1, 10)


def test_the_convlstm_is_one_option_away_and_is_the_dataclass_defaults(caplog):
    with caplog.at_level(logging.INFO, logger="realsys"):
        cfg = _resolve(model="convlstm")
    assert "picked by --model convlstm" in caplog.text
    assert cfg == dataclasses.replace(FramesConfig(), recipe="convlstm_moving_digits")
    assert _resolve(model="simvp").recipe == "simvp_moving_digits"


def test_config_openstl_and_options_beat_the_pick():
    openstl = _resolve(config_file=recipe_path("simvp_openstl"))
    assert (openstl.model, openstl.schedule, openstl.learning_rate, openstl.grad_clip_norm,
            openstl.recipe) == ("simvp", "onecycle", 1e-3, 0.0, "simvp_openstl")
    cfg = _resolve(max_steps=7, learning_rate=1e-3, set_items=["simvp_n_t=2"])
    assert (cfg.max_steps, cfg.simvp_n_t, cfg.learning_rate, cfg.recipe) == (
        7, 2, 1e-3, "simvp_moving_digits")
    assert _resolve(dataset="moving-digits/train=64").dataset == "moving-digits/train=64"


def test_print_config_names_the_recipe():
    result = CliRunner().invoke(app, ["predict-frames", "--print-config", "--json"])
    assert result.exit_code == 0, result.output
    cfg = json.loads(result.stdout)
    assert (cfg["recipe"], cfg["model"]) == ("simvp_moving_digits", "simvp")
    result = CliRunner().invoke(app, ["predict-frames", "-m", "convlstm", "--print-config",
                                      "--json"])
    assert json.loads(result.stdout)["recipe"] == "convlstm_moving_digits"
