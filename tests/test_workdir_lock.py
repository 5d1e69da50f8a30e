"""One run per workdir: a live owner refuses a second run in one line; a dead one's lock is
taken over; the same process may reopen its workdir."""

import json
import os
import subprocess
import sys

import pytest

from realsys_cli.classifier.config import ClassifierConfig
from realsys_cli.classifier.train import train_and_evaluate
from realsys_cli.errors import CheckpointError
from realsys_cli.training import workdir_lock

TINY = ClassifierConfig(dataset="digits/train=64,test=16", batch_size=16, num_epochs=1)


def _lock_for(workdir, pid):
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / ".lock").write_text(json.dumps({"pid": pid, "host": os.uname().nodename}))


def test_a_live_owner_refuses_a_second_run(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _lock_for(tmp_path / "w", sleeper.pid)
        with pytest.raises(CheckpointError) as info:
            train_and_evaluate(TINY, tmp_path / "w")
        message = str(info.value)
        assert f"is in use by another realsys run (pid {sleeper.pid}" in message
        assert "\n" not in message
        assert not (tmp_path / "w" / "config.json").exists()  # nothing read or written
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_dead_owners_lock_is_taken_over_and_released_at_the_end(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    _lock_for(tmp_path / "w", int(dead.stdout))  # what kill -9 leaves
    result = train_and_evaluate(TINY, tmp_path / "w")
    assert result["steps"] == 4
    assert not (tmp_path / "w" / ".lock").exists()


def test_the_same_process_may_reopen_its_workdir(tmp_path):
    workdir_lock.acquire(tmp_path / "w")
    workdir_lock.acquire(tmp_path / "w")  # a resumed run in the same session
    assert json.loads((tmp_path / "w" / ".lock").read_text())["pid"] == os.getpid()
    workdir_lock.release(tmp_path / "w")
    assert not (tmp_path / "w" / ".lock").exists()
