"""DCGAN's jitted train step (one D update, then one G update) and its sampler.

The state is a dict of arrays (jit donates it, orbax saves it as it is):

  {"g_params", "g_rest": the generator's nnx.State (Params / BatchNorm statistics),
   "d_params", "d_rest": the discriminator's (d_rest: BatchNorm statistics, and with
   spectral_norm the power iteration's vectors u), "g_opt", "d_opt": Adam states,
   "step": int32 (), "key": PRNG key (),
   and with ema_decay > 0: "g_ema": a moving average of G's weights}

One step (Goodfellow et al. 2014, Algorithm 1 with k = 1, and the non-saturating G loss of its
section 3; Radford et al. 2015 for the rest):

  1. z ~ U(-1, 1) or N(0, 1), (B, nz); fake = G(z) with batch statistics, run once (jax.vjp);
  2. D: minimise -log D(x) - log(1 - D(G(z))) on a real and a (detached) fake batch, each
     normalised with its own batch statistics, as pytorch/examples dcgan does;
  3. G: minimise -log D(G(z)) through the updated D; D's weights get no gradient (with
     g_steps > 1, G is updated that many times on the same z, as carpedm20/DCGAN-tensorflow
     does to keep D's loss off 0).

Images are uint8 in the batch and [-1, 1] floats in the nets (G ends in tanh).

Optional, not in the paper (each off by default, each a GanConfig field):

  ema_decay      samples (grids, FID, `realsys sample`: everything that calls `sampling_params`)
                 come from an exponential moving average of G's weights (Yazici et al. 2018,
                 "The Unusual Effectiveness of Averaging in GAN Training"), the decay warmed up
                 as min(decay, (1 + t) / (10 + t)) so that the random init is soon forgotten.
                 G's BatchNorm running statistics stay the trained G's (not recomputed for the
                 averaged weights: the simple choice, and an average of weights that change
                 slowly normalises much like the weights themselves);
  spectral_norm  D's kernels divided by their largest singular value (models/spectral_norm.py).
                 Its vectors u live in "d_rest"; they take one power iteration per step, in D's
                 call on the real batch (step 2); D's call on the fake batch, G's step and every
                 evaluation use them as they are;
  loss="hinge"   D: mean relu(1 - D(x)) + mean relu(1 + D(G(z))); G: -mean D(G(z)) (Lim & Ye
                 2017; SNGAN's loss). The metrics d_real / d_fake stay the mean sigmoid of D's
                 logits: above / below 0.5 is D calling an image real / fake, but with the hinge
                 loss the logits are margins, not log-odds;
  diffaugment    every image D sees, real and generated, in D's step and in G's, goes through
                 the same transforms (gan/diffaugment.py) with fresh parameters per call, drawn
                 from the step's key; instance noise, if any, is added after them;
  g_beta1, g_beta2, g_learning_rate, beta2   G's Adam apart from D's (TTUR, Heusel et al. 2017);
  conditional    G and D are told the class (num_classes = K): z ends in a one-hot class, drawn
                 balanced with the noise (sample_z), and D scores (image, class) pairs by
                 projection (models/dcgan.py): real images with their labels, G's with the class
                 it was asked for. Every sampler works unchanged, since the class is part of z.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from realsys_cli.errors import ConfigError
from realsys_cli.gan import diffaugment
from realsys_cli.gan.config import GanConfig
from realsys_cli.pictures import to_uint8
from realsys_cli.training import optim

State = dict[str, Any]


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array,
                       real_label: float = 1.0) -> jax.Array:
    """-mean log D(x) - mean log(1 - D(G(z))): BCE(real, 1) + BCE(fake, 0), logits (B,).

    With real_label t < 1 the real images' target is t (one-sided label smoothing, Salimans et
    al. 2016, section 3.4): BCE(real, t) = t softplus(-x) + (1 - t) softplus(x); the fakes'
    target stays 0, so D is never rewarded for calling a fake real."""
    real_term = real_label * jax.nn.softplus(-real_logits)
    if real_label != 1.0:
        real_term = real_term + (1.0 - real_label) * jax.nn.softplus(real_logits)
    return jnp.mean(real_term) + jnp.mean(jax.nn.softplus(fake_logits))


def generator_loss(fake_logits: jax.Array) -> jax.Array:
    """The non-saturating loss -mean log D(G(z)): strong gradients while D wins."""
    return jnp.mean(jax.nn.softplus(-fake_logits))


def hinge_discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """mean relu(1 - D(x)) + mean relu(1 + D(G(z))), logits (B,): D is pushed until real
    images score at least +1 and fakes at most -1, and no further."""
    return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))


def hinge_generator_loss(fake_logits: jax.Array) -> jax.Array:
    """-mean D(G(z)): G raises D's score of its images, without a margin."""
    return -jnp.mean(fake_logits)


