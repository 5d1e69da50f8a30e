"""XLA flags that make training faster on CPU, set before jax is first imported.

Measured against the PyTorch peer (bench/peer_torch.py, `make bench`): sending
convolutions to Eigen instead of YNNPACK and preferring 512-bit vectors took the AlexNet-style
training step from about 83 to 114 images/s on a 2-core CPU. They slow pure inference a little,
so only training commands ask for them; a user's own XLA_FLAGS always win, and
REALSYS_XLA_DEFAULTS=1 turns them off.
"""

from __future__ import annotations

import os
import sys

TRAINING_CPU_FLAGS = (
    "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",
    "--xla_cpu_prefer_vector_width=512",
)


def use_training_flags() -> bool:
    """Add the training flags to XLA_FLAGS; False when it is too late (jax already imported)."""
    if "jax" in sys.modules or os.environ.get("REALSYS_XLA_DEFAULTS", "") not in ("", "0"):
        return False
    current = os.environ.get("XLA_FLAGS", "")
    missing = [f for f in TRAINING_CPU_FLAGS if f.split("=")[0] not in current]
    os.environ["XLA_FLAGS"] = " ".join([current, *missing]).strip()
    return True
