"""The frame predictor's jitted train, eval and predict steps, over a pure-pytree train state.

The same steps serve both networks (the ConvLSTM and SimVP): each maps observed frames to the
logits of the future ones, `model(observed, horizon)`; the ConvLSTM alone also predicts the
observed frames 2..T (`predict_all`, for the observed-frames loss) and takes scheduled sampling.

The state is a dict of arrays, as the classifier's (jit donates it, orbax saves it as it is):

  {"params", "rest": the predictor's nnx.State (Params / the rest), "opt": optax state,
   "step": int32 (), "key": PRNG key (),
   and with --adversarial: "d_params", "d_rest", "d_opt": the discriminator's}

A batch is {"video": uint8 (B, T, H, W, C)}: frames [0, input_frames) are observed, the next
output_frames are the targets. The loss (Mathieu et al. 2015, eq. 6, with their weights by
default) is

  lambda_p * L_p(Y, Y^)  [+ lambda_gdl * L_gdl(Y, Y^) + lambda_adv * L_adv(D(X, Y^), 1)]
                        [+ lambda_obs * L_p(X[2:], X^[2:])]

with L_p the per-pixel MSE of sigmoid outputs or the BCE of the logits, and the last term the
next-frame predictions the encoder makes of the observed frames themselves. The discriminator is
updated first on the real and the (detached) predicted frames, then the predictor against the
updated discriminator; the predictor runs forward once (jax.vjp) for both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from realsys_cli.frames.metrics import masked_sums

Batch = dict[str, jax.Array]


def init_state(model: nnx.Module, tx: optax.GradientTransformation, seed: int, *,
               discriminator: nnx.Module | None = None,
               d_tx: optax.GradientTransformation | None = None) -> dict[str, Any]:
    _, params, rest = nnx.split(model, nnx.Param, ...)
    state = {"params": params, "rest": rest, "opt": tx.init(params),
             "step": jnp.zeros((), jnp.int32), "key": jax.random.key(seed)}
    if discriminator is not None and d_tx is not None:
        _, d_params, d_rest = nnx.split(discriminator, nnx.Param, ...)
        state.update(d_params=d_params, d_rest=d_rest, d_opt=d_tx.init(d_params))
    return state


def to_unit(video: jax.Array) -> jax.Array:
    """uint8 frames -> float32 in [0, 1]."""
    return video.astype(jnp.float32) / 255.0


def gradient_difference(pred: jax.Array, truth: jax.Array) -> jax.Array:
    """Mathieu et al.'s L_gdl with alpha = 1, averaged over pixels: (..., H, W, C) -> ()."""
    def grads(x: jax.Array) -> tuple[jax.Array, jax.Array]:
        return jnp.abs(jnp.diff(x, axis=-3)), jnp.abs(jnp.diff(x, axis=-2))

    (ty, tx), (py, px) = grads(truth), grads(pred)
    return jnp.abs(ty - py).mean() + jnp.abs(tx - px).mean()


