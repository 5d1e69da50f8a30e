"""Run configs: defaults < TOML file < command-line options < --set, every value type-checked."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path
from typing import Literal, Optional

import pytest

from realsys_cli.classifier.config import ClassifierConfig
from realsys_cli.config import (
    RECIPES_DIR,
    config_from_dict,
    config_to_dict,
    parse_set_options,
    recipe_label,
    recipe_names,
    resolve_config,
    write_config,
)
from realsys_cli.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Small:
    name: str = "digits"
    batch_size: int = 8
    learning_rate: float = 0.1
    flip: bool = False
    limit: Optional[int] = None  # noqa: UP045 (the spelling ClassifierConfig uses)
    label: str | None = "x"
    dtype: Literal["float32", "bfloat16"] = "float32"
    sizes: tuple[int, ...] = (1, 2)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")


def _toml(tmp_path, text: str):
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    return path


def test_defaults():
    assert resolve_config(Small) == Small()
    assert resolve_config(ClassifierConfig) == ClassifierConfig()


def test_file_then_options_then_set(tmp_path):
    path = _toml(tmp_path, 'batch_size = 16\nlearning_rate = 0.5\nname = "shapes"\nflip = true\n')
    from_file = resolve_config(Small, config_file=path)
    assert from_file == Small(name="shapes", batch_size=16, learning_rate=0.5, flip=True)
    with_options = resolve_config(
        Small, config_file=path, options={"batch_size": 32, "learning_rate": None}
    )
    assert with_options.batch_size == 32  # the option beats the file
    assert with_options.learning_rate == 0.5  # an option left at None does not override
    everything = resolve_config(
        Small, config_file=path, options={"batch_size": 32},
        set_items=["batch_size=64", "name = mnist", "flip=off"],
    )
    assert everything == Small(name="mnist", batch_size=64, learning_rate=0.5, flip=False)


def test_real_classifier_config(tmp_path):
    path = _toml(tmp_path, 'model = "alexnet-small"\nbatch_size = 64\nnum_epochs = 2\n'
                           'learning_rate = 1\nflip = true\n')
    cfg = resolve_config(ClassifierConfig, config_file=path, options={"num_epochs": 5},
                         set_items=["dtype=bfloat16", "data_dir=/data/x", "warmup_steps=1e3"])
    assert cfg.model == "alexnet-small" and cfg.batch_size == 64 and cfg.flip is True
    assert cfg.num_epochs == 5
    assert cfg.learning_rate == 1.0 and isinstance(cfg.learning_rate, float)
    assert cfg.dtype == "bfloat16" and cfg.data_dir == "/data/x"
    assert cfg.warmup_steps == 1000 and isinstance(cfg.warmup_steps, int)
    assert resolve_config(ClassifierConfig, set_items=["data_dir=none"]).data_dir is None


def test_unknown_key_lists_valid_keys(tmp_path):
    with pytest.raises(ConfigError) as info:
        resolve_config(Small, set_items=["batchsize=3"])
    message = str(info.value)
    assert "unknown config key 'batchsize' in --set" in message
    assert "valid keys: name, batch_size, learning_rate, flip, limit, label, dtype, sizes" in message
    path = _toml(tmp_path, "epochs = 3\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'epochs' in .*recipe.toml.*"
                                          r"num_epochs"):
        resolve_config(ClassifierConfig, config_file=path)
    with pytest.raises(ConfigError, match="in the command line"):
        resolve_config(Small, options={"nope": 1})


@pytest.mark.parametrize(
    ("item", "needle"),
    [
        ("batch_size=abc", "batch_size must be an integer, got 'abc'"),
        ("batch_size=1.5", "batch_size must be an integer, got '1.5'"),
        ("batch_size=1e-3", "batch_size must be an integer, got '1e-3'"),
        ("learning_rate=x", "learning_rate must be a number, got 'x'"),
        ("flip=maybe", "flip must be true or false, got 'maybe'"),
        ("dtype=float16", "dtype must be one of float32, bfloat16, got 'float16'"),
        ("limit=lots", "limit must be an integer, got 'lots'"),
        ("sizes=1,b", "sizes must be an integer, got 'b'"),
        ("batch_size=0", "batch_size must be at least 1"),  # the dataclass's own check
    ],
)
def test_wrong_type_names_the_field(item, needle):
    with pytest.raises(ConfigError) as info:
        resolve_config(Small, set_items=[item])
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("batch_size = true\n", "batch_size must be an integer, got True"),
        ("batch_size = 2.5\n", "batch_size must be an integer, got 2.5"),
        ('learning_rate = "fast"\n', "learning_rate must be a number, got 'fast'"),
        ("learning_rate = false\n", "learning_rate must be a number, got False"),
        ("name = [1, 2]\n", "name must be a string"),
        ("sizes = 3\n", "sizes must be a list, got 3"),
    ],
)
def test_wrong_type_in_file(tmp_path, text, needle):
    with pytest.raises(ConfigError) as info:
        resolve_config(Small, config_file=_toml(tmp_path, text))
    assert needle in str(info.value)


def test_classifier_validation_is_a_config_error():
    with pytest.raises(ConfigError, match="optimizer must be one of sgd, adamw, adam"):
        resolve_config(ClassifierConfig, set_items=["optimizer=rmsprop"])
    with pytest.raises(ConfigError, match="learning_rate must be positive"):
        resolve_config(ClassifierConfig, set_items=["learning_rate=0"])
    with pytest.raises(ConfigError, match="dtype must be one of float32, bfloat16"):
        resolve_config(ClassifierConfig, set_items=["dtype=fp8"])


def test_optional_literal_and_tuple_fields(tmp_path):
    cfg = resolve_config(Small, set_items=["limit=5", "label=none", "dtype=bfloat16",
                                           "sizes=(3, 4, 5)", "learning_rate=2e-3"])
    assert cfg.limit == 5 and cfg.label is None and cfg.dtype == "bfloat16"
    assert cfg.sizes == (3, 4, 5) and cfg.learning_rate == pytest.approx(0.002)
    assert resolve_config(Small, set_items=["limit=null"]).limit is None
    from_file = resolve_config(Small, config_file=_toml(tmp_path, "sizes = [7, 8]\nlimit = 2\n"))
    assert from_file.sizes == (7, 8) and from_file.limit == 2


@pytest.mark.parametrize("value", ["1", "true", "YES", "on"])
def test_bool_true_spellings(value):
    assert resolve_config(Small, set_items=[f"flip={value}"]).flip is True


def test_set_needs_key_and_equals():
    assert parse_set_options(["a=1", " b = x=y "]) == {"a": "1", "b": "x=y"}
    assert parse_set_options(None) == {}
    with pytest.raises(ConfigError, match=r"--set expects key=value, got 'batch_size'"):
        resolve_config(Small, set_items=["batch_size"])
    with pytest.raises(ConfigError, match=r"--set expects key=value, got '=3'"):
        parse_set_options(["=3"])


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"config file .*missing.toml does not exist"):
        resolve_config(Small, config_file=tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match=r"is not valid TOML"):
        resolve_config(Small, config_file=_toml(tmp_path, "batch_size = = 3\n"))


@pytest.mark.parametrize("cls", [Small, ClassifierConfig])
def test_write_config_round_trip(tmp_path, cls):
    if cls is Small:
        cfg = Small(name="shapes", batch_size=3, learning_rate=1e-4, flip=True, limit=None,
                    label=None, dtype="bfloat16", sizes=(9, 10))
    else:
        cfg = resolve_config(ClassifierConfig, set_items=["model=alexnet", "data_dir=/x/y",
                                                          "dtype=bfloat16", "learning_rate=0.01"])
    path = write_config(cfg, tmp_path / "run" / "nested")
    assert path == tmp_path / "run" / "nested" / "config.json"
    data = json.loads(path.read_text())
    assert data == json.loads(json.dumps(config_to_dict(cfg)))
    back = config_from_dict(cls, data)
    assert back == cfg
    assert type(back) is cls


def test_saved_config_with_unknown_key():
    data = config_to_dict(Small())
    data["retired_field"] = 1
    with pytest.raises(ConfigError, match="unknown config key 'retired_field' in the saved config"):
        config_from_dict(Small, data)


@pytest.mark.parametrize("recipe", sorted(RECIPES_DIR.glob("*.toml")), ids=lambda p: p.name)
def test_every_recipe_resolves_into_its_commands_config(recipe):
    """A typo or a renamed field in a recipe must fail here, not in a user's run."""
    from realsys_cli.classifier.config import ClassifierConfig
    from realsys_cli.fool.config import FoolConfig
    from realsys_cli.frames.config import FramesConfig
    from realsys_cli.gan.config import GanConfig

    kinds = {"lenet": ClassifierConfig, "alexnet": ClassifierConfig, "fool": FoolConfig,
             "dcgan": GanConfig, "convlstm": FramesConfig, "simvp": FramesConfig}
    kind = kinds[recipe.name.split("_")[0]]
    cfg = resolve_config(kind, config_file=recipe)
    written = tomllib.loads(recipe.read_text())
    assert written, recipe
    for key, value in written.items():  # every value landed in its field, lists as tuples
        got = getattr(cfg, key)
        assert (list(got) if isinstance(got, tuple) else got) == value, key


