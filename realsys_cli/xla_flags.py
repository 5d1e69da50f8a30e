"""XLA flags that make realsys faster on CPU, set before jax is first imported.

Measured against the PyTorch peer (bench/peer_torch.py, `make bench --jax-flags both`) and
flag by flag (docs/speed.md has the probe tables and the commands):

  * anything with a backward pass (the three trainers, fool's gradient methods, fool-defence):
    convolutions to Eigen instead of YNNPACK, 512-bit vectors. The classifier's training step
    about +30% over XLA's defaults, fool's ascent step +5%;
  * inference only (evaluate, classify, fool's evolution): every YNNPACK fusion off. The
    classifier's forward pass +25% over XLA's defaults (the training flags give it +4%).

A user's own XLA_FLAGS always win, and REALSYS_XLA_DEFAULTS=1 turns both off.
"""

from __future__ import annotations

import os
import sys

GRADIENT_CPU_FLAGS = (
    "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",
    "--xla_cpu_prefer_vector_width=512",
)
INFERENCE_CPU_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=",)

FLAG_SETS = {"training": GRADIENT_CPU_FLAGS, "inference": INFERENCE_CPU_FLAGS, "default": ()}


def _use(flags: tuple[str, ...]) -> bool:
    """Add `flags` to XLA_FLAGS; False when it is too late (jax already imported) or off."""
    if "jax" in sys.modules or os.environ.get("REALSYS_XLA_DEFAULTS", "") not in ("", "0"):
        return False
    current = os.environ.get("XLA_FLAGS", "")
    missing = [f for f in flags if f.split("=")[0] not in current]
    os.environ["XLA_FLAGS"] = " ".join([current, *missing]).strip()
    return True


def use_training_flags() -> bool:
    """For commands that differentiate: the trainers, fool, fool-defence."""
    return _use(GRADIENT_CPU_FLAGS)


def use_inference_flags() -> bool:
    """For commands that only run the network forward: evaluate, classify."""
    return _use(INFERENCE_CPU_FLAGS)
