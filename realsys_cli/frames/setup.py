"""What training and every later use of a frame predictor share: data checks, models, steps.

A trained workdir holds the resolved config and, in each checkpoint, the frame shape the model
was built for, so evaluation and the movie rebuild exactly the trained network from the workdir.
"""

from __future__ import annotations

import os
from typing import Any

from flax import nnx

from realsys_cli.data.dataset import Dataset, open_dataset
from realsys_cli.errors import ConfigError, DatasetError
from realsys_cli.frames.config import FramesConfig
from realsys_cli.frames.steps import FramesSteps
from realsys_cli.models.convlstm import ConvLSTMPredictor
from realsys_cli.models.frame_discriminator import FrameDiscriminator
from realsys_cli.models.simvp import SimVP
from realsys_cli.training import optim


def open_video_dataset(name: str, tfds_dir: str | os.PathLike | None) -> Dataset:
    """open_dataset for frame prediction: video clips, or a DatasetError saying what to use."""
    dataset = open_dataset(name, tfds_dir=tfds_dir)
    if dataset.kind != "video":
        raise DatasetError(f"{name} is an image dataset; predict-frames needs video clips "
                           "(--dataset moving-digits)")
    return dataset


def check_frames(cfg: FramesConfig, dataset: Dataset, *, scored: bool = True) -> tuple[int, ...]:
    """The (H, W, C) of the clips, after checking they fit the config. `scored`: the clips must
    also hold the output_frames that are scored."""
    t, h, w, c = dataset.element_shape
    needed = cfg.input_frames + (cfg.output_frames if scored else 0)
    if t is None or t < needed:
        raise DatasetError(
            f"{dataset.name} has clips of {t} frames; input_frames + output_frames = {needed} "
            f"(choose a dataset with longer clips, e.g. moving-digits/frames={needed})"
        )
    size = cfg.spatial_divisor
    if h is None or w is None or h % size or w % size:
        if cfg.model == "simvp":
            raise ConfigError(f"frames of {h}x{w} px do not split into patches of "
                              f"{cfg.simvp_patch} px halved {cfg.simvp_n_s // 2} times by "
                              f"SimVP's encoder (simvp_patch = {cfg.simvp_patch}, simvp_n_s = "
                              f"{cfg.simvp_n_s}); --set simvp_n_s=... or simvp_patch=... lower")
        raise ConfigError(f"frames of {h}x{w} px do not split into patches of {cfg.patch_size} "
                          "px; --set patch_size=... to a divisor of both")
    return int(h), int(w), int(c)


def make_model(cfg: FramesConfig, channels: int) -> ConvLSTMPredictor | SimVP:
    rngs = nnx.Rngs(params=cfg.seed)
    if cfg.model == "simvp":
        return SimVP(channels=channels, input_frames=cfg.input_frames,
                     future_frames=cfg.output_frames, hid_s=cfg.simvp_hid_s,
                     hid_t=cfg.simvp_hid_t, spatial_blocks=cfg.simvp_n_s,
                     translator_blocks=cfg.simvp_n_t, kernel=cfg.simvp_kernel,
                     attention_kernel=cfg.simvp_attention_kernel,
                     mlp_ratio=cfg.simvp_mlp_ratio, skip=cfg.simvp_skip,
                     translator=cfg.simvp_translator, patch=cfg.simvp_patch, rngs=rngs)
    return ConvLSTMPredictor(channels=channels, hidden=tuple(cfg.hidden_channels),
                             kernel=cfg.kernel_size, patch_size=cfg.patch_size,
                             shared_weights=cfg.shared_weights, rngs=rngs)


def make_discriminator(cfg: FramesConfig, channels: int) -> FrameDiscriminator | None:
    if not cfg.adversarial:
        return None
    return FrameDiscriminator(channels=channels, width=cfg.d_channels,
                              rngs=nnx.Rngs(params=cfg.seed + 1))


def make_steps(cfg: FramesConfig, model: nnx.Module, total_steps: int,
               discriminator: nnx.Module | None = None) -> FramesSteps:
    spec = optim.OptimizerSpec(
        name=cfg.optimizer, learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay,
        schedule=cfg.schedule, warmup_steps=min(cfg.warmup_steps, max(total_steps - 1, 0)),
        total_steps=total_steps, grad_clip_norm=cfg.grad_clip_norm,
    )
    extra: dict[str, Any] = {}
    if discriminator is not None:
        d_spec = optim.OptimizerSpec(name="adam", learning_rate=cfg.d_learning_rate, beta1=0.5)
        extra = {"d_graphdef": nnx.graphdef(discriminator), "d_tx": optim.build_optimizer(d_spec),
                 "adversarial_weight": cfg.adversarial_weight, "gdl_weight": cfg.gdl_weight}
    return FramesSteps(
        graphdef=nnx.graphdef(model), tx=optim.build_optimizer(spec),
        schedule=optim.learning_rate_schedule(spec), input_frames=cfg.input_frames,
        output_frames=cfg.output_frames, loss=cfg.loss,
        reconstruction_weight=cfg.reconstruction_weight,
        # SimVP predicts the future frames only: nothing for the observed-frames loss to weigh
        observed_loss_weight=cfg.observed_loss_weight if cfg.model == "convlstm" else 0.0,
        scheduled_sampling_steps=cfg.scheduled_sampling_steps, **extra,
    )
