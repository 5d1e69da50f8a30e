"""The `realsys` command line through typer's CliRunner: results on stdout (one JSON object with
--json), everything else on stderr, library errors as one line and exit 1, usage errors exit 2.
"""

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from realsys_cli import __version__
from realsys_cli.cli import app

COMMANDS = ("train-classifier", "fool", "train-gan", "predict-frames", "datasets", "evaluate",
            "classify")
DIGITS = "digits/train=100,test=20"
MOVING = "moving-digits/train=4,test=2,frames=6"


@pytest.fixture(autouse=True)
def _restore_logging():
    """The app's callback configures the "realsys" logger for a terminal; undo it afterwards so
    that other tests' caplog still sees realsys's records."""
    logger, absl = logging.getLogger("realsys"), logging.getLogger("absl")
    saved = (list(logger.handlers), logger.level, logger.propagate, absl.level)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]
    absl.setLevel(saved[3])


@pytest.fixture
def runner():
    return CliRunner()


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def test_help_lists_the_commands(runner):
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    for command in COMMANDS:
        assert command in result.stdout
    assert "--version" in result.stdout
    no_args = runner.invoke(app, [])
    assert no_args.exit_code == 2  # no_args_is_help: the same list, as a usage error
    assert all(command in no_args.output for command in COMMANDS)


def test_version(runner):
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"realsys {__version__}\n"
    assert result.stderr == ""