def test_recipes_ship_in_the_package_and_configs_links_to_them():
    """An installed wheel has realsys_cli/configs/; the repository's configs/ is a relative
    symlink to it, so `--config configs/xxx.toml` in the README works from a checkout."""
    assert RECIPES_DIR == Path(__file__).parents[1] / "realsys_cli" / "configs"
    assert {"alexnet_imagenette", "alexnet_shapes", "alexnet_small_cifar10", "lenet_digits",
            "dcgan_digits"} <= set(recipe_names())
    link = Path(__file__).parents[1] / "configs"
    assert link.is_symlink() and str(link.readlink()) == "realsys_cli/configs"
    assert sorted(p.name for p in link.glob("*.toml")) == sorted(
        p.name for p in RECIPES_DIR.glob("*.toml"))


def test_config_by_recipe_name(tmp_path, monkeypatch):
    """--config lenet_digits (or lenet_digits.toml) is the packaged recipe, from any directory;
    a file of that name in the working directory wins over the recipe."""
    monkeypatch.chdir(tmp_path)
    for spec in ("alexnet_imagenette", "alexnet_imagenette.toml"):
        cfg = resolve_config(ClassifierConfig, config_file=spec)
        assert cfg.model == "alexnet" and cfg.image_size == 224 and cfg.num_epochs == 90
        assert recipe_label(spec) == "alexnet_imagenette"
    assert recipe_label(Path(__file__).parents[1] / "configs" / "lenet_digits.toml") == \
        "lenet_digits"  # through the symlink
    (tmp_path / "lenet_digits.toml").write_text('model = "alexnet-small"\n')
    assert resolve_config(ClassifierConfig, config_file="lenet_digits").model == "lenet"  # no .toml
    assert resolve_config(ClassifierConfig, config_file="lenet_digits.toml").model == \
        "alexnet-small"
    assert recipe_label("lenet_digits.toml") == "lenet_digits.toml"  # a file, named by its path


def test_unknown_config_lists_the_recipes(tmp_path):
    with pytest.raises(ConfigError) as info:
        resolve_config(ClassifierConfig, config_file="alexnet_imagenet")
    message = str(info.value)
    assert "\n" not in message
    assert "config file alexnet_imagenet does not exist, and no recipe has that name" in message
    assert "recipes: alexnet_imagenette, alexnet_shapes, alexnet_small_cifar10," in message


def test_a_run_saved_before_a_field_existed_resumes_at_its_default(tmp_path):
    """A field added in a later release (off by default) is no difference for a run saved
    without it; any other value of it is."""
    from realsys_cli.config import check_resumable, config_to_dict
    from realsys_cli.errors import CheckpointError
    from realsys_cli.frames.config import FramesConfig

    saved = config_to_dict(FramesConfig())
    del saved["model"]  # a run from before --model simvp
    check_resumable(saved, FramesConfig(), tmp_path, set())
    with pytest.raises(CheckpointError, match=r"model \('convlstm' -> 'simvp'\)"):
        check_resumable(saved, FramesConfig(model="simvp"), tmp_path, set())
