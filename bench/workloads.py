"""The bench's workloads, built from realsys's public pieces (bench/jax_worker.py times them).

Each is the PyTorch peer's workload (bench/peer_torch.py: the same shapes, batch sizes and
parameter counts) run through the code a realsys command runs:

- classifier / classifier_small: the jitted train step of `realsys train-classifier`
  (classifier.setup.make_model / make_steps -> ClassifierSteps.make_train_step) with the recipe
  alexnet_shapes (alexnet-small, 64 px: 4-px padded random crop, flips, fancy-PCA noise, SGD
  momentum 0.9 + weight decay, cosine schedule) and lenet_digits (lenet, 28 px: no
  augmentation) at batch 128. The uint8 batch is already on the device; the step includes
  realsys's on-device augmentation and normalisation (the peer's step starts from float32
  tensors), the optimizer update, and the loss/accuracy/lr metrics.
- classifier_eval: ClassifierSteps.make_predict (what `realsys classify` runs: uint8 -> centre
  crop -> normalise -> forward -> softmax), batch 128, alexnet-small.
- dcgan: `realsys train-gan`'s step (gan.steps.build -> GanSteps.train_step) at 64x64x3, nz 100,
  ngf = ndf = 64, Adam 2e-4 beta1 0.5, normal z as the peer; one D step on real + fake and one G
  step, batch 64.
- frames: the peer's one-cell ConvLSTM (`BenchConvLSTM` below, from models.convlstm's cell: it is
  not predict-frames' encoder-forecaster) trained with BCE and training.optim's Adam under one
  jit with the state donated, batch 16.
- frames_simvp: `realsys predict-frames`' default step (frames.recipes picks simvp_moving_digits:
  SimVP gSTA, 817,504 parameters, batch 8; frames.setup.make_model / make_steps ->
  FramesSteps.make_train_step): 10 uint8 frames in, MSE on the sigmoid of all 10 future frames,
  Adam 4e-3 with its warmup-cosine schedule and clipping at 1, on 64x64x1 clips. The
  peer is bench/peer_torch_simvp.py's SimVP, the same layers and parameter count.
- fool: fool.ascent.make_ascent_step (what `realsys fool` runs) on the classifier workload's
  network (alexnet-small, 64 px, untrained weights: the cost of a step does not depend on them),
  batch 16, one target class. Beyond the peer's step it rounds to the uint8 grid
  (straight-through), normalises the input, and records softmax milestones.

Importing this module imports jax: jax_worker.py sets XLA_FLAGS first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from realsys_cli.config import read_config_file, recipe_path
from realsys_cli.models import count_params
from realsys_cli.models.convlstm import ConvLSTMCell

ROOT = Path(__file__).resolve().parent.parent

BATCH = {"classifier": 128, "classifier_eval": 128, "classifier_small": 128,
         "dcgan": 64, "frames": 16, "fool": 16,
         # predict-frames' own batch (its peer reads the same recipe)
         "frames_simvp": read_config_file(recipe_path("simvp_moving_digits"))["batch_size"]}
RECIPES = {"classifier": "alexnet_shapes", "classifier_eval": "alexnet_shapes",
           "classifier_small": "lenet_digits"}
SIDES = {"classifier": (64, 3), "classifier_eval": (64, 3), "classifier_small": (28, 1)}


class Skip(Exception):
    """The workload cannot be built; the message says why."""


class Workload:
    """One step to time: `run(n)` runs n steps and waits for the last result."""

    unit = "img"
    units_per_step = 1
    params: Any = 0
    describe = ""

    def step(self) -> Any:
        raise NotImplementedError

    def run(self, n: int) -> float:
        t0 = time.perf_counter()
        out = None
        for _ in range(n):
            out = self.step()
        jax.block_until_ready(out)
        return time.perf_counter() - t0


class ClassifierWorkload(Workload):
    """realsys's classifier train step (or predict), built exactly as train-classifier does."""

    def __init__(self, name: str, overrides: dict[str, Any] | None = None):
        from realsys_cli.classifier.augment import PixelStats
        from realsys_cli.classifier.config import ClassifierConfig
        from realsys_cli.classifier.setup import DataFacts, make_model, make_steps
        from realsys_cli.classifier.steps import init_state
        from realsys_cli.config import resolve_config
        from realsys_cli.training import distributed

        batch, (side, channels) = BATCH[name], SIDES[name]
        cfg = resolve_config(ClassifierConfig, config_file=recipe_path(RECIPES[name]),
                             options={"batch_size": batch, **(overrides or {})})
        facts = DataFacts(tuple(f"class{i}" for i in range(10)), channels, side, side)
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (batch, side, side, channels), dtype=np.uint8)
        labels = rng.integers(0, 10, (batch,)).astype(np.int32)
        stats = PixelStats.from_images(images)
        model = make_model(cfg, facts)
        steps = make_steps(cfg, facts, model, stats, total_steps=100_000)
        mesh = distributed.data_mesh()
        self.state = distributed.replicate(init_state(model, steps.tx, cfg.seed), mesh)
        self.params = count_params(self.state["params"])
        self.graphdef, self.stats = steps.graphdef, stats
        self.units_per_step = batch
        self.describe = (f"{cfg.model} {side}px, {RECIPES[name]}: crop_padding={cfg.crop_padding} "
                         f"flip={cfg.flip} pca_noise={cfg.pca_noise} {cfg.optimizer} "
                         f"wd={cfg.weight_decay}")
        if name == "classifier_eval":
            self.batch = distributed.shard_batch({"image": images}, mesh)["image"]
            self.predict = steps.make_predict()
            self.step = lambda: self.predict(self.state["params"], self.state["rest"], self.batch)
            self.describe = f"{cfg.model} {side}px, make_predict (centre crop, softmax)"
        else:
            self.batch = distributed.shard_batch({"image": images, "label": labels}, mesh)
            self.train_step = steps.make_train_step()
            self.step = self._train
        jax.block_until_ready((self.state, self.batch))

    def _train(self) -> Any:
        self.state, metrics = self.train_step(self.state, self.batch)
        return self.state, metrics