def test_datasets_list_json_is_one_object(runner):
    result = runner.invoke(app, ["datasets", "list", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(_one_line(result.stdout))
    assert list(data) == ["datasets"]
    rows = data["datasets"]
    assert [r["name"] for r in rows] == ["digits", "shapes", "moving-digits", "mnist",
                                         "fashion_mnist", "cifar10", "cifar100", "imagenette",
                                         "moving_mnist"]
    assert all(r["source"] == "built-in" for r in rows[:3])
    assert all(r["prepared"] == "no (made on first use)" for r in rows[:3])
    assert rows[0]["defaults"] == "seed=0,train=60000,test=10000"
    assert all(r["source"] == "download" for r in rows[3:])
    assert all(r["prepared"] == "no (downloaded on first use)" for r in rows[3:])
    assert rows[3]["defaults"] == "12 MB to download"  # mnist's four files
    assert result.stderr == ""


def test_no_download_flag_never_opens_a_socket(runner, monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("opened a socket")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    result = runner.invoke(app, ["datasets", "prepare", "mnist", "--no-download"])
    assert result.exit_code == 1 and result.stdout == ""
    line = _one_line(result.stderr)
    assert "mnist needs train-images-idx3-ubyte.gz (9.9 MB) and downloads are off" in line


def test_datasets_list_shows_what_is_prepared(runner):
    prepared = runner.invoke(app, ["datasets", "prepare", DIGITS, "--json"])
    assert prepared.exit_code == 0, prepared.output
    described = json.loads(_one_line(prepared.stdout))  # TFDS's own prints went to stderr
    assert described["splits"] == {"train": 100, "test": 20}
    assert described["shape"] == [28, 28, 1]
    assert described["classes"] == [str(d) for d in range(10)]
    rows = json.loads(runner.invoke(app, ["datasets", "list", "--json"]).stdout)["datasets"]
    assert rows[0]["prepared"] == "test=20,train=100"
    assert rows[1]["prepared"] == "no (made on first use)"
    assert len(rows) == 9  # built-in preparations are not listed twice


def test_datasets_list_table(runner):
    result = runner.invoke(app, ["datasets", "list"])
    assert result.exit_code == 0
    for name in ("digits", "shapes", "moving-digits"):
        assert name in result.stdout


def test_preview_digits_png(runner, tmp_path):
    result = runner.invoke(app, ["datasets", "preview", DIGITS, "--out", "x.png"])
    assert result.exit_code == 0, result.output
    assert "Preparing built-in dataset" in result.stderr
    assert "Downloading and preparing" not in result.stdout  # TFDS's prints kept off stdout
    with Image.open(tmp_path / "x.png") as im:
        assert im.format == "PNG" and im.mode == "RGB"
        # 40 digits, 10 columns x 4 rows of 28 px upscaled x3 to 84, 2 px padding, 14 px labels
        assert im.size == (10 * (84 + 2) + 2, 4 * (84 + 14 + 2) + 2)
        pixels = np.asarray(im)
    cell = pixels[2 : 2 + 84, 2 : 2 + 84]  # the first digit: white strokes on black
    assert cell.max() > 200 and (cell < 30).mean() > 0.5


def test_preview_json_stdout_is_one_object(runner, tmp_path):
    result = runner.invoke(app, ["datasets", "preview", DIGITS, "--out", "sub/y.png", "--json",
                                 "--count", "12", "--split", "test"])
    assert result.exit_code == 0, result.output
    data = json.loads(_one_line(result.stdout))
    assert data == {"dataset": DIGITS, "split": "test", "count": 12, "out": "sub/y.png",
                    "kind": "image"}
    assert (tmp_path / "sub" / "y.png").is_file()


def test_preview_moving_digits_gif(runner, tmp_path):
    result = runner.invoke(app, ["datasets", "preview", MOVING, "--out", "m.gif"])
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "m.gif") as im:
        assert im.format == "GIF" and im.is_animated
        assert im.n_frames == 6
        # 4 clips side by side, 64 px upscaled x2 to 128, 2 px padding, 14 px labels
        assert im.size == (4 * (128 + 2) + 2, 128 + 14 + 2 + 2)
        frames = []
        for t in range(im.n_frames):
            im.seek(t)
            frames.append(np.asarray(im.convert("L")))
    assert any((a != b).any() for a, b in zip(frames[:-1], frames[1:], strict=True))  # the digits move


def test_preview_local_folder(runner, tmp_path):
    for split in ("train", "val"):
        for i, cls in enumerate(("cat", "dog")):
            path = tmp_path / "pets" / split / cls / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (30 + 10 * i, 20), (200, 10 * i, 0)).save(path)
    result = runner.invoke(app, ["datasets", "preview", "pets", "--data-dir", "pets",
                                 "--out", "p.png", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(_one_line(result.stdout))["count"] == 2
    with Image.open(tmp_path / "p.png") as im:
        # 2 images cut to the smallest side (20 px), upscaled x4 to 80, in 2 columns
        assert im.size == (2 * (80 + 2) + 2, 80 + 14 + 2 + 2)


def test_quiet_keeps_stderr_for_errors_only(runner):
    result = runner.invoke(app, ["-q", "datasets", "preview", DIGITS, "--out", "q.png", "--json"])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    json.loads(_one_line(result.stdout))


def test_unprepared_tfds_dataset_is_one_line_error(runner, tmp_path):
    result = runner.invoke(app, ["datasets", "preview", "kmnist", "--out", "x.png"])
    assert result.exit_code == 1
    assert result.stdout == ""
    line = _one_line(result.stderr)
    assert line.startswith("error: TFDS dataset 'kmnist' is not prepared")
    assert "realsys prepares only mnist" in line
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.png").exists()


def test_unreachable_source_is_one_line_error_in_seconds(runner, tmp_path, monkeypatch):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("REALSYS_DATASETS_MIRROR", f"http://127.0.0.1:{port}")
    start = time.perf_counter()
    result = runner.invoke(app, ["datasets", "preview", "mnist", "--out", "x.png"])
    assert time.perf_counter() - start < 5
    assert result.exit_code == 1 and result.stdout == ""
    line = _one_line(result.stderr)
    assert line.startswith(f"error: cannot reach 127.0.0.1:{port} to download mnist")
    assert not (tmp_path / "x.png").exists()


def test_bad_builtin_param_is_one_line_error(runner):
    result = runner.invoke(app, ["datasets", "prepare", "shapes/size=9", "--json"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "size must be between 28 and 256" in _one_line(result.stderr)


def test_debug_shows_the_traceback(runner):
    result = runner.invoke(app, ["datasets", "preview", "kmnist", "--out", "x.png"],
                           env={"REALSYS_DEBUG": "1"})
    assert result.exit_code == 1
    assert "Traceback" in result.stderr and "DatasetError" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["datasets", "list", "--bogus"],
        ["no-such-command"],
        ["datasets", "preview", "digits"],  # --out is required
        ["datasets", "preview", "digits", "--out", "x.png", "--count", "0"],
    ],
)
def test_usage_errors_exit_2(runner, args):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.stderr


def _python() -> Path:
    return Path(sys.executable)


def test_importing_the_cli_does_not_import_jax():
    code = ("import realsys_cli.cli, sys; "
            "print('jax' in sys.modules, 'tensorflow_datasets' in sys.modules)")
    out = subprocess.run([str(_python()), "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_help_does_not_import_jax():
    code = ("import sys\nfrom realsys_cli.cli import app\ntry:\n    app(['--help'])\n"
            "except SystemExit:\n    pass\nprint('jax' in sys.modules, file=sys.stderr)")
    out = subprocess.run([str(_python()), "-c", code], capture_output=True, text=True, check=True)
    assert "train-classifier" in out.stdout
    assert out.stderr.strip() == "False"


def test_realsys_help_is_fast():
    script = _python().parent / "realsys"
    if not script.exists():
        pytest.skip("the realsys entry point is not installed next to this python")
    subprocess.run([str(script), "--help"], capture_output=True, check=True)  # warm the disk
    start = time.perf_counter()
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - start
    assert "train-classifier" in out.stdout
    assert elapsed < 2.0, f"realsys --help took {elapsed:.2f} s"


def test_flags_show_no_value_in_help():
    """The entry point (`main`, not the bare Typer app) shows `--json` without a `<bool>`."""
    script = _python().parent / "realsys"
    if not script.exists():
        pytest.skip("the realsys entry point is not installed next to this python")
    out = subprocess.run([str(script), "train-gan", "--help"], capture_output=True, text=True,
                         check=True, env={**os.environ, "COLUMNS": "120"})
    rows = {line.split()[1]: line for line in out.stdout.splitlines()
            if line.split()[1:2] and line.split()[1].startswith("--")}
    json_line, set_line = rows["--json"], rows["--set"]
    assert "<bool>" not in json_line and "KEY=VALUE" in set_line


def test_every_command_renders_its_help(runner):
    """Help texts are Rich markup: a stray '[...]' in one breaks `--help` with a traceback."""
    import typer.main

    group = typer.main.get_command(app)
    names = list(group.commands)
    for name in names:
        sub = group.commands[name]
        paths = [[name]] + [[name, s] for s in getattr(sub, "commands", {})]
        for path in paths:
            result = runner.invoke(app, [*path, "--help"])
            assert result.exit_code == 0, (path, result.output[-500:])
            assert "Usage" in result.stdout


# ------------------------------------------------------------------------- one grammar
TRAINERS = ("train-classifier", "train-gan", "predict-frames")


def _commands(root=None):
    """(path, command) for every command of the tree (a new one unless `root`), groups too."""
    import typer.main

    def walk(command, path):
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, [*path, name])

    yield from walk(root or typer.main.get_command(app), ["realsys"])


def _options(command):
    """(long names, short names, hidden) of each option (arguments left out)."""
    for param in command.params:
        names = [*param.opts, *param.secondary_opts]
        if not any(n.startswith("-") for n in names):
            continue
        longs = tuple(sorted(n for n in names if n.startswith("--")))
        shorts = tuple(n for n in names if not n.startswith("--"))
        yield longs, shorts, getattr(param, "hidden", False)


def test_a_short_flag_means_one_option_everywhere():
    """Every short flag, hidden aliases included, names the same long option in every command,
    and a long option that has a short flag has the same one wherever it has one."""
    short_to_long: dict[str, set] = {}
    long_to_short: dict[tuple, set] = {}
    for path, command in _commands():
        for longs, shorts, _ in _options(command):
            for short in shorts:
                short_to_long.setdefault(short, set()).add((longs, " ".join(path)))
                long_to_short.setdefault(longs, set()).add(short)
    clashes = {s: uses for s, uses in short_to_long.items() if len({u[0] for u in uses}) > 1}
    assert clashes == {}
    assert {k: v for k, v in long_to_short.items() if len(v) > 1} == {}
    assert set(short_to_long) >= {"-w", "-C", "-d", "-m", "-e", "-b", "-n", "-k", "-c", "-s",
                                  "-o", "-t", "-q", "-v"}


def _visible_options(name: str) -> set[str]:
    command = dict((" ".join(p[1:]), c) for p, c in _commands())[name]
    return {n for longs, _, hidden in _options(command) if not hidden for n in longs}


@pytest.mark.parametrize("name", TRAINERS)
def test_every_trainer_takes_the_same_options(name, runner):
    shown = _visible_options(name)
    assert {"--workdir", "--steps", "--epochs", "--seed", "--config", "--set", "--json",
            "--print-config", "--batch-size", "--lr", "--tfds-data-dir",
            "--no-download"} <= shown
    result = runner.invoke(app, [name, "--help"], env={"COLUMNS": "200"})
    for option in ("--workdir", "--steps", "--epochs", "--seed", "--config", "--set", "--json",
                   "--print-config"):
        assert option in result.stdout, option


def test_runs_read_are_named_for_what_they_are():
    """--workdir/-w is the run a command writes; a run it only reads has the name of its kind."""
    for name in ("evaluate", "classify", "fool", "fool-defence"):
        assert "--classifier" in _visible_options(name)
    assert "--from" in _visible_options("sample")
    for name in ("evaluate", "classify", "sample"):
        assert "--workdir" not in _visible_options(name)  # kept, hidden, for one release
    assert "--out" not in _visible_options("fool") | _visible_options("fool-defence")
    assert "--attack-steps" in _visible_options("fool")
    assert "--steps" not in _visible_options("fool")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["evaluate", "--workdir", "nope"], "use --classifier/-C"),
        (["classify", "-w", "nope", "x.png"], "use --classifier/-C"),
        (["sample", "-w", "nope"], "use --from"),
    ],
)
def test_old_spellings_still_work_with_a_warning(runner, args, says):
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and result.stdout == ""
    warning, error = result.stderr.strip().splitlines()
    assert warning.startswith("warning: --") and "deprecated" in warning and says in warning
    assert error.startswith("error:") and "nope does not exist" in error
    quiet = runner.invoke(app, ["-q", *args])
    assert quiet.exit_code == 1
    assert _one_line(quiet.stderr).startswith("error:")  # --quiet: errors only


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["evaluate"], "Missing option '--classifier' / '-C'"),
        (["classify", "x.png"], "Missing option '--classifier' / '-C'"),
        (["sample", "--score"], "Missing option '--from'"),
        (["evaluate", "-C", "a", "-w", "b"], "give only --classifier/-C"),
        (["sample", "--from", "a", "--count", "2", "--num", "3"], "give only --count/-n"),
        (["fool", "--steps", "5"], "--attack-steps 5"),
        (["fool", "-C", "a", "-w", "b", "--out", "c"], "give only --workdir/-w"),
        (["fool", "-m", "evolve"], "No such option"),
        (["fool-defence", "-k", "2"], "No such option"),
    ],
)
def test_grammar_usage_errors_exit_2(runner, args, says):
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert says in result.stderr, result.stderr


