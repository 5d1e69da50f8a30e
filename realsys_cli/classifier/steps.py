"""The classifier's jitted train and eval steps, over a pure-pytree train state.

The state is a dict of arrays (so jit can donate it and orbax can save it as it is):

  {"params": nnx.State of Params, "rest": nnx.State of everything else (dropout RNG counts,
   batch statistics), "opt": optax state, "step": int32 (), "key": PRNG key ()}

Both steps are written for one global batch; with the batch sharded over a "data" mesh axis and
the state replicated, XLA makes them data parallel (the mean loss becomes an all-reduce).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from realsys_cli.classifier.augment import AugmentSpec, PixelStats, eval_views, train_augment
from realsys_cli.training import optim


def init_state(model: nnx.Module, tx: optax.GradientTransformation, seed: int) -> dict[str, Any]:
    _, params, rest = nnx.split(model, nnx.Param, ...)
    return {"params": params, "rest": rest, "opt": tx.init(params),
            "step": jnp.zeros((), jnp.int32), "key": jax.random.key(seed)}


@dataclasses.dataclass(frozen=True)
class ClassifierSteps:
    """Everything the steps close over; `make_train_step` / `make_eval_step` jit them."""

    graphdef: Any
    tx: optax.GradientTransformation
    schedule: optax.Schedule
    augment: AugmentSpec
    stats: PixelStats
    num_classes: int
    label_smoothing: float = 0.0
    ten_crop: bool = False

    def _apply(self, params: Any, rest: Any, x: jax.Array, train: bool) -> tuple[jax.Array, Any]:
        model = nnx.merge(self.graphdef, params, rest, copy=True)
        logits = model(x, train=train)  # (B, K) float32
        return logits, nnx.state(model, nnx.Not(nnx.Param))

    def make_train_step(self) -> Callable:
        def train_step(state: dict[str, Any], batch: dict[str, jax.Array]):
            key = jax.random.fold_in(state["key"], state["step"])
            x = train_augment(batch["image"], key, self.augment, self.stats)  # (B, S, S, C)
            labels = batch["label"]  # (B,)
            targets = optax.smooth_labels(jax.nn.one_hot(labels, self.num_classes),
                                          self.label_smoothing)

            def loss_fn(params: Any, rest: Any):
                logits, new_rest = self._apply(params, rest, x, train=True)
                loss = optax.softmax_cross_entropy(logits, targets).mean()
                return loss, (logits, new_rest)

            (loss, (logits, rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                state["params"], state["rest"])
            updates, opt = self.tx.update(grads, state["opt"], state["params"])
            params = optax.apply_updates(state["params"], updates)
            metrics = {
                "loss": loss,
                "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels),
                "lr": self.schedule(state["step"]) * optim.lr_factor(opt),
            }
            new_state = dict(state, params=params, rest=rest, opt=opt, step=state["step"] + 1)
            return new_state, metrics

        return jax.jit(train_step, donate_argnums=0)

    def make_eval_step(self) -> Callable:
        """Sums over one padded batch: loss, top-1/top-5 hits, count, and the confusion matrix."""
        k = self.num_classes
        top = min(5, k)

        def eval_step(params: Any, rest: Any, batch: dict[str, jax.Array]):
            views = eval_views(batch["image"], self.augment, self.stats, self.ten_crop)
            probs = jnp.mean(jnp.stack([jax.nn.softmax(self._apply(params, rest, v, False)[0])
                                        for v in views]), axis=0)  # (B, K)
            labels, mask = batch["label"], batch["mask"].astype(jnp.float32)
            p_true = jnp.take_along_axis(probs, labels[:, None], axis=1)[:, 0]
            pred = jnp.argmax(probs, -1)
            in_top = jnp.any(jax.lax.top_k(probs, top)[1] == labels[:, None], axis=1)
            confusion = jnp.einsum("b,bi,bj->ij", mask, jax.nn.one_hot(labels, k),
                                   jax.nn.one_hot(pred, k))  # (K true, K predicted)
            return {
                "loss": jnp.sum(-jnp.log(jnp.maximum(p_true, 1e-12)) * mask),
                "top1": jnp.sum((pred == labels) * mask),
                "top5": jnp.sum(in_top * mask),
                "count": jnp.sum(mask),
                "confusion": confusion,
            }

        return jax.jit(eval_step)

    def make_predict(self) -> Callable:
        """Probabilities (B, K) for uint8 images at the loader's size (centre or 10 crops)."""

        def predict(params: Any, rest: Any, images: jax.Array) -> jax.Array:
            views = eval_views(images, self.augment, self.stats, self.ten_crop)
            return jnp.mean(jnp.stack([jax.nn.softmax(self._apply(params, rest, v, False)[0])
                                       for v in views]), axis=0)

        return jax.jit(predict)
