"""Bad input to any command: one line on stderr, exit 1 (usage errors: 2), no traceback, nothing
on stdout even with --json, and nothing left on disk (issue 13: "nothing lost, nothing cryptic").

One table of cases over every command. Each must fail before any training: a case that trains
is a bug in the validation, and the test's time (a few seconds for the whole table) shows it.
The runs the cases read are made once per module: one tiny trained classifier, and a GAN and a
frames run of which only config.json exists (the loaders refuse a run of the wrong command by
its config, before any checkpoint is read).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realsys_cli.cli import app

TINY = "digits/train=100,test=20"
MOVING = "moving-digits/train=4,test=2,frames=6"


@pytest.fixture(autouse=True)
def _restore_logging():
    """The app's callback configures the "realsys" logger; undo it for other tests' caplog."""
    logger, absl = logging.getLogger("realsys"), logging.getLogger("absl")
    saved = (list(logger.handlers), logger.level, logger.propagate, absl.level)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]
    absl.setLevel(saved[3])


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, str]:
    """The runs and data the cases name, as placeholders: {cls}, {gan}, {frames}, {tfds}."""
    from realsys_cli.classifier.config import ClassifierConfig
    from realsys_cli.classifier.train import train_and_evaluate
    from realsys_cli.config import write_config
    from realsys_cli.data.dataset import open_dataset
    from realsys_cli.frames.config import FramesConfig
    from realsys_cli.gan.config import GanConfig

    root = tmp_path_factory.mktemp("made")
    tfds = root / "tfds"
    train_and_evaluate(ClassifierConfig(dataset=TINY, tfds_data_dir=str(tfds), max_steps=1,
                                        batch_size=20, warmup_steps=0, log_every_steps=1),
                       root / "cls")
    write_config(GanConfig(dataset=TINY), root / "gan")
    write_config(FramesConfig(), root / "frames")
    _image_folder(root / "letters", ("a", "b"))  # two classes the classifier does not know
    open_dataset("letters", data_dir=str(root / "letters"), tfds_dir=str(tfds))
    open_dataset(MOVING, tfds_dir=str(tfds))
    return {"cls": str(root / "cls"), "gan": str(root / "gan"), "frames": str(root / "frames"),
            "tfds": str(tfds), "letters": str(root / "letters"), "root": str(root)}


def _image_folder(root: Path, classes: tuple[str, ...]) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in classes:
            (root / split / name).mkdir(parents=True)
            for i in range(2):
                pixels = rng.integers(0, 255, (28, 28), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")


def _materials(here: Path) -> None:
    """Bad files the cases point at, in the test's own directory (the current one)."""
    (here / "notes.txt").write_text("a regular file, so nothing can be created under it\n")
    (here / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 8)
    (here / "empty").mkdir()
    for split in ("train", "test"):
        for name in ("a", "b"):
            (here / "noimages" / split / name).mkdir(parents=True)
            (here / "noimages" / split / name / "readme.txt").write_text("no images here\n")
    (here / "garbled.toml").write_text("batch_size = = 3\n[[\n")
    (here / "unknown_key.toml").write_text("no_such_key = 1\n")
    (here / "wrong_type.toml").write_text('batch_size = "many"\n')


