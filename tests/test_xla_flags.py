"""Each command sets the XLA flags measured best for what it computes (realsys_cli/xla_flags.py,
docs/speed.md): training flags where there is a backward pass, inference flags where the
network only runs forward; a user's own XLA_FLAGS and REALSYS_XLA_DEFAULTS=1 win."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from realsys_cli.xla_flags import GRADIENT_CPU_FLAGS, INFERENCE_CPU_FLAGS

# Run the command in a fresh interpreter (jax not yet imported), then print XLA_FLAGS.
PROBE = ("import os, sys; from typer.testing import CliRunner; from realsys_cli.cli import app; "
         "CliRunner().invoke(app, sys.argv[1:]); print(os.environ.get('XLA_FLAGS', ''))")


def _flags_after(args: list[str], **env_extra: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "REALSYS_XLA_DEFAULTS")}
    env.update(env_extra)
    done = subprocess.run([sys.executable, "-c", PROBE, *args], env=env, capture_output=True,
                          text=True, timeout=120)
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


@pytest.mark.parametrize(("args", "flags"), [
    (["evaluate", "-C", "no-such-run"], INFERENCE_CPU_FLAGS),
    (["classify", "-C", "no-such-run", "x.png"], INFERENCE_CPU_FLAGS),
    (["fool", "-C", "no-such-run", "--method", "evolve"], INFERENCE_CPU_FLAGS),
    (["fool", "-C", "no-such-run", "--method", "ascent"], GRADIENT_CPU_FLAGS),
    (["fool", "-C", "no-such-run", "--method", "perturb"], GRADIENT_CPU_FLAGS),
    (["train-classifier", "--set", "batch_size=0"], GRADIENT_CPU_FLAGS),
])
def test_each_command_sets_its_flags(args, flags):
    assert _flags_after(args) == " ".join(flags)


def test_the_user_s_flags_and_the_off_switch_win():
    assert _flags_after(["evaluate", "-C", "x"], XLA_FLAGS="--xla_cpu_experimental_ynn_fusion_"
                        "type=individual_dot") == "--xla_cpu_experimental_ynn_fusion_type=individual_dot"
    assert _flags_after(["evaluate", "-C", "x"], REALSYS_XLA_DEFAULTS="1") == ""
