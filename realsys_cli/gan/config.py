"""The GAN's config: every field `--set` can change, with its unit in its name.

Defaults are DCGAN's (Radford et al. 2015, section 3): batch 128, Adam lr 2e-4 with beta1 0.5,
uniform z of 100 numbers, weights N(0, 0.02), images scaled to [-1, 1]. Every change beyond the
paper is off by default: class conditioning, the stabilisers measured since (spectral norm, the
hinge loss, DiffAugment, a moving average of G, separate Adam settings for G) and the older
tricks.
`realsys train-gan` starts from the recipe its dataset picks (gan/recipes.py: digits ->
configs/dcgan_digits.toml, the best measured), and from these defaults where none is known.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from realsys_cli.config import check_fields


@dataclasses.dataclass(frozen=True)
class GanConfig:
    # --- data
    dataset: str = "digits"  # built-in, TFDS name, or a label for --data-dir
    recipe: str = ""  # the recipe the fields started from (train-gan names it); info only
    data_dir: str | None = None  # a local folder ROOT/{train,val}/<class>/*.jpg
    tfds_data_dir: str | None = None
    image_size: int = 0  # 28, 32 or 64 px; 0 = the dataset's side (resized to it otherwise)
    # --- model
    latent_dim: int = 100  # numbers in z
    latent_distribution: Literal["uniform", "normal"] = "uniform"  # U(-1, 1) (paper) or N(0, 1)
    width: int = 64  # ngf = ndf: channels of G's last and D's first hidden layer
    spectral_norm: bool = False  # divide each of D's kernels by its largest singular value,
    #                              one power iteration per step (SNGAN); False = the paper
    d_norm: Literal["batch", "none"] = "batch"  # D's BatchNorms (the paper), or none and a
    #                                             bias per convolution instead (SNGAN's D)
    conditional: bool = False  # G and D are told the class: G gets it one-hot after z (cGAN),
    #                            D by projection (Miyato & Koyama 2018); False = the paper
    # --- optimisation (both nets: Adam)
    batch_size: int = 128  # global, over all devices
    num_epochs: int = 5
    max_steps: int = 0  # stop after this many steps; 0 = num_epochs worth
    learning_rate: float = 2e-4
    g_learning_rate: float = 0.0  # G's own rate; 0 = learning_rate (the paper: the same)
    beta1: float = 0.5  # Adam's beta1 (D's, and G's unless g_beta1 is set)
    beta2: float = 0.999  # Adam's beta2 (D's, and G's unless g_beta2 is set); 0.999 = the paper
    g_beta1: float = -1.0  # G's own beta1; -1 = beta1 (TTUR recipes use 0 for both)
    g_beta2: float = -1.0  # G's own beta2; -1 = beta2
    loss: Literal["nonsaturating", "hinge"] = "nonsaturating"  # D: BCE, G: -log D(G(z))
    #     (the paper); hinge: D mean relu(1 - D(x)) + mean relu(1 + D(G(z))), G -mean D(G(z))
    diffaugment: str = ""  # DiffAugment policy, comma-separated "color,translation,cutout",
    #                        applied in that order to every image D sees; "" = off (the paper)
    ema_decay: float = 0.0  # sample from a moving average of G's weights; 0 = off (the paper)
    real_label: float = 1.0  # D's target for real images; 0.9 = one-sided label smoothing
    g_steps: int = 1  # G updates per D update; 1 = the paper
    instance_noise: float = 0.0  # std of N(0, s^2) added to D's inputs ([-1, 1] images) at
    #                              step 0; 0 = none (the paper)
    instance_noise_final: float = 0.0  # its std at the last step, reached linearly; set it to
    #                                    instance_noise for constant noise
    lr_decay_start: float = 1.0  # share of the steps after which the rates fall linearly to 0;
    #                              1 = constant (the paper)
    # --- quality (FID and class coverage on the judge's features)
    judge: str | None = None  # a train-classifier workdir; None = train one into <workdir>/judge
    judge_model: str = "lenet"  # the classifier trained when no judge is given
    judge_epochs: int = 1
    fid_samples: int = 5000  # generated samples; each real set has as many (if the data allow)
    fid_every_epochs: int = 1  # FID at the end of every N-th epoch (and always at the end)
    # --- bookkeeping
    grid_samples: int = 64  # images in samples/epoch_NNN.png, from a fixed z
    seed: int = 0
    log_every_steps: int = 50
    checkpoints_to_keep: int = 2
    checkpoint_every_steps: int = 0  # also save every N steps between epoch ends; 0 = off
    checkpoint_every_minutes: float = 5.0  # ... and every M minutes of training; 0 = off

    def __post_init__(self) -> None:
        if self.checkpoint_every_steps < 0 or not self.checkpoint_every_minutes >= 0:
            raise ValueError("checkpoint_every_steps and checkpoint_every_minutes must be >= 0")
        for name in ("batch_size", "num_epochs", "latent_dim", "width", "log_every_steps",
                     "checkpoints_to_keep", "judge_epochs", "grid_samples", "g_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.image_size not in (0, 28, 32, 64):
            raise ValueError("image_size must be 28, 32 or 64 (or 0 for the dataset's side)")
        if self.learning_rate <= 0 or self.g_learning_rate < 0:
            raise ValueError("learning_rate must be positive (and g_learning_rate >= 0)")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1)")
        for name in ("g_beta1", "g_beta2"):
            if not (getattr(self, name) == -1 or 0 <= getattr(self, name) < 1):
                raise ValueError(f"{name} must be in [0, 1), or -1 for {name[2:]}'s value")
        if self.loss not in ("nonsaturating", "hinge"):
            raise ValueError(f"loss must be nonsaturating or hinge, got {self.loss!r}")
        if self.loss == "hinge" and self.real_label != 1.0:
            raise ValueError("real_label (label smoothing) is a target of the non-saturating "
                             "loss; the hinge loss has none: leave it at 1")
        if self.d_norm not in ("batch", "none"):
            raise ValueError(f"d_norm must be batch or none, got {self.d_norm!r}")
        diffaugment_policy(self.diffaugment)  # raises on an unknown or repeated name
        if not 0 <= self.ema_decay < 1:
            raise ValueError("ema_decay must be in [0, 1)")
        if not 0.5 < self.real_label <= 1:
            raise ValueError("real_label must be in (0.5, 1]")
        if not 0 <= self.instance_noise <= 1 or not 0 <= self.instance_noise_final <= 1:
            raise ValueError("instance_noise and instance_noise_final must be in [0, 1] (a std "
                             "in [-1, 1] pixel units)")
        if not 0 <= self.lr_decay_start <= 1:
            raise ValueError("lr_decay_start must be in [0, 1] (1 = no decay)")
        if self.fid_samples < 2:
            raise ValueError("fid_samples must be at least 2")
        if self.fid_every_epochs < 0:
            raise ValueError("fid_every_epochs must be >= 0 (0 = only at the end)")
        check_fields(self)

    @property
    def augment_policy(self) -> tuple[str, ...]:
        """The DiffAugment transforms in the order they are applied; () = none."""
        return diffaugment_policy(self.diffaugment)

    def g_adam(self) -> tuple[float, float, float]:
        """G's Adam (rate, beta1, beta2), each D's unless G has its own."""
        return (self.g_learning_rate or self.learning_rate,
                self.beta1 if self.g_beta1 == -1 else self.g_beta1,
                self.beta2 if self.g_beta2 == -1 else self.g_beta2)


# The transforms of DiffAugment (gan/diffaugment.py implements each).
DIFFAUGMENT_TRANSFORMS = ("color", "translation", "cutout")


def diffaugment_policy(text: str) -> tuple[str, ...]:
    """"color, translation" -> ("color", "translation"); "" -> (). Raises ValueError on an
    unknown or repeated transform."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    for name in names:
        if name not in DIFFAUGMENT_TRANSFORMS:
            raise ValueError(f"diffaugment: unknown transform {name!r}; use a comma-separated "
                             f"list of {', '.join(DIFFAUGMENT_TRANSFORMS)} (or \"\" for none)")
    if len(set(names)) != len(names):
        raise ValueError(f"diffaugment: {text!r} names a transform twice")
    return names


# Fields that may differ when a run is resumed: they do not change what was trained so far.
RESUMABLE_CHANGES = {"recipe", "num_epochs", "max_steps", "log_every_steps", "tfds_data_dir", "data_dir",
                     "checkpoints_to_keep", "fid_samples", "fid_every_epochs", "judge",
                     "judge_model", "judge_epochs", "grid_samples", "checkpoint_every_steps",
                     "checkpoint_every_minutes"}
