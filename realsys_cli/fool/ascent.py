"""`--method ascent`: gradient ascent on a class's logit in image space, from noise.

The lecture's "reverse gradient descent in image space", and the gradient-ascent baseline of
Nguyen, Yosinski, Clune (CVPR 2015; after Simonyan et al. 2013's class models): start from
uniform noise and repeat

    g = d J(logits(q(x))) / dx               (on the LOGITS: a saturated softmax has no gradient)
    x <- x + step_size * g / rms(g)          (per image, so every class moves at the same pace)
    x <- mean + (x - mean) * (1 - l2_decay)  (L2 decay towards the data's mean pixel, which is
                                              the zero of the network's normalised input)
    x <- blur(x) every few steps (optional), x <- clip(x, 0, 1)

where q rounds to the uint8 grid (straight-through), optionally after a random roll (jitter),
and J is the target's margin z_t - max_{j != t} z_j (default) or its bare logit z_t (the
paper's; see `objective_value` for why the default is the margin).
All targets go through one jitted, batched step; an image stops (its pixels freeze) as soon as
the target's softmax confidence reaches `confidence`. The step also records, on the device,
the first step at which each image reached argmax, 0.99, 0.999 and 0.9999.

With a `Realness` (fool-screen's joint attack) the objective becomes
J + realness_weight x min(R(q(x)), r*), R a GAN discriminator's realness logit and r* the
level at which it accepts the image; an image stops only once it is both confident and
accepted (R >= r*). The cap matters: D's logit is as easy to inflate as a class logit (a
first, uncapped run drove it to +23 against real digits' +3), and its gradient then drowned
the margin's; capped, D's term pushes only until the image is accepted. Without a Realness
(`realsys fool`, realness_weight 0) the step is the one above, operation for operation.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from realsys_cli.errors import ConfigError
from realsys_cli.fool.config import FoolConfig
from realsys_cli.fool.result import NEVER, Fooled, at_least, milestones, record
from realsys_cli.fool.target import FrozenClassifier, quantise
from realsys_cli.pictures import to_uint8
from realsys_cli.progress import SILENT, Progress

CHECK_EVERY_STEPS = 10  # how often the host asks whether every image is done


def gaussian_blur(x: jax.Array, sigma: float) -> jax.Array:
    """Separable Gaussian blur of (B, H, W, C) with edge padding."""
    radius = max(1, math.ceil(2 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = jnp.asarray(taps / taps.sum(), x.dtype)
    c = x.shape[-1]
    x = jnp.pad(x, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="edge")
    for kernel in (taps[:, None], taps[None, :]):  # (k, 1) then (1, k)
        x = jax.lax.conv_general_dilated(
            x, jnp.tile(kernel[:, :, None, None], (1, 1, 1, c)), (1, 1), "VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c)
    return x


def jitter(x: jax.Array, key: jax.Array, max_px: int) -> jax.Array:
    """Roll each image by its own random (dy, dx) in [-max_px, max_px]."""
    shifts = jax.random.randint(key, (x.shape[0], 2), -max_px, max_px + 1)
    return jax.vmap(lambda im, s: jnp.roll(im, (s[0], s[1]), axis=(0, 1)))(x, shifts)


def objective_value(logits: jax.Array, targets: jax.Array, objective: str) -> jax.Array:
    """(B, K) logits -> (B,) what the ascent maximises, always on the logits.

    "logit": z_t, the paper's (and Simonyan et al.'s) unnormalised class score.
    "margin": z_t - max_{j != t} z_j. On a network whose classes share features (circle,
    pentagon, hexagon) raising z_t alone can raise a rival's logit faster; the margin cannot
    be won that way, and unlike the softmax probability its gradient never vanishes.
    """
    chosen = jnp.take_along_axis(logits, targets[:, None], axis=1)[:, 0]  # (B,)
    if objective == "logit":
        return chosen
    others = jnp.where(jax.nn.one_hot(targets, logits.shape[1], dtype=bool), -jnp.inf, logits)
    return chosen - jnp.max(others, axis=1)


@dataclasses.dataclass(frozen=True)
class Realness:
    """A second judge to fool at once: a discriminator's realness logit of the images.

    fn(weights, x, key) -> (B,) float32 for x (B, S, S, C), pixels in [0, 1] at the
    classifier's input side (on the uint8 grid), traced inside the ascent step; `key` is for a
    judge that averages over noise. `threshold`: an image is accepted when fn(...) >=
    threshold, and the ascent raises fn only up to it; None: no cap, and an image stops on
    its confidence alone."""

    weights: Any
    fn: Callable[[Any, jax.Array, jax.Array], jax.Array]
    threshold: float | None = None


def make_ascent_step(net: FrozenClassifier, cfg: FoolConfig,
                     realness: Realness | None = None) -> Callable:
    """jit((weights, state, t) -> state); state = {x, targets, active, stop_step, reached, key}.

    weights: the classifier's (params, rest); with `realness`, the pair (classifier's,
    realness.weights), so that neither set is folded into the program as constants."""
    if cfg.realness_weight > 0 and realness is None:
        raise ConfigError("realness_weight needs a discriminator to ascend: it is for "
                          "`realsys fool-screen`'s joint attack (leave it at 0 here)")
    mean = jnp.asarray(net.stats.mean, jnp.float32)
    total = cfg.ascent_steps

    def step(weights: Any, state: dict[str, jax.Array], t: jax.Array) -> dict[str, jax.Array]:
        x, targets = state["x"], state["targets"]  # (B, S, S, C), (B,)
        key = jax.random.fold_in(state["key"], t)
        net_weights, d_weights = weights if realness is not None else (weights, None)
        d_key = jax.random.fold_in(key, 1) if realness is not None else None  # judge's noise

        def objective(x: jax.Array) -> tuple[jax.Array, Any]:
            seen = quantise(x)
            if cfg.jitter_px:
                seen = jitter(seen, key, cfg.jitter_px)
            logits = net.logits(net_weights, seen)  # (B, K)
            value = objective_value(logits, targets, cfg.ascent_objective)  # (B,)
            if realness is None:
                return jnp.sum(value), (logits, None)
            real = realness.fn(d_weights, seen, d_key)  # (B,)
            capped = real if realness.threshold is None else jnp.minimum(
                real, realness.threshold)  # no gradient once accepted
            return jnp.sum(value + cfg.realness_weight * capped), (logits, real)

        (_, (logits, real)), grad = jax.value_and_grad(objective, has_aux=True)(x)
        if cfg.jitter_px:  # the milestones are those of the image itself, not of its roll
            logits = net.logits(net_weights, quantise(x))
            if realness is not None:
                real = realness.fn(d_weights, quantise(x), d_key)
        probs = jax.nn.softmax(logits)  # (B, K)
        passed = milestones(probs, targets)  # (B, 4)
        reached = record(state["reached"], passed, t)
        confidence = jnp.take_along_axis(probs, targets[:, None], axis=1)[:, 0]
        done = state["active"] & (confidence >= at_least(cfg.confidence))
        if realness is not None and realness.threshold is not None:  # and the judge accepts
            done = done & (real >= realness.threshold)
        stop_step = jnp.where(done, t, state["stop_step"])
        active = state["active"] & ~done & (t < total)

        rms = jnp.sqrt(jnp.mean(jnp.square(grad), axis=(1, 2, 3), keepdims=True))  # (B,1,1,1)
        new = x + cfg.ascent_step_size * grad / (rms + 1e-12)
        new = mean + (new - mean) * (1.0 - cfg.l2_decay)
        if cfg.blur_sigma_px > 0:
            due = (t + 1) % cfg.blur_every_steps == 0
            new = jnp.where(due, gaussian_blur(new, cfg.blur_sigma_px), new)
        new = jnp.clip(new, 0.0, 1.0)
        x = jnp.where(active[:, None, None, None], new, x)
        return dict(state, x=x, active=active, stop_step=stop_step, reached=reached)

    return jax.jit(step)  # no donation: see perturb.make_pgd_step


def init_state(net: FrozenClassifier, targets: np.ndarray, seed: int,
               total_steps: int) -> dict[str, jax.Array]:
    """Uniform noise in [0, 1) from numpy (jax.random outside jit would compile for seconds)."""
    b = len(targets)
    rng = np.random.default_rng(seed)
    return net.to_device({
        "x": rng.random((b, *net.image_shape), np.float32),  # (B, S, S, C)
        "targets": np.asarray(targets, np.int32),
        "active": np.ones((b,), bool),
        "stop_step": np.full((b,), total_steps, np.int32),
        "reached": np.full((b, 4), NEVER, np.int32),
        "key": jax.random.key(seed),
    })


def ascend(net: FrozenClassifier, targets: np.ndarray, cfg: FoolConfig, *,
           progress: Progress = SILENT, realness: Realness | None = None) -> Fooled:
    """One fooling image per entry of `targets`, in jitted batches of cfg.batch_size; with
    `realness`, images that fool the classifier and the realness judge at once."""
    # `realsys fool` calls the step maker exactly as before (tests wrap it by that signature)
    step = (make_ascent_step(net, cfg) if realness is None
            else make_ascent_step(net, cfg, realness))
    weights = net.weights if realness is None else (net.weights, realness.weights)
    size = min(cfg.batch_size, len(targets))
    parts: list[Fooled] = []
    with progress.task("ascent" if realness is None else "joint ascent",
                       total=len(targets)) as task:
        for start in range(0, len(targets), size):
            chunk = np.asarray(targets[start : start + size])
            padded = np.resize(chunk, size)  # the same shape every call: one compilation
            state = init_state(net, padded, cfg.seed * 1_000_003 + start, cfg.ascent_steps)
            interrupted = False
            try:
                # t = 0 .. total: the last call only scores the final image
                for t in range(cfg.ascent_steps + 1):
                    state = step(weights, state, jnp.asarray(t, jnp.int32))
                    if t % CHECK_EVERY_STEPS == 0 and not bool(jnp.any(state["active"])):
                        break
            except KeyboardInterrupt:
                interrupted = True
            parts.append(_finish(net, state, len(chunk), interrupted))
            task.advance(len(chunk))
            if interrupted:
                break
    return Fooled.concat(parts)


def _finish(net: FrozenClassifier, state: dict[str, jax.Array], n: int,
            interrupted: bool) -> Fooled:
    images = to_uint8(np.asarray(state["x"][:n]))
    probs = net.predict(images)  # the saved uint8 images, scored again
    targets = np.asarray(state["targets"][:n])
    return Fooled(
        images=images, targets=targets,
        confidences=probs[np.arange(n), targets], predicted=probs.argmax(-1),
        steps=np.asarray(state["stop_step"][:n]), reached=np.asarray(state["reached"][:n]),
        unit="steps", interrupted=interrupted)
