"""A train-gan run's discriminator as a frozen judge of images, for fool-screen.

D is scored in eval mode (BatchNorm's running averages). In train mode BatchNorm would
normalise with the statistics of the batch being scored: a batch of nothing but fooling
images would be shifted and scaled to look like D's usual input, normalising away the very
difference we measure, and an image's score would depend on its batch-mates. The D of a
class-conditional GAN (train-gan's conditional=true) scores (image, class) pairs; it is asked
without a class, which gives each image's logit as the class it looks most real as (the
maximum over classes: models/dcgan.py, Discriminator.class_terms), so a fooling image is not
helped or hurt by the class its attacker chose.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from realsys_cli.errors import ConfigError
from realsys_cli.fool.target import FrozenClassifier, fit_images

log = logging.getLogger("realsys")

SCORE_BATCH = 500  # images per jitted call of D
MAX_DOWNSCALE = 2.0  # refuse a D that would see the classifier's images shrunk more than this


@dataclasses.dataclass(frozen=True)
class FrozenDiscriminator:
    """A train-gan run's D, in eval mode, as a function of uint8 images (or of [0, 1] pixels
    inside jit, for the joint attack)."""

    workdir: Path
    graphdef: Any
    weights: tuple[Any, Any]  # (d_params, d_rest): Params / BatchNorm statistics, SN vectors
    image_size: int  # D's input side
    channels: int
    dataset: str
    class_names: tuple[str, ...]
    noise_std: float  # the instance noise D saw at the end of training (0: none)
    noise_draws: int
    checkpoint: str
    step: int
    epochs: float
    seed: int = 0

    def logits(self, weights: tuple[Any, Any], images: jax.Array) -> jax.Array:
        """(B, S, S, C) in [-1, 1] at D's side -> realness logits (B,) float32, eval mode
        (the running averages: see the module docstring). Call inside jit."""
        d = nnx.merge(self.graphdef, *weights, copy=True)
        return d(images, train=False)

    def noisy_logits(self, weights: tuple[Any, Any], images: jax.Array,
                     key: jax.Array) -> jax.Array:
        """D's logits of images under the instance noise it was trained with (one draw)."""
        if self.noise_std > 0:
            images = images + self.noise_std * jax.random.normal(key, images.shape)
        return self.logits(weights, images)

    def score(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, C), any side and 1 or 3 channels -> (N,) float64 realness logits.

        The images are brought to D's side and channels as train-gan's pipeline brings its data
        (resize_square, the same luma). Under instance noise the score is the mean logit over
        `noise_draws` draws, the same draws for every call (a fixed key), so scores compare."""
        if not len(images):
            return np.zeros((0,), np.float64)
        images = fit_images(images, self.image_size, self.channels)
        run = jax.jit(lambda w, x, key: self.noisy_logits(
            w, x.astype(jnp.float32) / 127.5 - 1.0, key))  # uint8 -> [-1, 1] as to_unit_range
        draws = self.noise_draws if self.noise_std > 0 else 1
        out = []
        for start in range(0, len(images), SCORE_BATCH):
            batch = jnp.asarray(images[start : start + SCORE_BATCH])
            keys = [jax.random.fold_in(jax.random.key(self.seed), d) for d in range(draws)]
            out.append(np.mean([np.asarray(run(self.weights, batch, k)) for k in keys], axis=0))
        return np.concatenate(out).astype(np.float64)

    def realness_fn(self, side: int, channels: int) -> Callable:
        """fn(weights, x, key) -> (B,) for x (B, side, side, channels) pixels in [0, 1]: the
        joint attack's term. Differentiable stand-ins for `score`'s host resizing (bilinear,
        antialiased) and luma; one noise draw per call (the ascent averages over its steps)."""
        luma = jnp.asarray([0.299, 0.587, 0.114], jnp.float32)

        def fn(weights: tuple[Any, Any], x: jax.Array, key: jax.Array) -> jax.Array:
            if channels != self.channels:  # grey <-> RGB as pipeline.convert_channels
                x = (jnp.repeat(x, 3, axis=-1) if self.channels == 3
                     else jnp.sum(x * luma, axis=-1, keepdims=True))
            if side != self.image_size:
                x = jax.image.resize(x, (x.shape[0], self.image_size, self.image_size,
                                         self.channels), "linear")
            return self.noisy_logits(weights, x * 2.0 - 1.0, key)

        return fn


def load_gan(gan_workdir: str | Path) -> Any:
    """A train-gan run's latest checkpoint (D and G are saved together): a TrainedGan."""
    from realsys_cli.gan.sample import load_generator

    return load_generator(gan_workdir)


def discriminator_of(gan: Any, noise_draws: int = 8) -> FrozenDiscriminator:
    """The TrainedGan's D, on one plain device (as target.load_frozen does for the classifier:
    arrays laid out on the training mesh would make jit compile the same program twice)."""
    weights = jax.device_put((gan.state["d_params"], gan.state["d_rest"]), jax.devices()[0])
    return FrozenDiscriminator(
        workdir=Path(gan.workdir), graphdef=gan.steps.d_graphdef, weights=weights,
        image_size=gan.facts.image_size, channels=gan.facts.channels,
        dataset=gan.facts.dataset, class_names=tuple(gan.facts.class_names),
        # the noise of the last step: it moves linearly to instance_noise_final over the run
        noise_std=float(gan.cfg.instance_noise_final), noise_draws=noise_draws,
        checkpoint=gan.checkpoint, step=gan.step, epochs=gan.epochs, seed=gan.cfg.seed)


def generated_samples(gan: Any, n: int, seed: int) -> np.ndarray:
    """n of G's samples (its sampling weights), uint8 (n, S, S, C), a fresh z from `seed`."""
    z = gan.steps.sample_z(jax.random.key(seed), n)  # (n, nz)
    return np.concatenate([gan.sample(z[i : i + SCORE_BATCH]) for i in range(0, n, SCORE_BATCH)])


def check_matches(d: FrozenDiscriminator, net: FrozenClassifier) -> None:
    """Refuse a D that cannot judge the classifier's images; warn where it may judge them
    badly. Cheap checks only: the class names and the sides, both saved with each run."""
    if tuple(d.class_names) != tuple(net.class_names):
        shown = ", ".join(d.class_names[:10])
        raise ConfigError(f"the GAN in {d.workdir} was trained on {d.dataset} (classes "
                          f"{shown}), not on the classes of the classifier in {net.workdir}; "
                          "give a GAN trained on the classifier's dataset")
    if net.image_size > MAX_DOWNSCALE * d.image_size:
        raise ConfigError(
            f"the GAN's discriminator sees {d.image_size}-px images, the classifier "
            f"{net.image_size}-px ones: shrunk {net.image_size / d.image_size:.1f}x, a fooling "
            "image's pixel pattern would be averaged away before D judged it; give a GAN "
            f"trained at {net.image_size // 2} px or more")
    if d.dataset.split("/")[0] != net.dataset.split("/")[0]:
        log.warning("the GAN was trained on %s and the classifier on %s (same classes): D "
                    "judges the classifier's images as images of %s", d.dataset, net.dataset,
                    d.dataset)
    if d.channels != net.in_channels:
        log.warning("the GAN's images have %d channel(s), the classifier's %d: converted for D",
                    d.channels, net.in_channels)