class StepWorkload(Workload):
    """A jitted `step(carry) -> carry` of one of realsys's jobs (GAN, frames, fooling)."""

    unit = "step"

    def __init__(self, fn: Callable[[Any], Any], carry: Any, params: Any, describe: str, *,
                 units_per_step: int = 1, unit: str = "step"):
        self.fn, self.carry, self.params, self.describe = fn, carry, params, describe
        self.units_per_step, self.unit = units_per_step, unit

    def step(self) -> Any:
        self.carry = self.fn(self.carry)
        return self.carry


def dcgan_workload() -> StepWorkload:
    from realsys_cli.gan.config import GanConfig
    from realsys_cli.gan.steps import build

    cfg = GanConfig(latent_dim=100, width=64, latent_distribution="normal",
                    learning_rate=2e-4, beta1=0.5, seed=0)
    steps, state = build(cfg, image_size=64, channels=3)
    rng = np.random.default_rng(0)
    batch = {"image": jnp.asarray(rng.integers(0, 256, (BATCH["dcgan"], 64, 64, 3), np.uint8))}

    def step(carry: dict[str, Any]) -> dict[str, Any]:
        return steps.train_step(carry, batch)[0]

    return StepWorkload(jax.jit(step, donate_argnums=0), state,
                        [count_params(state["g_params"]), count_params(state["d_params"])],
                        "gan.steps.build -> GanSteps.train_step (one D + one G update)")


class BenchConvLSTM(nnx.Module):
    """The peer's `frames` network: (B, 10, 64, 64, 1) -> next-frame logits (B, 64, 64, 1).

    One ConvLSTM cell (64 hidden, 3x3) on the unpatched frames and a 3x3 head; 150,593
    parameters as in bench/peer_torch.py's ConvLSTMPredictor (zero forget-gate bias, like
    PyTorch's default init).
    """

    def __init__(self, *, channels: int = 1, hidden: int = 64, rngs: nnx.Rngs) -> None:
        self.cell = ConvLSTMCell(channels, hidden, 3, rngs=rngs, forget_bias=0.0)
        self.head = nnx.Conv(hidden, channels, (3, 3), padding="SAME", rngs=rngs)

    def __call__(self, frames: jax.Array) -> jax.Array:
        state = self.cell.zero_state(frames[:, 0])
        for t in range(frames.shape[1]):  # Python-unrolled, as models.convlstm
            state = self.cell(frames[:, t], state)
        return self.head(state[0])


