"""Run status and `realsys runs`: what the loop writes, and how a listing reads it back."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from realsys_cli.cli import app
from realsys_cli.runs import list_runs
from realsys_cli.training import run_status


def _status(workdir):
    return json.loads((workdir / "status.json").read_text())


def test_tracked_writes_every_state(tmp_path):
    step = 0
    with run_status.tracked(tmp_path, enabled=True, step=lambda: step, total_steps=9):
        assert _status(tmp_path)["status"] == "running"
        step = 9
    assert _status(tmp_path) | {"pid": 0, "time": 0, "host": ""} == {
        "status": "trained", "step": 9, "total_steps": 9, "pid": 0, "time": 0, "host": ""}
    with pytest.raises(KeyboardInterrupt):
        with run_status.tracked(tmp_path, enabled=True, step=lambda: 4):
            raise KeyboardInterrupt
    assert _status(tmp_path)["status"] == "interrupted" and _status(tmp_path)["step"] == 4
    with pytest.raises(ValueError):
        with run_status.tracked(tmp_path, enabled=True, step=lambda: 5):
            raise ValueError("loss became nan")
    assert _status(tmp_path)["error"] == "ValueError: loss became nan"
    other = tmp_path / "other"
    with run_status.tracked(other, enabled=False, step=lambda: 1):  # not process 0
        pass
    assert not other.exists()


def test_a_killed_run_reads_as_interrupted(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    run_status.write_status(tmp_path, "running", step=3)
    data = _status(tmp_path)
    data["pid"] = int(dead.stdout)  # a process that has exited: what kill -9 leaves
    (tmp_path / "status.json").write_text(json.dumps(data))
    status = run_status.read_status(tmp_path)
    assert status["status"] == "interrupted" and status["killed"] and status["step"] == 3
    run_status.write_status(tmp_path, "running", step=3)  # this (live) process
    assert run_status.read_status(tmp_path)["status"] == "running"


def _run(root, name, config, *, result=None, status=None, metrics=(), checkpoint=False):
    workdir = root / name
    workdir.mkdir(parents=True)
    (workdir / "config.json").write_text(json.dumps(config))
    if result is not None:
        (workdir / "result.json").write_text(json.dumps(result))
    if status is not None:
        run_status.write_status(workdir, status[0], step=status[1], **status[2])
    if metrics:
        (workdir / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics)
                                               + '{"step": 9')  # cut by a kill
    if checkpoint:
        (workdir / "checkpoints" / "5").mkdir(parents=True)
    return workdir


def _runs_dir(root):
    _run(root, "a-classifier", {"model": "lenet", "dataset": "digits", "num_epochs": 3},
         result={"test_accuracy": 0.99841, "steps": 1404}, status=("finished", 1404, {}))
    _run(root, "b-gan-old", {"latent_dim": 100, "dataset": "digits"}, checkpoint=True,
         metrics=[{"step": 5, "eval_fid": 40.0}])
    _run(root, "c-frames", {"hidden_channels": [8], "output_frames": 10, "dataset": "mv"},
         status=("failed", 40, {"error": "TrainingDivergedError: loss became nan"}),
         metrics=[{"step": 20, "eval_mse": 150.0}, {"step": 40, "loss": 1.0}])
    (root / "not-a-run").mkdir()
    (root / "cat[a]").mkdir()
    (root / "cat[a]" / "config.json").write_text("{broken")


def test_list_runs(tmp_path):
    _runs_dir(tmp_path)
    rows = {r["run"]: r for r in list_runs(tmp_path)}
    assert set(rows) == {"a-classifier", "b-gan-old", "c-frames"}
    a, b, c = rows["a-classifier"], rows["b-gan-old"], rows["c-frames"]
    assert (a["command"], a["model"], a["status"], a["step"], a["metric"]) == (
        "train-classifier", "lenet", "finished", 1404, "accuracy 0.9984")
    assert (b["command"], b["model"], b["status"], b["step"], b["metric"]) == (
        "train-gan", "dcgan", "interrupted", 5, "fid 40")
    assert (c["command"], c["status"], c["step"], c["metric"]) == (
        "predict-frames", "failed", 40, "mse 150")
    assert c["error"] == "TrainingDivergedError: loss became nan"
    assert list_runs(tmp_path / "nowhere") == []


def test_runs_command(tmp_path):
    _runs_dir(tmp_path / "runs")
    result = CliRunner().invoke(app, ["runs", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["runs"]
    assert [r["status"] for r in rows if r["run"] == "c-frames"] == ["failed"]
    table = CliRunner().invoke(app, ["runs", "--dir", str(tmp_path / "runs")])
    assert table.exit_code == 0 and "mse 150" in table.stdout and "failed" in table.stdout
    assert "error" in json.loads(result.stdout)["runs"][2]
    empty = CliRunner().invoke(app, ["runs", "--dir", str(tmp_path / "none")])
    assert empty.exit_code == 0 and empty.stdout == "" and "no runs in" in empty.stderr