def to_unit_range(images: jax.Array) -> jax.Array:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return images.astype(jnp.float32) / 127.5 - 1.0


def batch_spread(images: jax.Array) -> jax.Array:
    """How different the images of a batch are: the per-pixel std over the batch, averaged.

    (B, H, W, C) -> (). Nearly identical samples (mode collapse) give ~0."""
    return jnp.mean(jnp.std(images, axis=0))


def init_state(generator: nnx.Module, discriminator: nnx.Module,
               g_tx: optax.GradientTransformation, d_tx: optax.GradientTransformation,
               seed: int, *, ema: bool = False) -> State:
    _, g_params, g_rest = nnx.split(generator, nnx.Param, ...)
    _, d_params, d_rest = nnx.split(discriminator, nnx.Param, ...)
    state = {"g_params": g_params, "g_rest": g_rest, "g_opt": g_tx.init(g_params),
             "d_params": d_params, "d_rest": d_rest, "d_opt": d_tx.init(d_params),
             "step": jnp.zeros((), jnp.int32), "key": jax.random.key(seed)}
    if ema:
        state["g_ema"] = jax.tree.map(jnp.copy, g_params)
    return state


def sampling_params(state: State) -> Any:
    """The weights samples come from: the moving average when there is one, else G's own."""
    return state.get("g_ema", state["g_params"])


def adam(learning_rate: float, beta1: float, beta2: float = 0.999, *, decay_start: float = 1.0,
         total_steps: int = 1) -> optax.GradientTransformation:
    """Adam at a constant rate (the paper), or, with decay_start < 1, constant for the first
    decay_start x total_steps steps and then falling linearly to 0 (training/optim.py's
    "linear_decay" schedule, which a resumed run continues exactly)."""
    return optim.build_optimizer(optim.OptimizerSpec(
        name="adam", learning_rate=learning_rate, beta1=beta1, beta2=beta2, weight_decay=0.0,
        schedule="linear_decay" if decay_start < 1.0 else "constant",
        decay_start=decay_start, total_steps=total_steps))


