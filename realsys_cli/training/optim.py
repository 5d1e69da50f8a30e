"""Optimizers and learning-rate schedules from a config, in one place (an optax chain).

  sgd     SGD with momentum and weight decay added to the gradient, as in AlexNet
          (w <- w - lr * (momentum trace of (grad + wd * w)))
  adamw   Adam with decoupled weight decay
  adam    plain Adam (DCGAN: lr 2e-4, beta1 0.5)

Schedules: "constant", "plateau" (AlexNet: divide by 10 when validation accuracy stops
improving, at most 3 times), "cosine" (linear warmup then cosine decay to 0), "linear_decay"
(constant for the first decay_start x total_steps steps, then linearly to 0 at total_steps: the
DCGAN recipes' late decay), "onecycle" (OpenSTL's: torch's OneCycleLR with its defaults, by
optax.cosine_onecycle_schedule: cosine from lr/25 up to lr over the first 30% of total_steps,
then cosine down to lr/25/1e4; warmup_steps unused; Adam's beta1 is not cycled). Schedules
read the optimizer's own step count (saved in its state), so a resumed run continues them
exactly. The plateau
factor is a hyper-parameter injected into the optimizer state, so it is checkpointed with it and
a resumed run continues at the same learning rate.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import optax

from realsys_cli.errors import ConfigError

OPTIMIZERS = ("sgd", "adamw", "adam")
SCHEDULES = ("constant", "plateau", "cosine", "linear_decay", "onecycle")
# onecycle: torch.optim.lr_scheduler.OneCycleLR's pct_start and div_factor, OpenSTL's
# final_div_factor (openstl/core/optim_scheduler.py)
ONECYCLE_PCT_START, ONECYCLE_DIV_FACTOR, ONECYCLE_FINAL_DIV_FACTOR = 0.3, 25.0, 1e4


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    name: str = "sgd"
    learning_rate: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    beta1: float = 0.9
    beta2: float = 0.999  # Adam's (optax's default)
    schedule: str = "constant"
    warmup_steps: int = 0
    total_steps: int = 1
    grad_clip_norm: float = 0.0  # 0 = off
    decay_start: float = 1.0  # linear_decay: the fraction of total_steps at a constant rate


def learning_rate_schedule(spec: OptimizerSpec) -> optax.Schedule:
    if spec.schedule == "onecycle":
        return optax.cosine_onecycle_schedule(
            transition_steps=max(spec.total_steps, 1), peak_value=spec.learning_rate,
            pct_start=ONECYCLE_PCT_START, div_factor=ONECYCLE_DIV_FACTOR,
            final_div_factor=ONECYCLE_FINAL_DIV_FACTOR)
    if spec.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0,
            peak_value=spec.learning_rate,
            warmup_steps=spec.warmup_steps,
            decay_steps=max(spec.total_steps, spec.warmup_steps + 1),
            end_value=0.0,
        )
    if spec.schedule == "linear_decay" and spec.decay_start < 1.0:
        flat = int(spec.decay_start * spec.total_steps)
        return optax.join_schedules(
            [optax.constant_schedule(spec.learning_rate),
             optax.linear_schedule(spec.learning_rate, 0.0, max(spec.total_steps - flat, 1))],
            [flat])
    if spec.warmup_steps:
        return optax.linear_schedule(0.0, spec.learning_rate, spec.warmup_steps)
    return optax.constant_schedule(spec.learning_rate)


def build_optimizer(spec: OptimizerSpec) -> optax.GradientTransformation:
    if spec.name not in OPTIMIZERS:
        raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {spec.name!r}")
    if spec.schedule not in SCHEDULES:
        raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, got {spec.schedule!r}")
    lr = learning_rate_schedule(spec)
    parts = []
    if spec.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(spec.grad_clip_norm))
    if spec.name == "sgd":
        if spec.weight_decay:
            parts.append(optax.add_decayed_weights(spec.weight_decay))
        parts.append(optax.sgd(lr, momentum=spec.momentum or None))
    elif spec.name == "adamw":
        parts.append(optax.adamw(lr, b1=spec.beta1, b2=spec.beta2, weight_decay=spec.weight_decay))
    else:
        parts.append(optax.adam(lr, b1=spec.beta1, b2=spec.beta2))
    # The plateau factor: multiplies every update; the host lowers it between epochs.
    parts.append(optax.inject_hyperparams(optax.scale)(step_size=1.0))
    return optax.chain(*parts)


def lr_factor(opt_state: Any) -> Any:
    return opt_state[-1].hyperparams["step_size"]


def set_lr_factor(opt_state: Any, value: float) -> Any:
    """A copy of the optimizer state with the plateau factor set (a host-side decision)."""
    inject = opt_state[-1]
    hyper = dict(inject.hyperparams, step_size=value * (inject.hyperparams["step_size"] * 0 + 1))
    return (*opt_state[:-1], inject._replace(hyperparams=hyper))


@dataclasses.dataclass
class Plateau:
    """Divide the learning rate by 10 when the watched metric stops improving (AlexNet)."""

    patience: int = 2
    max_reductions: int = 3
    best: float = float("-inf")
    bad_epochs: int = 0
    reductions: int = 0
    factor: float = 1.0

    def update(self, value: float) -> bool:
        """Feed one epoch's validation accuracy; True when the learning rate was just cut."""
        if value > self.best + 1e-4:
            self.best, self.bad_epochs = value, 0
            return False
        self.bad_epochs += 1
        if self.bad_epochs >= self.patience and self.reductions < self.max_reductions:
            self.factor /= 10.0
            self.reductions += 1
            self.bad_epochs = 0
            return True
        return False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
