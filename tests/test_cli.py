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
    assert no_args.exit_code in (0, 2)  # no_args_is_help: the same list
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
