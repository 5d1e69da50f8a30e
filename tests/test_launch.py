"""The `realsys` launcher: glibc malloc tunables, set by executing the command line once more."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from realsys_cli import launch

TUNED = ":".join(launch.MALLOC_TUNABLES)


def test_the_tunables_are_added_once():
    env = launch.tuned_environment({"PATH": "/bin"})
    assert env["GLIBC_TUNABLES"] == TUNED
    assert env["PATH"] == "/bin"
    assert launch.tuned_environment(env) is None  # the relaunched process does not go again


def test_the_users_tunables_win_and_defaults_turn_it_off():
    env = launch.tuned_environment({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0:glibc.cpu.x86_ibt=on"})
    assert env["GLIBC_TUNABLES"].split(":") == [
        "glibc.malloc.hugetlb=0", "glibc.cpu.x86_ibt=on", *launch.MALLOC_TUNABLES[1:]]
    assert launch.tuned_environment({"GLIBC_TUNABLES": TUNED}) is None  # all set already
    assert launch.tuned_environment({"REALSYS_MALLOC_DEFAULTS": "1"}) is None
    assert launch.tuned_environment({"REALSYS_MALLOC_DEFAULTS": "0"}) is not None


PROBE = """
import os, sys
print("start", os.getpid(), os.environ.get("GLIBC_TUNABLES", ""), sep="|", flush=True)
from realsys_cli.launch import relaunch_with_tuned_malloc
relaunch_with_tuned_malloc()
print("run", os.getpid(), os.environ.get("GLIBC_TUNABLES", ""), sys.argv[1:], sep="|", flush=True)
"""


def _probe(extra_env: dict[str, str]) -> list[list[str]]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("GLIBC_TUNABLES", "REALSYS_MALLOC_DEFAULTS", launch._RELAUNCHED)}
    out = subprocess.run([sys.executable, "-c", PROBE, "a b", "--c"], env=dict(env, **extra_env),
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return [line.split("|") for line in out.splitlines()]


@pytest.mark.skipif(sys.platform != "linux" or platform.libc_ver()[0] != "glibc",
                    reason="glibc only")
def test_the_command_runs_again_in_the_same_process_with_the_tunables():
    first, second, run = _probe({})
    assert first[0] == second[0] == "start" and run[0] == "run"
    assert first[1] == second[1] == run[1]  # one pid: a signal sent to it reaches the run
    assert (first[2], second[2], run[2]) == ("", TUNED, TUNED)
    assert run[3] == "['a b', '--c']"  # the arguments, unchanged
    start, run = _probe({"REALSYS_MALLOC_DEFAULTS": "1"})  # no tunables, no second start
    assert (start[0], start[2], run[0], run[2]) == ("start", "", "run", "")