@dataclasses.dataclass(frozen=True)
class FramesSteps:
    """Everything the steps close over; the make_* methods jit them."""

    graphdef: Any
    tx: optax.GradientTransformation
    schedule: optax.Schedule
    input_frames: int
    output_frames: int
    loss: str = "mse"
    reconstruction_weight: float = 1.0
    observed_loss_weight: float = 0.0
    scheduled_sampling_steps: int = 0
    d_graphdef: Any = None  # set with --adversarial
    d_tx: optax.GradientTransformation | None = None
    adversarial_weight: float = 0.05
    gdl_weight: float = 1.0

    @property
    def adversarial(self) -> bool:
        return self.d_graphdef is not None

    def predict_logits(self, params: Any, rest: Any, observed: jax.Array, horizon: int, *,
                       truth: jax.Array | None = None, teacher: jax.Array | None = None,
                       all_frames: bool = False) -> jax.Array:
        """observed (B, T, H, W, C) in [0, 1] -> logits (B, horizon, H, W, C), or with
        `all_frames` (the ConvLSTM's) of frames 2..T+horizon (B, T-1+horizon, H, W, C).

        The true future `truth` reaches the model only with a scheduled-sampling `teacher`
        mask (the ConvLSTM's; SimVP takes none, so its predictions cannot see the future)."""
        model = nnx.merge(self.graphdef, params, rest, copy=True)
        forced = {} if teacher is None else {"truth": truth, "teacher": teacher}
        if all_frames:
            return model.predict_all(observed, horizon, **forced)
        return model(observed, horizon, **forced)

    def _discriminate(self, d_params: Any, d_rest: Any, condition: jax.Array,
                      frames: jax.Array) -> jax.Array:
        """condition (B, H, W, C), frames (B, T, H, W, C) -> patch logits (B * T, h, w)."""
        d = nnx.merge(self.d_graphdef, d_params, d_rest, copy=True)
        b, t = frames.shape[:2]
        cond = jnp.broadcast_to(condition[:, None], frames.shape).reshape(b * t, *frames.shape[2:])
        return d(cond, frames.reshape(b * t, *frames.shape[2:]))

    def _teacher(self, key: jax.Array, step: jax.Array, batch_size: int) -> jax.Array | None:
        """Scheduled sampling: feed the truth with probability 1 -> 0 over the first steps."""
        if not self.scheduled_sampling_steps:
            return None
        p = jnp.clip(1.0 - step / self.scheduled_sampling_steps, 0.0, 1.0)
        return jax.random.bernoulli(key, p, (batch_size, self.output_frames)).astype(jnp.float32)

    def _reconstruction(self, logits: jax.Array, truth: jax.Array) -> jax.Array:
        if self.loss == "bce":
            return optax.sigmoid_binary_cross_entropy(logits, truth).mean()
        return jnp.square(jax.nn.sigmoid(logits) - truth).mean()

    def make_train_step(self) -> Callable:
        n_in, n_out = self.input_frames, self.output_frames
        with_observed = self.observed_loss_weight > 0 and n_in > 1

        def train_step(state: dict[str, Any], batch: Batch):
            video = to_unit(batch["video"])  # (B, T, H, W, C)
            observed, truth = video[:, :n_in], video[:, n_in : n_in + n_out]
            key = jax.random.fold_in(state["key"], state["step"])
            teacher = self._teacher(key, state["step"], video.shape[0])

            def forward(params: Any) -> jax.Array:
                return self.predict_logits(params, state["rest"], observed, n_out, truth=truth,
                                           teacher=teacher, all_frames=with_observed)

            # (B, n_in - 1 + n_out, H, W, C) with the observed frames' predictions, else
            # (B, n_out, H, W, C): one forward pass, pulled back once below.
            all_logits, pullback = jax.vjp(forward, state["params"])
            logits = all_logits[:, -n_out:]
            new_state = dict(state)
            metrics: dict[str, jax.Array] = {}
            d_params = None
            if self.adversarial:
                fake = jax.lax.stop_gradient(jax.nn.sigmoid(logits))
                d_params, d_metrics = self._discriminator_update(state, observed[:, -1], truth,
                                                                 fake, new_state)
                metrics.update(d_metrics)

            def loss_fn(all_logits: jax.Array):
                logits = all_logits[:, -n_out:]
                recon = self._reconstruction(logits, truth)
                terms = {}
                total = self.reconstruction_weight * recon
                if with_observed:  # next-frame predictions of observed frames 2..n_in
                    seen = self._reconstruction(all_logits[:, :-n_out], observed[:, 1:])
                    total = total + self.observed_loss_weight * seen
                    terms["observed_loss"] = seen
                if self.adversarial:
                    pred = jax.nn.sigmoid(logits)
                    d_logits = self._discriminate(d_params, state["d_rest"], observed[:, -1], pred)
                    adv = optax.sigmoid_binary_cross_entropy(d_logits,
                                                             jnp.ones_like(d_logits)).mean()
                    gdl = gradient_difference(pred, truth)
                    total = total + self.adversarial_weight * adv + self.gdl_weight * gdl
                    terms.update(reconstruction=recon, g_adversarial=adv, gdl=gdl)
                return total, terms

            (loss, terms), dlogits = jax.value_and_grad(loss_fn, has_aux=True)(all_logits)
            (grads,) = pullback(dlogits)
            updates, opt = self.tx.update(grads, state["opt"], state["params"])
            params = optax.apply_updates(state["params"], updates)
            h, w, c = truth.shape[-3:]
            pred = jax.nn.sigmoid(logits)
            metrics.update(terms, loss=loss, lr=self.schedule(state["step"]),
                           mse=jnp.square(pred - truth).mean() * (h * w * c))  # per frame
            new_state.update(params=params, opt=opt, step=state["step"] + 1)
            return new_state, metrics

        return jax.jit(train_step, donate_argnums=0)

    def _discriminator_update(self, state: dict[str, Any], condition: jax.Array,
                              truth: jax.Array, fake: jax.Array,
                              new_state: dict[str, Any]) -> tuple[Any, dict[str, jax.Array]]:
        """One Adam step of the discriminator: real frames -> 1, predicted frames -> 0."""
        def d_loss_fn(d_params: Any):
            real = self._discriminate(d_params, state["d_rest"], condition, truth)
            made = self._discriminate(d_params, state["d_rest"], condition, fake)
            loss = (optax.sigmoid_binary_cross_entropy(real, jnp.ones_like(real)).mean()
                    + optax.sigmoid_binary_cross_entropy(made, jnp.zeros_like(made)).mean())
            return loss, (jax.nn.sigmoid(real).mean(), jax.nn.sigmoid(made).mean())

        (d_loss, (p_real, p_fake)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
            state["d_params"])
        assert self.d_tx is not None
        d_updates, d_opt = self.d_tx.update(d_grads, state["d_opt"], state["d_params"])
        d_params = optax.apply_updates(state["d_params"], d_updates)
        new_state.update(d_params=d_params, d_opt=d_opt)
        return d_params, {"d_loss": d_loss, "d_real": p_real, "d_fake": p_fake}

    def make_eval_step(self) -> Callable:
        """Per-horizon sums over one padded batch, model and baselines (metrics.masked_sums)."""
        n_in, n_out = self.input_frames, self.output_frames

        def eval_step(params: Any, rest: Any, batch: Batch):
            video = to_unit(batch["video"])
            observed, truth = video[:, :n_in], video[:, n_in : n_in + n_out]
            pred = jax.nn.sigmoid(self.predict_logits(params, rest, observed, n_out))
            return masked_sums(observed, truth, pred, batch["mask"])

        return jax.jit(eval_step)

    def make_predict(self, horizon: int) -> Callable:
        """(params, rest, observed uint8 (B, T, H, W, C)) -> predicted frames in [0, 1]."""

        def predict(params: Any, rest: Any, observed: jax.Array) -> jax.Array:
            logits = self.predict_logits(params, rest, to_unit(observed), horizon)
            return jax.nn.sigmoid(logits)  # (B, horizon, H, W, C)

        return jax.jit(predict)