@dataclasses.dataclass(frozen=True)
class GanSteps:
    """Everything the steps close over; the make_* methods jit them."""

    g_graphdef: Any
    d_graphdef: Any
    g_tx: optax.GradientTransformation  # G's optimizer
    d_tx: optax.GradientTransformation  # D's (the same object when both have one Adam)
    latent_dim: int
    latent_distribution: str = "uniform"
    ema_decay: float = 0.0  # 0 = sample from G's own weights (the paper)
    real_label: float = 1.0  # D's target for real images; < 1 = one-sided label smoothing
    instance_noise: float = 0.0  # std of the noise on D's inputs at step 0 ...
    noise_final: float = 0.0  # ... and from total_steps on, linear in between (both 0: none)
    total_steps: int = 1  # the run's length in steps
    g_steps: int = 1  # G updates per D update (the paper: 1)
    loss: str = "nonsaturating"  # or "hinge"
    augment_policy: tuple[str, ...] = ()  # DiffAugment's transforms, in order; () = none
    num_classes: int = 0  # K > 0: class-conditional (z ends in a one-hot class); 0 = the paper

    def d_loss(self, real_logits: jax.Array, fake_logits: jax.Array,
               real_label: float = 1.0) -> jax.Array:
        """D's loss for its logits on a real and a generated batch, (B,) each."""
        if self.loss == "hinge":
            return hinge_discriminator_loss(real_logits, fake_logits)
        return discriminator_loss(real_logits, fake_logits, real_label)

    def g_loss(self, fake_logits: jax.Array) -> jax.Array:
        """G's loss for D's logits on its images, (B,)."""
        if self.loss == "hinge":
            return hinge_generator_loss(fake_logits)
        return generator_loss(fake_logits)

    def augment(self, key: jax.Array, images: jax.Array) -> jax.Array:
        """DiffAugment on (B, S, S, C) images in [-1, 1], new parameters for each key; the
        images themselves without a policy."""
        return diffaugment.augment(key, images, self.augment_policy)

    def noise_std(self, step: jax.Array) -> jax.Array:
        """Instance noise at `step` (Sonderby et al. 2016, Arjovsky & Bottou 2017): N(0, s^2)
        added to every image D sees, real and generated, s moving linearly from
        `instance_noise` to `noise_final` over the run (constant when they are equal). It blurs
        the fine texture (pixel grain) in which real and generated images differ first, so
        that D's gradient for G is about shape; a final std above 0 keeps hiding the finest
        grain to the end."""
        done = jnp.minimum(step.astype(jnp.float32) / max(self.total_steps, 1), 1.0)
        return self.instance_noise + (self.noise_final - self.instance_noise) * done

    def sample_z(self, key: jax.Array, n: int) -> jax.Array:
        """(n, latent_dim) float32 from U(-1, 1) or N(0, 1); a class-conditional G's z has
        the class one-hot after that, (n, latent_dim + K), the classes balanced and in order
        (rows i * K // n: each class on n / K rows, rounded), so that every class is asked for
        equally and a grid of samples reads class by class. (Their order is irrelevant to
        training: BatchNorm's statistics and the losses are means over the batch.)"""
        if self.latent_distribution == "normal":
            z = jax.random.normal(key, (n, self.latent_dim))
        else:
            z = jax.random.uniform(key, (n, self.latent_dim), minval=-1.0, maxval=1.0)
        if not self.num_classes:
            return z
        labels = jnp.arange(n) * self.num_classes // n
        return jnp.concatenate([z, jax.nn.one_hot(labels, self.num_classes)], axis=1)

    def class_of(self, z: jax.Array) -> jax.Array | None:
        """The class each row of z asks for, (B,) int32; None for an unconditional G."""
        if not self.num_classes:
            return None
        return jnp.argmax(z[:, self.latent_dim :], axis=1).astype(jnp.int32)

    def generate(self, g_params: Any, g_rest: Any, z: jax.Array, *,
                 train: bool = False) -> tuple[jax.Array, Any]:
        """z (B, nz) -> images (B, S, S, C) in [-1, 1], and G's updated non-Param state."""
        g = nnx.merge(self.g_graphdef, g_params, g_rest, copy=True)
        return g(z, train=train), nnx.state(g, nnx.Not(nnx.Param))

    def discriminate(self, d_params: Any, d_rest: Any, images: jax.Array,
                     labels: jax.Array | None = None, *,
                     power_iteration: bool = False) -> tuple[jax.Array, Any]:
        """images (B, S, S, C) in [-1, 1] (and, class-conditional, their labels (B,)) -> D's
        logits (B,) with batch statistics, and D's updated non-Param state. `power_iteration`
        advances the spectral norms' vectors (once per train step; nothing without
        spectral_norm)."""
        d = nnx.merge(self.d_graphdef, d_params, d_rest, copy=True)
        logits = d(images, labels, train=True, power_iteration=power_iteration)
        return logits, nnx.state(d, nnx.Not(nnx.Param))

    def train_step(self, state: State, batch: dict[str, jax.Array]) -> tuple[State, dict]:
        real = to_unit_range(batch["image"])  # (B, S, S, C)
        key = jax.random.fold_in(state["key"], state["step"])
        z = self.sample_z(key, real.shape[0])  # (B, nz), or (B, nz + K) with the class
        # class-conditional: D judges (image, class) pairs, real ones with their labels and
        # generated ones with the class G was asked for (the paper's D ignores labels)
        real_labels, fake_labels = batch.get("label"), self.class_of(z)
        real_noise, fake_noise = self.noise_images(jax.random.fold_in(key, 1), state["step"],
                                                   real.shape)
        # DiffAugment's keys, one per call: D's real batch, D's fake batch, each G update
        # (unused without a policy).
        aug_root = jax.random.fold_in(key, 2)
        aug_keys = [jax.random.fold_in(aug_root, i) for i in range(2 + self.g_steps)]

        def forward(g_rest: Any) -> Callable:
            """G on this step's z as a function of its weights (BatchNorm state `g_rest`)."""
            return lambda g_params: self.generate(g_params, g_rest, z, train=True)

        fake, g_pullback, g_rest = jax.vjp(forward(state["g_rest"]), state["g_params"],
                                           has_aux=True)

        # ---- D: real -> 1, detached fake -> 0 (the spectral norms' one iteration: on real)
        def d_loss_fn(d_params: Any):
            real_logits, rest = self.discriminate(
                d_params, state["d_rest"], self.augment(aug_keys[0], real) + real_noise,
                real_labels, power_iteration=True)
            fake_in = self.augment(aug_keys[1], jax.lax.stop_gradient(fake)) + fake_noise
            fake_logits, rest = self.discriminate(d_params, rest, fake_in, fake_labels)
            loss = self.d_loss(real_logits, fake_logits, self.real_label)
            return loss, (real_logits, fake_logits, rest)

        (d_loss, (real_logits, fake_logits, d_rest)), d_grads = jax.value_and_grad(
            d_loss_fn, has_aux=True)(state["d_params"])
        d_updates, d_opt = self.d_tx.update(d_grads, state["d_opt"], state["d_params"])
        d_params = optax.apply_updates(state["d_params"], d_updates)

        # ---- G: fake -> 1 through the updated D (gradient to the images only, through the
        # augmentation; D's BatchNorm statistics and spectral vectors are left as they are)
        def g_loss_fn(images: jax.Array, aug_key: jax.Array):
            logits, _ = self.discriminate(d_params, d_rest,
                                          self.augment(aug_key, images) + fake_noise,
                                          fake_labels)
            return self.g_loss(logits)

        g_params, g_opt = state["g_params"], state["g_opt"]
        for i in range(self.g_steps):
            if i > 0:  # G changed: run it again on the same z
                fake, g_pullback, g_rest = jax.vjp(forward(g_rest), g_params, has_aux=True)
            g_loss, d_fake_images = jax.value_and_grad(g_loss_fn)(fake, aug_keys[2 + i])
            (g_grads,) = g_pullback(d_fake_images)
            g_updates, g_opt = self.g_tx.update(g_grads, g_opt, g_params)
            g_params = optax.apply_updates(g_params, g_updates)
        new_state = dict(state, g_params=g_params, g_rest=g_rest, g_opt=g_opt,
                         d_params=d_params, d_rest=d_rest, d_opt=d_opt, step=state["step"] + 1)
        if self.ema_decay > 0:
            t = state["step"].astype(jnp.float32)
            decay = jnp.minimum(self.ema_decay, (1.0 + t) / (10.0 + t))
            new_state["g_ema"] = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p,
                                              state["g_ema"], g_params)

        metrics = {
            "d_loss": d_loss,
            "g_loss": g_loss,
            # D(x) and D(G(z)) before D's update, on what D saw (augmented, noisy): the mean
            # sigmoid of the logits, which with the hinge loss are margins, not log-odds
            "d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
            "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits)),
            "spread": batch_spread(fake) / jnp.maximum(batch_spread(real), 1e-6),
        }
        return new_state, metrics

    def noise_images(self, key: jax.Array, step: jax.Array,
                     shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
        """(real, generated) noise images (B, S, S, C), or two zeros when there is none."""
        if self.instance_noise <= 0 and self.noise_final <= 0:
            return jnp.zeros(()), jnp.zeros(())
        std = self.noise_std(step)
        real_key, fake_key = jax.random.split(key)
        return (std * jax.random.normal(real_key, shape), std * jax.random.normal(fake_key, shape))

    def make_train_step(self) -> Callable:
        return jax.jit(self.train_step, donate_argnums=0)

    def make_sampler(self) -> Callable:
        """(g_params, g_rest, z) -> uint8 images (B, S, S, C), G with its running statistics."""

        def sample(g_params: Any, g_rest: Any, z: jax.Array) -> jax.Array:
            return to_uint8(self.generate(g_params, g_rest, z, train=False)[0], low=-1.0)

        return jax.jit(sample)


def build(cfg: GanConfig, *, image_size: int, channels: int, total_steps: int = 1,
          num_classes: int = 0) -> tuple[GanSteps, State]:
    """The two nets, their steps and the initial state (same seed, same weights).

    total_steps only places the learning-rate decay (cfg.lr_decay_start) and the end of the
    instance noise; the state's structure does not depend on it, so a checkpoint restores into
    a template built with any value. num_classes: the dataset's, which a class-conditional
    GAN (cfg.conditional) needs; ignored otherwise."""
    from realsys_cli.models.dcgan import Discriminator, Generator

    if cfg.conditional and num_classes < 2:
        raise ConfigError(f"conditional=true needs a dataset of at least 2 labelled classes, "
                          f"this one has {num_classes}; use --set conditional=false")
    k = num_classes if cfg.conditional else 0
    rngs = nnx.Rngs(params=cfg.seed)
    generator = Generator(latent_dim=cfg.latent_dim, image_size=image_size, channels=channels,
                          width=cfg.width, num_classes=k, rngs=rngs)
    discriminator = Discriminator(image_size=image_size, channels=channels, width=cfg.width,
                                  spectral_norm=cfg.spectral_norm, norm=cfg.d_norm,
                                  num_classes=k, rngs=rngs)

    def optimizer(rate: float, beta1: float, beta2: float) -> optax.GradientTransformation:
        return adam(rate, beta1, beta2, decay_start=cfg.lr_decay_start, total_steps=total_steps)

    d_adam = (cfg.learning_rate, cfg.beta1, cfg.beta2)
    d_tx = optimizer(*d_adam)
    g_tx = d_tx if cfg.g_adam() == d_adam else optimizer(*cfg.g_adam())
    steps = GanSteps(nnx.graphdef(generator), nnx.graphdef(discriminator), g_tx, d_tx,
                     cfg.latent_dim, cfg.latent_distribution, ema_decay=cfg.ema_decay,
                     real_label=cfg.real_label, instance_noise=cfg.instance_noise,
                     noise_final=cfg.instance_noise_final, total_steps=total_steps,
                     g_steps=cfg.g_steps, loss=cfg.loss, augment_policy=cfg.augment_policy,
                     num_classes=k)
    return steps, init_state(generator, discriminator, g_tx, d_tx, cfg.seed,
                             ema=cfg.ema_decay > 0)

