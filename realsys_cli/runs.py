"""`realsys runs`: the runs under a runs directory, one row each, read from their files alone.

A run is a directory with a `config.json`. Its command is told by the config's own fields, its
status by `status.json` (training/run_status.py; for runs older than that file: result.json
means finished, a checkpoint means interrupted), its headline metric by `result.json`, or while
it trains by the last evaluation in `metrics.jsonl`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from realsys_cli.training.run_status import RESULT_FILE, read_status

# (command, the config keys only its config has, the model when the config does not name one)
_COMMANDS = (
    ("train-gan", ("latent_dim",), "dcgan"),
    ("predict-frames", ("hidden_channels", "output_frames"), "convlstm"),
    ("train-classifier", ("model", "dataset", "num_epochs"), ""),
)
# The headline metric of each command: (result.json key, metrics.jsonl key, shown as)
_HEADLINE = {
    "train-classifier": (("eval_accuracy", "test_accuracy"), "eval_accuracy", "accuracy"),
    "train-gan": (("fid",), "eval_fid", "fid"),
    "predict-frames": (("mean_mse",), "eval_mse", "mse"),
}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _last_eval(workdir: Path, key: str) -> tuple[int | None, float | None]:
    """The last step logged, and the last value of `key`, from metrics.jsonl."""
    step, value = None, None
    try:
        lines = (workdir / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return None, None
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:  # a line cut short by a kill
            continue
        step = record.get("step", step)
        value = record.get(key, value)
    return step, value


def describe_run(workdir: Path) -> dict[str, Any] | None:
    config = _read_json(workdir / "config.json")
    if not isinstance(config, dict):
        return None
    command, model = "unknown", ""
    for name, markers, default_model in _COMMANDS:
        if all(k in config for k in markers):
            command, model = name, default_model
            break
    model = str(config.get("model") or model)
    result = _read_json(workdir / RESULT_FILE)
    result = result if isinstance(result, dict) else None
    status = read_status(workdir)
    result_keys, log_key, shown = _HEADLINE.get(command, ((), "", ""))
    logged_step, logged_value = _last_eval(workdir, log_key)
    if status is not None:
        state, step, error = status["status"], status.get("step"), status.get("error")
    else:  # a run from before status.json
        has_checkpoint = any((workdir / "checkpoints").glob("[0-9]*"))
        state = "finished" if result else ("interrupted" if has_checkpoint else "new")
        step, error = (result or {}).get("steps", logged_step), None
    value = next((result[k] for k in result_keys if result and k in result), None)
    if value is None or state != "finished":
        value = logged_value
    updated = max((p.stat().st_mtime for p in workdir.iterdir() if p.is_file()),
                  default=workdir.stat().st_mtime)
    return {
        "run": workdir.name,
        "command": command,
        "dataset": config.get("dataset", ""),
        "model": model,
        "status": state,
        "step": step,
        "metric": f"{shown} {value:.4g}" if isinstance(value, (int, float)) else None,
        "updated": time.strftime("%Y-%m-%d %H:%M", time.localtime(updated)),
        **({"error": error} if error else {}),
        "path": str(workdir),
    }


def list_runs(root: str | os.PathLike) -> list[dict[str, Any]]:
    """Every run directly under `root`, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    rows = [row for d in root.iterdir() if d.is_dir() and (row := describe_run(d))]
    return sorted(rows, key=lambda r: (r["updated"], r["run"]))
