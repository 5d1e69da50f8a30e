"""`realsys predict-frames`'s config: every field `--set` can change, with its unit in its name.

The defaults are the recipe measured in docs/frames.md (configs/convlstm_moving_digits.toml):
the Moving MNIST protocol (10 frames in, 10 out) on the built-in moving digits.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from realsys_cli.config import check_fields
from realsys_cli.training.optim import OPTIMIZERS, SCHEDULES


@dataclasses.dataclass(frozen=True)
class FramesConfig:
    # --- data
    dataset: str = "moving-digits"  # a video dataset with a train split (built-in moving-digits)
    tfds_data_dir: str | None = None
    eval_dataset: str = ""  # "" = the dataset's own test split; or e.g. moving_mnist (TFDS)
    input_frames: int = 10  # observed frames fed to the encoder
    output_frames: int = 10  # frames predicted and scored (the training horizon)
    eval_limit: int = 0  # evaluate on the first N test sequences only; 0 = all
    # --- model (Shi et al. 2015 encoder-forecaster; OpenSTL's patching)
    hidden_channels: tuple[int, ...] = (32, 32)  # ConvLSTM layers, encoder and forecaster each
    kernel_size: int = 5  # of every ConvLSTM convolution, on the patched grid (5x5 cells = 20 px)
    patch_size: int = 4  # 64x64x1 frames -> 16x16x16 before the cells
    shared_weights: bool = False  # forecaster = encoder (one ConvLSTM, OpenSTL's form)
    # --- losses
    loss: Literal["mse", "bce"] = "mse"  # per-pixel reconstruction loss
    adversarial: bool = False  # add Mathieu et al.'s frame discriminator + gradient difference
    reconstruction_weight: float = 1.0  # lambda_p (Mathieu et al.: 1)
    observed_loss_weight: float = 1.0  # the same loss on the encoder's predictions of observed
    #                                    frames 2..input_frames; 0 = future frames only (Shi)
    adversarial_weight: float = 0.05  # lambda_adv (Mathieu et al.: 0.05)
    gdl_weight: float = 1.0  # lambda_gdl, gradient difference loss with alpha = 1 (Mathieu: 1)
    d_channels: int = 32  # the discriminator's first layer width (doubles twice)
    d_learning_rate: float = 2e-4  # Adam, beta1 0.5 (DCGAN's)
    scheduled_sampling_steps: int = 0  # feed true frames to the forecaster with probability
    #                                    falling linearly 1 -> 0 over these steps; 0 = never
    # --- optimisation
    batch_size: int = 16  # global, over all devices
    num_epochs: int = 1
    max_steps: int = 0  # stop after this many steps; 0 = num_epochs worth
    optimizer: str = "adam"
    learning_rate: float = 2e-3
    weight_decay: float = 0.0
    schedule: str = "cosine"  # constant | cosine (linear warmup, then cosine decay to 0)
    warmup_steps: int = 50
    grad_clip_norm: float = 1.0  # 0 = off
    # --- bookkeeping
    seed: int = 0
    log_every_steps: int = 25
    checkpoints_to_keep: int = 2
    checkpoint_every_steps: int = 0  # also save every N steps between epoch ends; 0 = off
    checkpoint_every_minutes: float = 5.0  # ... and every M minutes of training; 0 = off

    def __post_init__(self) -> None:
        if self.checkpoint_every_steps < 0 or not self.checkpoint_every_minutes >= 0:
            raise ValueError("checkpoint_every_steps and checkpoint_every_minutes must be >= 0")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES or self.schedule == "plateau":
            raise ValueError("schedule must be constant or cosine")
        for name in ("batch_size", "num_epochs", "log_every_steps", "checkpoints_to_keep",
                     "input_frames", "output_frames", "kernel_size", "patch_size", "d_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not self.hidden_channels or min(self.hidden_channels) < 1:
            raise ValueError("hidden_channels must be one or more positive widths, e.g. 64,64")
        if self.kernel_size % 2 == 0:
            raise ValueError("kernel_size must be odd")
        if self.observed_loss_weight < 0:
            raise ValueError("observed_loss_weight must not be negative")
        if self.learning_rate <= 0 or self.d_learning_rate <= 0:
            raise ValueError("learning rates must be positive")
        if min(self.max_steps, self.eval_limit, self.scheduled_sampling_steps, self.warmup_steps) < 0:
            raise ValueError("step counts and eval_limit must not be negative")
        check_fields(self)


# Fields that may differ when a run is resumed: they do not change what was trained so far.
RESUMABLE_CHANGES = {"num_epochs", "max_steps", "log_every_steps", "tfds_data_dir",
                     "eval_dataset", "eval_limit", "checkpoints_to_keep", "checkpoint_every_steps",
                     "checkpoint_every_minutes"}
