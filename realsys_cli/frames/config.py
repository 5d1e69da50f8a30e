"""`realsys predict-frames`'s config: every field `--set` can change, with its unit in its name.

The defaults are the ConvLSTM recipe measured in docs/frames.md (configs/convlstm_moving_digits.toml):
the Moving MNIST protocol (10 frames in, 10 out) on the built-in moving digits. `model` picks the
network: the ConvLSTM (its fields: hidden_channels .. shared_weights) or SimVP (the simvp_*
fields). `realsys predict-frames` starts from the recipe its model picks (frames/recipes.py):
SimVP's configs/simvp_moving_digits.toml unless --model convlstm or --config says otherwise.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from realsys_cli.config import check_fields
from realsys_cli.training.optim import OPTIMIZERS, SCHEDULES

FRAMES_SCHEDULES = tuple(s for s in SCHEDULES if s != "plateau")  # plateau: classifier only


@dataclasses.dataclass(frozen=True)
class FramesConfig:
    recipe: str = ""  # the recipe the fields started from (predict-frames names it); info only
    # --- data
    dataset: str = "moving-digits"  # a video dataset with a train split (built-in moving-digits)
    tfds_data_dir: str | None = None
    eval_dataset: str = ""  # "" = the dataset's own test split; or e.g. moving_mnist (TFDS)
    input_frames: int = 10  # observed frames fed to the encoder
    output_frames: int = 10  # frames predicted and scored (the training horizon)
    eval_limit: int = 0  # evaluate on the first N test sequences only; 0 = all
    # --- the network: the ConvLSTM (models/convlstm.py) or SimVP (models/simvp.py)
    model: Literal["convlstm", "simvp"] = "convlstm"
    # --- model = "convlstm" (Shi et al. 2015 encoder-forecaster; OpenSTL's patching)
    hidden_channels: tuple[int, ...] = (32, 32)  # ConvLSTM layers, encoder and forecaster each
    kernel_size: int = 5  # of every ConvLSTM convolution, on the patched grid (5x5 cells = 20 px)
    patch_size: int = 4  # 64x64x1 frames -> 16x16x16 before the cells
    shared_weights: bool = False  # forecaster = encoder (one ConvLSTM, OpenSTL's form)
    # --- model = "simvp" (Gao et al. 2022 with the gSTA translator of SimVP v2; OpenSTL's names,
    #     its Moving MNIST recipe in brackets)
    #     Sized for 2 CPU cores: a train step of 16 clips costs about 0.8x the ConvLSTM's.
    simvp_hid_s: int = 8  # channels of the per-frame encoder and decoder (hid_S: 64); even
    simvp_hid_t: int = 128  # channels of the translator's inner blocks (hid_T: 512)
    simvp_n_s: int = 4  # encoder and decoder blocks, every second strided (N_S: 4, 64 -> 16 px)
    simvp_patch: int = 1  # space-to-depth before the encoder (1 = none, OpenSTL's SimVP): 2
    #   reads a 64x64x1 frame as 32x32x4, so N_S = 2 reaches the same 16x16 latent grid
    simvp_translator: Literal["gsta", "conv"] = "gsta"  # gSTA blocks (SimVP v2), or residual
    #   blocks of dense 3x3 convolutions, which XLA:CPU runs about 4x faster (models/simvp.py)
    simvp_n_t: int = 3  # translator blocks, at least 2 (N_T: 8)
    simvp_kernel: int = 3  # of the encoder and decoder convolutions (spatio_kernel_enc/dec: 3)
    simvp_attention_kernel: int = 21  # gSTA's large kernel, made of 5x5 + 7x7 dilated 3 (21)
    simvp_mlp_ratio: float = 4.0  # the gSTA MLP's hidden width over its input width (8)
    simvp_skip: Literal["each", "last"] = "each"  # the decoder's skip: observed frame k's first
    #   encoder features into future frame k (OpenSTL's; needs output_frames = input_frames), or
    #   the last observed frame's into every future frame
    # --- losses
    loss: Literal["mse", "bce"] = "mse"  # per-pixel reconstruction loss
    adversarial: bool = False  # add Mathieu et al.'s frame discriminator + gradient difference
    reconstruction_weight: float = 1.0  # lambda_p (Mathieu et al.: 1)
    observed_loss_weight: float = 1.0  # the same loss on the encoder's predictions of observed
    #                                    frames 2..input_frames; 0 = future frames only (Shi).
    #                                    ConvLSTM only: SimVP predicts no observed frame and
    #                                    ignores it (a note on stderr)
    adversarial_weight: float = 0.05  # lambda_adv (Mathieu et al.: 0.05)
    gdl_weight: float = 1.0  # lambda_gdl, gradient difference loss with alpha = 1 (Mathieu: 1)
    d_channels: int = 32  # the discriminator's first layer width (doubles twice)
    d_learning_rate: float = 2e-4  # Adam, beta1 0.5 (DCGAN's)
    scheduled_sampling_steps: int = 0  # feed true frames to the forecaster with probability
    #                                    falling linearly 1 -> 0 over these steps; 0 = never.
    #                                    ConvLSTM only (SimVP: an error)
    # --- optimisation
    batch_size: int = 16  # global, over all devices
    num_epochs: int = 1
    max_steps: int = 0  # stop after this many steps; 0 = num_epochs worth
    optimizer: str = "adam"
    learning_rate: float = 2e-3
    weight_decay: float = 0.0
    schedule: str = "cosine"  # constant | cosine (linear warmup, then cosine decay to 0) |
    #                           onecycle (OpenSTL's: cosine up to the rate over the first 30%,
    #                           then down to rate / 2.5e5; warmup_steps unused)
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
        if self.schedule not in FRAMES_SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(FRAMES_SCHEDULES)}")
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
        if self.model == "simvp":
            self._check_simvp()
        check_fields(self)

    def _check_simvp(self) -> None:
        for name in ("simvp_hid_t", "simvp_kernel", "simvp_attention_kernel", "simvp_patch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.simvp_hid_s < 2 or self.simvp_hid_s % 2:
            raise ValueError("simvp_hid_s must be even and at least 2 (GroupNorm of 2 groups)")
        if self.simvp_n_s < 1:
            raise ValueError("simvp_n_s must be at least 1 (every second block strides)")
        if self.simvp_n_t < 2:
            raise ValueError("simvp_n_t must be at least 2 (the first and the last gSTA block)")
        if self.simvp_kernel % 2 == 0:
            raise ValueError("simvp_kernel must be odd")
        if not self.simvp_mlp_ratio * min(self.simvp_hid_t, self.simvp_hid_s) >= 1:
            raise ValueError("simvp_mlp_ratio must be positive (and leave the MLP a channel)")
        if self.simvp_skip == "each" and self.output_frames != self.input_frames:
            raise ValueError("simvp_skip=each adds observed frame k's features to future frame k "
                             f"and needs output_frames = input_frames ({self.input_frames}, got "
                             f"{self.output_frames}); or --set simvp_skip=last")
        if self.scheduled_sampling_steps:
            raise ValueError("scheduled_sampling_steps feeds true frames to the ConvLSTM's "
                             "forecaster; SimVP predicts all future frames at once from the "
                             "observed ones: leave it at 0")

    @property
    def spatial_divisor(self) -> int:
        """What the frames' height and width must be multiples of: the ConvLSTM's patch, or
        SimVP's patch times its downsampling 2^(N_S/2)."""
        if self.model == "simvp":
            return self.simvp_patch * 2 ** (self.simvp_n_s // 2)
        return self.patch_size


# Fields that may differ when a run is resumed: they do not change what was trained so far.
RESUMABLE_CHANGES = {"recipe", "num_epochs", "max_steps", "log_every_steps", "tfds_data_dir",
                     "eval_dataset", "eval_limit", "checkpoints_to_keep", "checkpoint_every_steps",
                     "checkpoint_every_minutes"}