# ------------------------------------------------------------------------- --print-config
def _expected_config(name: str, options: dict):
    from realsys_cli.config import resolve_config

    if name == "train-classifier":
        from realsys_cli.classifier.recipes import resolve_train_config

        return resolve_train_config(config_file=None, options=options, set_items=None)
    if name == "train-gan":
        from realsys_cli.gan.recipes import resolve_gan_config

        return resolve_gan_config(config_file=None, options=options, set_items=None)
    if name == "predict-frames":
        from realsys_cli.frames.recipes import resolve_frames_config

        return resolve_frames_config(config_file=None, options=options, set_items=None)
    from realsys_cli.fool.config import FoolConfig

    return resolve_config(FoolConfig, options=options)


PRINTED = [
    ("train-classifier", ["--dataset", "shapes", "--steps", "7", "--epochs", "2", "--seed", "5",
                          "--bf16", "--set", "label_smoothing=0.1"],
     {"dataset": "shapes", "max_steps": 7, "num_epochs": 2, "seed": 5, "dtype": "bfloat16",
      "label_smoothing": 0.1}),
    ("train-gan", ["--steps", "30", "-e", "2", "--seed", "3", "--lr", "1e-4", "--set",
                   "width=8", "--judge", "runs/j"],
     {"max_steps": 30, "num_epochs": 2, "seed": 3, "learning_rate": 1e-4, "width": 8,
      "judge": "runs/j"}),
    ("predict-frames", ["--steps", "4", "--epochs", "3", "--set", "hidden_channels=8,16",
                        "--loss", "bce"],
     {"max_steps": 4, "num_epochs": 3, "hidden_channels": (8, 16), "loss": "bce"}),
    ("fool", ["--method", "perturb", "--attack-steps", "9", "-t", "3", "-t", "cat",
              "--data-dir", "pets"],
     {"method": "perturb", "pgd_steps": 9, "target_classes": ("3", "cat"), "data_dir": "pets"}),
]