USAGE, BAD = 2, 1
TC, DATA = "train-classifier", ["-d", TINY, "--tfds-data-dir", "{tfds}"]
CASES = [
    # ----------------------------------------------------------------------- train-classifier
    ("tc-unknown-set-key", [TC, "--set", "no_such_key=1"], BAD),
    ("tc-set-wrong-type", [TC, "--set", "batch_size=abc"], BAD),
    ("tc-set-without-equals", [TC, "--set", "batch_size"], BAD),
    ("tc-set-brackets", [TC, "--set", "batch_size=[/y]"], BAD),
    ("tc-set-zero-batch", [TC, "--set", "batch_size=0"], BAD),
    ("tc-set-negative-steps", [TC, "--set", "max_steps=-5"], BAD),
    ("tc-set-huge-steps", [TC, "--set", "max_steps=1e30"], BAD),
    ("tc-lr-nan", [TC, "--lr", "nan"], BAD),
    ("tc-lr-inf", [TC, "--lr", "inf"], BAD),
    ("tc-lr-negative", [TC, "--lr", "-0.1"], BAD),
    ("tc-lr-not-a-number", [TC, "--lr", "fast"], USAGE),
    ("tc-seed-negative", [TC, "--seed", "-1"], USAGE),
    ("tc-seed-too-big", [TC, "--seed", str(2**40)], USAGE),
    ("tc-set-seed-negative", [TC, "--set", "seed=-1"], BAD),
    ("tc-steps-zero", [TC, "--steps", "0"], USAGE),
    ("tc-batch-size-zero", [TC, "--batch-size", "0"], USAGE),
    ("tc-unknown-option", [TC, "--bogus"], USAGE),
    ("tc-set-unknown-optimizer", [TC, "--set", "optimizer=nope"], BAD),
    ("tc-set-dtype-float64", [TC, "--set", "dtype=float64"], BAD),
    ("tc-set-label-smoothing", [TC, "--set", "label_smoothing=1.5"], BAD),
    ("tc-set-minutes-nan", [TC, "--set", "checkpoint_every_minutes=nan"], BAD),
    ("tc-config-missing", [TC, "--config", "missing.toml"], BAD),
    ("tc-config-garbled", [TC, "--config", "garbled.toml"], BAD),
    ("tc-config-unknown-name", [TC, "--config", "no_such_recipe"], BAD),
    ("tc-config-unknown-key", [TC, "--config", "unknown_key.toml"], BAD),
    ("tc-config-wrong-type", [TC, "--config", "wrong_type.toml"], BAD),
    ("tc-unknown-dataset", [TC, "-d", "no_such_dataset"], BAD),
    ("tc-not-prepared-no-download", [TC, "-d", "mnist", "--no-download"], BAD),
    ("tc-bad-builtin-param", [TC, "-d", "shapes/size=9"], BAD),
    ("tc-data-dir-missing", [TC, "--data-dir", "no_such_folder"], BAD),
    ("tc-data-dir-no-images", [TC, "--data-dir", "noimages"], BAD),
    ("tc-workdir-under-a-file", [TC, *DATA, "-w", "notes.txt/run"], BAD),
    ("tc-batch-larger-than-data", [TC, *DATA, "-b", "512", "-w", "w"], BAD),
    ("tc-video-dataset", [TC, "-d", MOVING, "--tfds-data-dir", "{tfds}", "-w", "w"], BAD),
    ("tc-num-processes-zero", [TC, "--num-processes", "0"], USAGE),
    # ------------------------------------------------------------------------------- evaluate
    ("evaluate-no-run", ["evaluate"], USAGE),
    ("evaluate-missing-run", ["evaluate", "-C", "no_such_run"], BAD),
    ("evaluate-empty-dir", ["evaluate", "-C", "empty"], BAD),
    ("evaluate-gan-run", ["evaluate", "-C", "{gan}"], BAD),
    ("evaluate-frames-run", ["evaluate", "-C", "{frames}"], BAD),
    ("evaluate-unknown-dataset", ["evaluate", "-C", "{cls}", "-d", "no_such_dataset"], BAD),
    ("evaluate-other-classes", ["evaluate", "-C", "{cls}", "-d", "letters", "--data-dir",
                                "{letters}", "--tfds-data-dir", "{tfds}"], BAD),
    ("evaluate-unknown-split", ["evaluate", "-C", "{cls}", "--split", "no_such_split"], BAD),
    ("evaluate-unknown-option", ["evaluate", "-C", "{cls}", "--bogus"], USAGE),
    # ------------------------------------------------------------------------------- classify
    ("classify-missing-image", ["classify", "-C", "{cls}", "missing.png"], BAD),
    ("classify-corrupt-image", ["classify", "-C", "{cls}", "corrupt.png"], BAD),
    ("classify-text-file", ["classify", "-C", "{cls}", "notes.txt"], BAD),
    ("classify-a-directory", ["classify", "-C", "{cls}", "empty"], BAD),
    ("classify-missing-run", ["classify", "-C", "no_such_run", "corrupt.png"], BAD),
    ("classify-gan-run", ["classify", "-C", "{gan}", "corrupt.png"], BAD),
    ("classify-top-zero", ["classify", "-C", "{cls}", "--top", "0", "corrupt.png"], USAGE),
    # ----------------------------------------------------------------------------------- fool
    ("fool-class-out-of-range", ["fool", "-C", "{cls}", "--target-class", "99"], BAD),
    ("fool-unknown-class-name", ["fool", "-C", "{cls}", "-t", "parachute"], BAD),
    ("fool-class-brackets", ["fool", "-C", "{cls}", "-t", "[/x]"], BAD),
    ("fool-missing-run", ["fool", "-C", "no_such_run"], BAD),
    ("fool-gan-run", ["fool", "-C", "{gan}"], BAD),
    ("fool-no-run-in-runs", ["fool"], BAD),
    ("fool-out-under-a-file", ["fool", "-C", "{cls}", "-t", "1", "-w", "notes.txt/out"], BAD),
    ("fool-writes-into-classifier", ["fool", "-C", "{cls}", "-w", "{cls}"], BAD),
    ("fool-unknown-method", ["fool", "-C", "{cls}", "--method", "nope"], BAD),
    ("fool-confidence-above-1", ["fool", "-C", "{cls}", "--confidence", "1.5"], BAD),
    ("fool-epsilon-nan", ["fool", "-C", "{cls}", "--method", "perturb", "--epsilon", "nan"],
     BAD),
    ("fool-seed-negative", ["fool", "-C", "{cls}", "--seed", "-1"], USAGE),
    ("fool-both-class-options", ["fool", "-C", "{cls}", "--all-classes", "-t", "1"], BAD),
    ("fool-unknown-set-key", ["fool", "-C", "{cls}", "--set", "no_such_key=1"], BAD),
    ("fool-old-steps", ["fool", "-C", "{cls}", "--steps", "5"], USAGE),
    # --------------------------------------------------------------------------- fool-defence
    ("defence-missing-run", ["fool-defence", "-C", "no_such_run"], BAD),
    ("defence-zero-rounds-set", ["fool-defence", "-C", "{cls}", "--set", "rounds=0"], BAD),
    ("defence-fraction-nan", ["fool-defence", "-C", "{cls}", "--set",
                              "fooling_fraction=nan"], BAD),
    ("defence-zero-rounds", ["fool-defence", "-C", "{cls}", "--rounds", "0"], USAGE),
    ("defence-out-under-a-file", ["fool-defence", "-C", "{cls}", "-w", "notes.txt/d"], BAD),
    # ------------------------------------------------------------------------------ train-gan
    ("gan-judge-missing", ["train-gan", *DATA, "-b", "50", "--judge", "no_such_run", "-w",
                           "g"], BAD),
    ("gan-judge-of-another-kind", ["train-gan", *DATA, "-b", "50", "--judge", "{gan}", "-w",
                                   "g"], BAD),
    ("gan-set-negative-steps", ["train-gan", "--set", "max_steps=-5"], BAD),
    ("gan-image-size", ["train-gan", "--set", "image_size=30"], BAD),
    ("gan-lr-nan", ["train-gan", "--lr", "nan"], BAD),
    ("gan-seed-negative", ["train-gan", "--seed", "-1"], USAGE),
    ("gan-unknown-latent", ["train-gan", "--latent", "nope"], BAD),
    ("gan-beta1-one", ["train-gan", "--set", "beta1=1"], BAD),
    ("gan-workdir-under-a-file", ["train-gan", *DATA, "-w", "notes.txt/g"], BAD),
    ("gan-batch-larger-than-data", ["train-gan", *DATA, "-b", "512", "--judge", "{cls}",
                                    "-w", "g"], BAD),
    # --------------------------------------------------------------------------------- sample
    ("sample-no-run", ["sample"], USAGE),
    ("sample-missing-run", ["sample", "--from", "no_such_run"], BAD),
    ("sample-classifier-run", ["sample", "--from", "{cls}"], BAD),
    ("sample-no-checkpoint", ["sample", "--from", "{gan}"], BAD),
    ("sample-out-txt", ["sample", "--from", "{gan}", "--out", "grid.txt"], BAD),
    ("sample-walk-out-txt", ["sample", "--from", "{gan}", "--interpolate", "--out", "w.txt"],
     BAD),
    ("sample-out-under-a-file", ["sample", "--from", "{gan}", "--out", "notes.txt/g.png"], BAD),
    ("sample-seed-negative", ["sample", "--from", "{gan}", "--seed", "-1"], USAGE),
    ("sample-count-zero", ["sample", "--from", "{gan}", "--count", "0"], USAGE),
    # ------------------------------------------------------------------------- predict-frames
    ("frames-hidden-zero", ["predict-frames", "--set", "hidden_channels=0"], BAD),
    ("frames-kernel-even", ["predict-frames", "--set", "kernel_size=4"], BAD),
    ("frames-lr-nan", ["predict-frames", "--lr", "nan"], BAD),
    ("frames-seed-negative", ["predict-frames", "--seed", "-1"], USAGE),
    ("frames-unknown-loss", ["predict-frames", "--loss", "nope"], USAGE),
    ("frames-unknown-dataset", ["predict-frames", "-d", "no_such_dataset", "-w", "f"], BAD),
    ("frames-image-dataset", ["predict-frames", *DATA, "-w", "f"], BAD),
    ("frames-rollout-no-workdir", ["predict-frames", "--rollout", "5"], BAD),
    ("frames-rollout-missing-run", ["predict-frames", "--rollout", "5", "-w", "nope"], BAD),
    ("frames-rollout-classifier", ["predict-frames", "--rollout", "5", "-w", "{cls}"], BAD),
    ("frames-out-without-rollout", ["predict-frames", "--out", "movie.gif"], BAD),
    ("frames-movie-not-gif", ["predict-frames", "--rollout", "5", "-w", "{frames}", "--out",
                              "movie.txt"], BAD),
    # ------------------------------------------------------------------------ runs, datasets
    ("runs-dir-is-a-file", ["runs", "--dir", "notes.txt"], BAD),
    ("runs-unknown-option", ["runs", "--bogus"], USAGE),
    ("prepare-unknown", ["datasets", "prepare", "no_such_dataset"], BAD),
    ("prepare-no-download", ["datasets", "prepare", "mnist", "--no-download"], BAD),
    ("prepare-bad-param", ["datasets", "prepare", "digits/train=abc"], BAD),
    ("prepare-no-name", ["datasets", "prepare"], USAGE),
    ("preview-out-txt", ["datasets", "preview", "digits", "--out", "x.txt"], BAD),
    ("preview-out-under-a-file", ["datasets", "preview", "digits", "--out", "notes.txt/x.png"],
     BAD),
    ("preview-seed-negative", ["datasets", "preview", "digits", "--out", "x.png", "--seed",
                               "-1"], USAGE),
    ("preview-unknown", ["datasets", "preview", "no_such_dataset", "--out", "x.png"], BAD),
    ("preview-no-images", ["datasets", "preview", "x", "--data-dir", "noimages", "--out",
                           "x.png"], BAD),
    ("preview-unknown-split", ["datasets", "preview", TINY, "--tfds-data-dir", "{tfds}",
                               "--split", "no_such_split", "--out", "x.png"], BAD),
    ("list-tfds-dir-is-a-file", ["datasets", "list", "--tfds-data-dir", "notes.txt"], BAD),
]


