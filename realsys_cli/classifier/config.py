"""The classifier's config: every field `--set` can change, with its unit in its name.

The training length is decided in one place, `total_steps`: `max_steps` if set, else
`num_epochs` epochs if set, else the default length, `auto_epochs` epochs (AUTO_EPOCHS unless
the recipe says) but at least `min_steps` steps, so that a small dataset (a folder of 1,500 images is 11 steps an epoch at
batch 128) trains long enough. The learning-rate schedule follows that length.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from realsys_cli.config import check_fields
from realsys_cli.training.optim import OPTIMIZERS, SCHEDULES

# The default length (num_epochs = 0) on a dataset large enough for the floor not to matter:
# 3/4 of an epoch of the built-in digits (351 steps) reach the test accuracy 2 epochs did at a
# lower rate and without label smoothing (0.9984 against 0.9986, in 41 s against 96 s).
AUTO_EPOCHS = 0.75


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    # --- data
    dataset: str = "digits"  # built-in, TFDS name, or a label for --data-dir
    data_dir: str | None = None  # a local folder ROOT/{train,val}/<class>/*.jpg
    tfds_data_dir: str | None = None
    image_size: int = 0  # model input side in px; 0 = the dataset's side (224 if it varies)
    resize_size: int = 0  # side the loader resizes to before cropping; 0 = auto
    crop_padding: int = 0  # px of zero padding before the random crop (shifts small images)
    flip: bool = False  # random horizontal flips (never for digits)
    pca_noise: float = 0.0  # std of AlexNet's fancy-PCA colour noise (paper: 0.1); 0 = off
    ten_crop: bool = False  # evaluate on 4 corners + centre and their flips (softmax averaged)
    eval_limit: int = 0  # evaluate on the first N eval examples only; 0 = all
    # --- model
    model: str = "lenet"  # lenet | alexnet-small | alexnet
    init: str = ""  # "" = the model's default; "paper" (N(0, 0.01)) or "he"
    dtype: Literal["float32", "bfloat16"] = "float32"  # compute dtype; params stay float32
    # --- optimisation
    batch_size: int = 128  # global, over all devices and processes
    num_epochs: int = 0  # exactly this many epochs; 0 = auto: auto_epochs, at least min_steps
    auto_epochs: float = AUTO_EPOCHS  # the auto length in epochs (may be a fraction of one)
    min_steps: int = 350  # the floor of the auto length (used only when num_epochs is 0)
    max_steps: int = 0  # stop after this many steps (wins over both); 0 = off
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # constant | plateau (AlexNet: /10 when val acc stalls) | cosine
    warmup_steps: int = 50
    plateau_patience_epochs: int = 2
    grad_clip_norm: float = 0.0  # 0 = off
    label_smoothing: float = 0.1  # of the training loss only (evaluation: plain)
    # --- bookkeeping
    seed: int = 0
    log_every_steps: int = 50
    checkpoints_to_keep: int = 2
    checkpoint_every_steps: int = 0  # also save every N steps between epoch ends; 0 = off
    checkpoint_every_minutes: float = 5.0  # ... and every M minutes of training; 0 = off
    recipe: str = ""  # the recipe the fields started from (train-classifier names it); info only

    def __post_init__(self) -> None:
        if self.checkpoint_every_steps < 0 or not self.checkpoint_every_minutes >= 0:
            raise ValueError("checkpoint_every_steps and checkpoint_every_minutes must be >= 0")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}")
        for name in ("batch_size", "log_every_steps", "checkpoints_to_keep"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("num_epochs", "min_steps", "max_steps", "auto_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more")
        if self.learning_rate <= 0:
            raise ValueError("learning_rate must be positive")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError("label_smoothing must be in [0, 1)")
        if self.init not in ("", "paper", "he"):
            raise ValueError("init must be '', 'paper' or 'he'")
        check_fields(self)


# Fields that may differ when a run is resumed: they do not change what was trained so far
# (learning_rate: the way out of a diverged run is to resume it with a lower one).
RESUMABLE_CHANGES = {"num_epochs", "auto_epochs", "min_steps", "max_steps", "log_every_steps", "tfds_data_dir",
                     "data_dir", "eval_limit", "ten_crop", "checkpoints_to_keep", "learning_rate",
                     "plateau_patience_epochs", "recipe", "checkpoint_every_steps",
                     "checkpoint_every_minutes"}


def total_steps(cfg: ClassifierConfig, steps_per_epoch: int) -> int:
    """The run's length in optimizer steps (see the module docstring)."""
    if cfg.max_steps:
        return cfg.max_steps
    if cfg.num_epochs:
        return cfg.num_epochs * steps_per_epoch
    return max(round(cfg.auto_epochs * steps_per_epoch), cfg.min_steps, 1)


def describe_length(cfg: ClassifierConfig, steps_per_epoch: int) -> str:
    """One line saying how long the run is and why, for the log."""
    steps = total_steps(cfg, steps_per_epoch)
    count = steps / steps_per_epoch
    epochs = f"{count:.3g} epoch{'' if count == 1 else 's'} of {steps_per_epoch} steps"
    if cfg.max_steps:
        return f"training {steps} steps ({epochs}; max_steps)"
    if cfg.num_epochs:
        hint = (f"; without --epochs (num_epochs 0) it would train at least {cfg.min_steps}"
                if steps < cfg.min_steps else "")
        return f"training {steps} steps ({epochs}; num_epochs {cfg.num_epochs}{hint})"
    auto = round(cfg.auto_epochs * steps_per_epoch)
    if steps > auto:
        return (f"training {steps} steps ({epochs}): the min_steps floor, as {cfg.auto_epochs:g} "
                f"epochs of this dataset are only {auto} steps")
    return f"training {steps} steps ({epochs})"