@pytest.mark.parametrize(("name", "args", "options"), PRINTED, ids=[p[0] for p in PRINTED])
def test_print_config_is_toml_that_config_reads_back(runner, tmp_path, name, args, options):
    import dataclasses
    import tomllib

    from realsys_cli.config import config_from_dict

    expected = _expected_config(name, options)
    result = runner.invoke(app, [name, "--print-config", *args])
    assert result.exit_code == 0, result.output
    printed = tomllib.loads(result.stdout)
    as_toml = {k: list(v) if isinstance(v, tuple) else v
               for k, v in dataclasses.asdict(expected).items() if v is not None}
    assert printed == as_toml  # every field but the None ones (TOML has no null)
    assert config_from_dict(type(expected), printed) == expected
    assert list(tmp_path.iterdir()) == []  # no workdir, no runs/, no dataset prepared
    (tmp_path / "printed.toml").write_text(result.stdout)
    again = runner.invoke(app, [name, "--print-config", "--config", "printed.toml"])
    assert again.exit_code == 0, again.output
    reread = tomllib.loads(again.stdout)
    picked = {"train-classifier": "alexnet_shapes", "train-gan": "dcgan_digits",
              "predict-frames": "simvp_moving_digits"}
    if name in picked:  # the recipe field names the file the fields came from
        assert reread.pop("recipe") == "printed.toml" and printed.pop("recipe") == picked[name]
    assert reread == printed
    as_json = runner.invoke(app, [name, "--print-config", "--json", *args])
    assert json.loads(_one_line(as_json.stdout)) == json.loads(json.dumps(
        dataclasses.asdict(expected)))