def _files(root: Path) -> set[str]:
    """Every path under `root`, but the data and runs directories conftest names, while empty."""
    found = {str(p.relative_to(root)) for p in root.rglob("*")}
    for name in ("tfds", "runs"):
        if (root / name).is_dir() and not any((root / name).iterdir()):
            found.discard(name)
    return found


def assert_one_line_error(args: list[str], code: int, roots: list[Path]) -> None:
    """`realsys ARGS` exits `code` with one `error: ` line on stderr, no traceback, nothing on
    stdout, and no file added or removed under any of `roots`."""
    before = [_files(root) for root in roots]
    result = CliRunner().invoke(app, args)
    shown = f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert result.exit_code == code, shown
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), shown
    assert "Traceback" not in result.stderr and 'File "' not in result.stderr, shown
    assert "internal error" not in result.stderr, shown
    assert result.stdout == "", shown
    assert [_files(root) for root in roots] == before, shown


@pytest.mark.parametrize(("args", "code"), [pytest.param(a, c, id=i) for i, a, c in CASES])
def test_a_bad_input_is_one_line(args, code, made, tmp_path):
    _materials(tmp_path)
    args = [a.format(**made) for a in args] + ["--json"]
    assert_one_line_error(args, code, [tmp_path, Path(made["root"])])