def frames_workload() -> StepWorkload:
    from realsys_cli.training import optim

    model = BenchConvLSTM(rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optim.build_optimizer(optim.OptimizerSpec(name="adam", learning_rate=1e-3,
                                                   weight_decay=0.0, schedule="constant"))
    rng = np.random.default_rng(0)
    seq = rng.random((BATCH["frames"], 11, 64, 64, 1), dtype=np.float32)  # (B, T+1, H, W, C)
    x, y = jax.device_put(seq[:, :10]), jax.device_put(seq[:, 10])

    def train_step(state: dict[str, Any]) -> dict[str, Any]:
        def loss_fn(p: Any) -> jax.Array:
            logits = nnx.merge(graphdef, p, rest, copy=True)(x)  # (B, 64, 64, 1)
            return optax.sigmoid_binary_cross_entropy(logits, y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(state["params"])
        updates, opt = tx.update(grads, state["opt"], state["params"])
        return dict(params=optax.apply_updates(state["params"], updates), opt=opt, loss=loss)

    carry = dict(params=params, opt=tx.init(params), loss=jnp.zeros(()))
    return StepWorkload(jax.jit(train_step, donate_argnums=0), carry, count_params(params),
                        "BenchConvLSTM (models.convlstm.ConvLSTMCell), Python-unrolled 10 "
                        "steps; BCE + training.optim adam")


def frames_simvp_workload(set_items: list[str] | None = None) -> StepWorkload:
    """predict-frames' default step; `set_items` (`--set` items, e.g. ["simvp_patch=2"]) make
    a variant of it (bench/frames_variants.py); the bench itself gives none."""
    from realsys_cli.frames import setup
    from realsys_cli.frames.recipes import resolve_frames_config
    from realsys_cli.frames.steps import init_state

    cfg = resolve_frames_config(config_file=None, options={"batch_size": BATCH["frames_simvp"]},
                                set_items=set_items)  # what `realsys predict-frames` trains
    model = setup.make_model(cfg, channels=1)
    steps = setup.make_steps(cfg, model, total_steps=100_000)
    state = init_state(model, steps.tx, cfg.seed)
    rng = np.random.default_rng(0)
    frames = cfg.input_frames + cfg.output_frames
    batch = {"video": jax.device_put(
        rng.integers(0, 256, (cfg.batch_size, frames, 64, 64, 1), dtype=np.uint8))}
    train_step = steps.make_train_step()

    def step(carry: dict[str, Any]) -> dict[str, Any]:
        return train_step(carry, batch)[0]

    return StepWorkload(step, state, count_params(state["params"]),
                        f"frames.setup -> FramesSteps.make_train_step, recipe {cfg.recipe or '-'}: "
                        f"SimVP {cfg.simvp_translator}, {cfg.optimizer} {cfg.learning_rate:g} "
                        f"{cfg.schedule}, clip {cfg.grad_clip_norm:g}")


def fool_workload() -> StepWorkload:
    from realsys_cli.fool import ascent
    from realsys_cli.fool.config import FoolConfig
    from realsys_cli.fool.target import FrozenClassifier

    base = ClassifierWorkload("classifier_eval")  # alexnet-small 64 px, its pixel stats
    # on one plain device, as fool.target.load_frozen puts them (mixed layouts compile twice)
    weights = jax.device_put((base.state["params"], base.state["rest"]), jax.devices()[0])
    net = FrozenClassifier(
        workdir=ROOT, graphdef=base.graphdef, weights=weights, stats=base.stats,
        class_names=tuple(f"class{i}" for i in range(10)), image_size=64, resize_size=64,
        in_channels=3, checkpoint="untrained")
    cfg = FoolConfig(method="ascent", batch_size=BATCH["fool"], ascent_steps=10**6)
    step = ascent.make_ascent_step(net, cfg)
    state = ascent.init_state(net, np.full((BATCH["fool"],), 3), 0, cfg.ascent_steps)

    def run(c: Any) -> Any:  # as fool.ascent.ascend calls it
        return step(net.weights, c[0], jnp.asarray(c[1], jnp.int32)), c[1] + 1

    return StepWorkload(run, (state, 0), base.params, "fool.ascent.make_ascent_step (quantise, "
                        "normalise, milestones), alexnet-small 64 px untrained")


BUILDERS: dict[str, Callable[[], Workload]] = {
    **{name: (lambda name=name: ClassifierWorkload(name)) for name in SIDES},
    "dcgan": dcgan_workload,
    "frames": frames_workload,
    "frames_simvp": frames_simvp_workload,
    "fool": fool_workload,
}


def build(name: str) -> Workload:
    if name not in BUILDERS:
        raise Skip(f"unknown workload {name!r}; workloads: {', '.join(BUILDERS)}")
    return BUILDERS[name]()