def test_to_toml_writes_what_tomllib_reads():
    import tomllib

    from realsys_cli.cli.printing import to_toml

    data = {"plain": "digits/train=100", "quotes": 'a "b" \\ c', "lines": "x\ny\tz\r",
            "control": "\x01\x7f", "unicode": "żółw 🐢", "int": -3, "big": 10**18,
            "floats": [0.1, 2e-4, 1e-05, 1e16, -0.0, 3.0], "inf": float("inf"),
            "yes": True, "empty": [], "names": ("a", "b"), "none": None,
            "key with space": 1, "table": {"x": 1, "inner": {"y": "z"}}}
    text = to_toml(data, header="two\nlines")
    assert text.startswith("# two\n# lines\n")
    assert "# none = none" in text
    parsed = tomllib.loads(text)
    expected = {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()
                if v is not None}
    assert parsed == expected
    assert str(parsed["floats"][3]) == "1e+16" and parsed["floats"][4] == 0.0


def test_print_config_of_a_bad_option_is_the_usual_error(runner, tmp_path):
    result = runner.invoke(app, ["train-gan", "--print-config", "--set", "width=lots"])
    assert result.exit_code == 1 and result.stdout == ""
    assert "width must be an integer" in _one_line(result.stderr)


# --------------------------------------------------------------------- the README's commands
def _documented_commands() -> list[list[str]]:
    """Every `realsys ...` command line in README.md and docs/*.md, as arguments."""
    import re
    import shlex

    import typer.main

    root = Path(__file__).parents[1]
    names = set(typer.main.get_command(app).commands)
    found = []
    for path in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        text = path.read_text()
        spans = re.findall(r"`(realsys [^`]+)`", text)
        spans += re.findall(r"^[ \t]*(?:[^`\n]*\| )?(realsys [^`\n]+)$", text, re.MULTILINE)
        for span in spans:
            line = re.split(r" [|>] | # ", span)[0].strip()
            args = shlex.split(line)[1:]
            words = [a for a in args if not a.startswith("-")]
            if "..." in args or any("<" in a for a in args) or not args:
                continue
            if words and words[0] not in names:
                continue  # prose: "realsys ran at 0.55 of ..."
            found.append(args)
    return found