def test_the_table_covers_every_command():
    commands = {args[0] if args[0] != "datasets" else " ".join(args[:2]) for _, args, _ in CASES}
    assert commands == {"train-classifier", "evaluate", "classify", "fool", "fool-defence",
                        "train-gan", "sample", "predict-frames", "runs", "datasets list",
                        "datasets prepare", "datasets preview"}
    assert len(CASES) >= 60


def test_a_run_that_fails_before_its_first_save_leaves_no_workdir(tmp_path):
    """A diverged first epoch (or bad data found late): the folder the run made is taken back,
    runs/ with it when the run made that too; what holds a checkpoint, or existed, is kept."""
    from realsys_cli.errors import TrainingDivergedError
    from realsys_cli.outputs import discard_if_nothing_saved

    def fail(workdir: Path, *saved: str) -> None:
        with pytest.raises(TrainingDivergedError), discard_if_nothing_saved(workdir):
            for name in ("config.json", "status.json", "metrics.jsonl", ".lock", *saved):
                (workdir / name).parent.mkdir(parents=True, exist_ok=True)
                (workdir / name).write_text("{}")
            (workdir / "checkpoints").mkdir(exist_ok=True)
            raise TrainingDivergedError("loss became nan by step 1")

    fail(tmp_path / "runs" / "a")
    assert not (tmp_path / "runs").exists()
    fail(tmp_path / "b", "judge/checkpoints/1/state")  # the judge train-gan trained first
    assert (tmp_path / "b" / "judge" / "checkpoints" / "1" / "state").is_file()
    (tmp_path / "c").mkdir()
    fail(tmp_path / "c")  # a run resumed (or a folder given): never removed
    assert (tmp_path / "c" / "config.json").is_file()


def test_log_lines_do_not_wrap_when_stderr_is_no_terminal(tmp_path):
    long_dir = tmp_path / ("a-long-folder-name-" * 5) / "tfds"
    result = CliRunner().invoke(app, ["datasets", "prepare", TINY, "--tfds-data-dir",
                                      str(long_dir), "--json"])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.stderr.splitlines() if "Preparing built-in dataset" in x)
    assert line.startswith("INFO ") and str(long_dir) in line and line == line.rstrip()


def test_lines_before_the_input_is_checked_wait_for_the_first_work(capsys):
    """The recipe and workdir lines: dropped when a bad input is found before any work (its
    error is the one line), printed, in order, before the first line of work."""
    from realsys_cli import console

    console.setup_logging(quiet=False, verbose=False)
    log = logging.getLogger("realsys")
    with console.held_back():
        log.info("recipe: lenet_digits")
        console.note("workdir: w")
    console.error("unknown dataset 'x'")
    assert capsys.readouterr().err == "error: unknown dataset 'x'\n"
    with console.held_back():
        log.info("recipe: lenet_digits")
        console.note("workdir: w")
    log.info("training 10 steps")
    assert capsys.readouterr().err.splitlines() == [
        "INFO     recipe: lenet_digits", "workdir: w", "INFO     training 10 steps"]


def _configs():
    from realsys_cli.classifier.config import ClassifierConfig
    from realsys_cli.fool.config import DefenceConfig, FoolConfig
    from realsys_cli.frames.config import FramesConfig
    from realsys_cli.gan.config import GanConfig

    return [ClassifierConfig, GanConfig, FramesConfig, FoolConfig, DefenceConfig]


@pytest.mark.parametrize("cls", _configs(), ids=lambda c: c.__name__)
def test_every_config_refuses_what_no_field_can_mean(cls):
    """Built in Python as from the command line: NaN, infinity, a negative count, a count past
    int32 and a seed past 32 bits are refused by the dataclass itself."""
    import dataclasses
    import math

    fields = dataclasses.fields(cls)
    number = next(f.name for f in fields if f.type == "float")
    count = next(f.name for f in fields if f.type == "int")
    for name, bad in ((number, math.nan), (number, math.inf), (count, -1), (count, 2**31)):
        with pytest.raises(ValueError, match=name):
            cls(**{name: bad})
    if "seed" in {f.name for f in fields}:
        with pytest.raises(ValueError, match="seed must be between 0 and 4294967295"):
            cls(seed=2**32)
        assert cls(seed=2**32 - 1).seed == 2**32 - 1