def test_the_documented_commands_parse():
    """Each command line of the docs names options that exist, with valid values, and none of
    the spellings kept only for the last release's command lines (nothing is run)."""
    import typer.main

    root = typer.main.get_command(app)
    ran = []

    def stand_in(command, path):
        hidden = {p.name: p.default for p in command.params if getattr(p, "hidden", False)}

        def check(**values):
            used = [k for k, default in hidden.items() if values[k] != default]
            ran.append((path, used))

        return check

    for path, command in _commands(root):
        if command.callback is not None and not hasattr(command, "commands"):
            command.callback = stand_in(command, path)
    commands = _documented_commands()
    assert len(commands) > 40
    for args in commands:
        ran.clear()
        root.main(list(args), prog_name="realsys", standalone_mode=False)
        assert ran == ([] if "--help" in args else [(ran[0][0], [])]), args


def test_square_brackets_print_as_they_are(runner, tmp_path):
    """Messages, paths and table cells are text, never Rich markup: `[/y]` cannot crash the
    error printer and `cat[a].png` keeps its brackets."""
    result = runner.invoke(app, ["-q", "train-classifier", "--set", "batch_size=[/y]"])
    assert result.exit_code == 1
    line = _one_line(result.stderr)
    assert line == "error: batch_size must be an integer, got '[/y]'"
    listed = runner.invoke(app, ["runs", "--dir", str(tmp_path / "[/none]")])
    assert listed.exit_code == 0 and "[/none]" in listed.stderr


def test_table_cells_keep_their_brackets(capsys):
    from realsys_cli import console

    console.print_rows([{"image": "cat[a].png", "label": "[x]"}], json_mode=False,
                       title="t[/x]", key="images")
    console.error("bad [/y] and [tf]")
    out, err = capsys.readouterr()
    assert "cat[a].png" in out and "[x]" in out and "t[/x]" in out
    assert "error: bad [/y] and [tf]" in err
