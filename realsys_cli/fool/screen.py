"""`realsys fool-screen`: does a GAN's discriminator catch fooling images?

The lecture note puts generative models right after fooling images as a "possible solution":
a model of what real images look like should reject the noise and patterns a classifier is
sure of. Measured here, in three parts:

  1. the images: fooling images of every method (`realsys fool` runs given with --fooled, or
     made here: ascent, evolve direct, evolve cppn, perturb), real test images of the
     classifier's own dataset (D never saw its test split) and, as a check that D still
     separates anything, G's own samples;
  2. the screen: D's realness logit for every image; per group, the AUROC of real (positive)
     against that group (negative), the threshold that keeps `keep_real` (95%) of the real
     images, the share of the group it rejects, and the medians of D's score and of the
     classifier's confidence;
  3. the joint attack: gradient ascent from noise on the target's margin plus
     realness_weight x D's logit (fool/ascent.py with a `Realness`), an image stopping once
     it is both confident and accepted; reported: the share that fools both.

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
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from realsys_cli.config import apply_overrides, check_fields, config_to_dict, field_names
from realsys_cli.errors import ConfigError
from realsys_cli.fool import report
from realsys_cli.fool.config import FoolConfig
from realsys_cli.fool.result import Fooled, passes
from realsys_cli.fool.target import FrozenClassifier, fit_images, load_frozen
from realsys_cli.outputs import check_creatable
from realsys_cli.progress import SILENT, Progress

log = logging.getLogger("realsys")

# The groups made when no --fooled run is given: (FoolConfig method, encoding, label).
METHODS = {"ascent": ("ascent", "direct"), "evolve/direct": ("evolve", "direct"),
           "evolve/cppn": ("evolve", "cppn"), "perturb": ("perturb", "direct")}
SCORE_BATCH = 500  # images per jitted call of D
MAX_DOWNSCALE = 2.0  # refuse a D that would see the classifier's images shrunk more than this


@dataclasses.dataclass(frozen=True)
class ScreenConfig:
    """fool-screen's own fields; the attacks' (count, confidence, steps, ...) are FoolConfig's."""

    real_images: int = 1000  # real test images scored (the first N of the classifier's test split)
    generated_images: int = 1000  # G's samples scored (the check that D separates anything)
    keep_real: float = 0.95  # the threshold keeps this share of the real images
    methods: tuple[str, ...] = tuple(METHODS)  # made when no --fooled run is given
    joint: bool = True  # run the joint attack (classifier and D together)
    # the joint attack stops an image at D logit >= threshold + joint_margin: its in-step D
    # (jax resize, one noise draw) differs a little from the host scoring that is reported
    joint_margin: float = 0.5
    noise_draws: int = 8  # D trained under instance noise: mean logit over this many draws
    sheet_per_group: int = 10  # screened_sheet.png: the images D scores highest, per group

    def __post_init__(self) -> None:
        for name in ("real_images", "generated_images", "noise_draws", "sheet_per_group"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not self.joint_margin >= 0:
            raise ValueError(f"joint_margin must be >= 0, got {self.joint_margin}")
        if not 0.0 < self.keep_real < 1.0:
            raise ValueError(f"keep_real must be in (0, 1), got {self.keep_real}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"methods must be some of {', '.join(METHODS)}, got "
                             f"{', '.join(self.methods) or 'none'}")
        check_fields(self)


def resolve_configs(*, config_file: str | Path | None, set_items: Sequence[str] | None,
                    screen_options: dict[str, Any], fool_options: dict[str, Any],
                    ) -> tuple[ScreenConfig, FoolConfig]:
    """Both configs from one TOML and one list of --set items: a key goes to the config that
    has it (ScreenConfig first). Order as everywhere: defaults, file, options, --set."""
    from realsys_cli.config import parse_set_options, read_config_file

    ours = set(field_names(ScreenConfig))
    layers = [(read_config_file(config_file) if config_file else {}, str(config_file)),
              (None, "the command line"), (parse_set_options(list(set_items or [])), "--set")]
    screen, fool = ScreenConfig(), FoolConfig()
    for values, source in layers:
        if values is None:  # the explicit options sit between the file and --set
            screen = apply_overrides(screen, _given(screen_options), source=source)
            fool = apply_overrides(fool, _given(fool_options), source=source)
            continue
        screen = apply_overrides(screen, {k: v for k, v in values.items() if k in ours},
                                 source=source)
        fool = apply_overrides(fool, {k: v for k, v in values.items() if k not in ours},
                               source=source)
    return screen, fool


def _given(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if v is not None}


# ------------------------------------------------------------------------------ the statistics
def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a positive scores above a negative), ties counted half: the Mann-Whitney U statistic
    over (n_pos x n_neg). 1 = every positive above every negative, 0.5 = chance (or all tied).

    By ranks: U = (sum of the positives' ranks in the pooled sample) - n_pos (n_pos + 1) / 2,
    each group of tied scores taking the mean of the ranks it spans."""
    pos, neg = np.asarray(positive, np.float64), np.asarray(negative, np.float64)
    if not len(pos) or not len(neg):
        raise ValueError("AUROC needs at least one positive and one negative score")
    pooled = np.concatenate([pos, neg])  # (n_pos + n_neg,)
    _, inverse, counts = np.unique(pooled, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)  # 1-based rank of the last member of each tie group
    mean_rank = ends - (counts - 1) / 2.0  # the mean of ranks ends-counts+1 .. ends
    ranks = mean_rank[inverse]
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2.0
    return float(u / (len(pos) * len(neg)))


def threshold_keeping(real: np.ndarray, keep: float) -> float:
    """The highest score t with mean(real >= t) >= keep: the k-th smallest real score (0-based
    k = floor(n (1 - keep)), the 5th percentile for keep 0.95). Accepted: score >= t."""
    scores = np.sort(np.asarray(real, np.float64))
    k = math.floor(len(scores) * (1.0 - keep) + 1e-9)  # 1e-9: 1000 x 0.05 is 50.0000000001
    return float(scores[min(k, len(scores) - 1)])


def rejected_share(scores: np.ndarray, threshold: float) -> float:
    """The share of images scored below the threshold (rejected by the screen)."""
    return float(np.mean(np.asarray(scores, np.float64) < threshold))


# ---------------------------------------------------------------------------- the discriminator
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


# -------------------------------------------------------------------------------- the images
@dataclasses.dataclass
class Group:
    """One set of images to screen, with what the classifier and D make of them."""

    label: str  # "ascent", "evolve/cppn", "real (test)", ...
    images: np.ndarray  # uint8 (N, S, S, C) at the classifier's side
    targets: np.ndarray | None  # (N,) fooling images' target classes; None for real/generated
    method: str = ""  # the FoolConfig method (perturb's success is the argmax)
    source: str = ""  # the run it came from, or "made here"
    confidences: np.ndarray | None = None  # (N,) target prob (fooling) or max prob (others)
    fooled: np.ndarray | None = None  # (N,) bool: counts as a fooling image (fooling groups)
    scores: np.ndarray | None = None  # (N,) D's realness logits

    @property
    def is_fooling(self) -> bool:
        return self.targets is not None


def read_fool_run(path: str | Path) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """(report, images uint8 (N, H, W, C), targets (N,)) of a `realsys fool` run, or a
    ConfigError saying why `path` is not one."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"--fooled {path} does not exist (give a `realsys fool` run)")
    try:
        saved = json.loads((path / "report.json").read_text())
        with np.load(path / "images.npz") as arrays:
            images, targets = arrays["images"], arrays["targets"]
    except (OSError, ValueError, KeyError):
        raise ConfigError(f"--fooled {path} is not a `realsys fool` run (it needs the "
                          "report.json and images.npz that fool writes)") from None
    if not isinstance(saved, dict) or saved.get("method") not in ("ascent", "evolve",
                                                                  "perturb"):
        raise ConfigError(f"--fooled {path} is not a `realsys fool` run (its report.json names "
                          "no fool method)")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3) or (
            len(targets) != len(images)):
        raise ConfigError(f"--fooled {path}: images.npz does not hold fool's uint8 images")
    if not len(images):
        raise ConfigError(f"--fooled {path} holds no images")
    return saved, images, targets.astype(np.int64)


def fool_run_group(path: str | Path, net: FrozenClassifier) -> Group:
    saved, images, targets = read_fool_run(path)
    if targets.min() < 0 or targets.max() >= net.num_classes:
        raise ConfigError(f"--fooled {path} has target classes the classifier in "
                          f"{net.workdir} does not have")
    made_against = saved.get("checkpoint")
    if made_against and Path(made_against).resolve() != net.workdir.resolve():
        log.warning("--fooled %s was made against %s, not %s: its confidences here are the "
                    "latter's", path, made_against, net.workdir)
    method = saved["method"]
    label = f"evolve/{saved.get('encoding') or 'direct'}" if method == "evolve" else method
    images = fit_images(images, net.image_size, net.in_channels)
    return Group(label, images, targets, method=method, source=str(path))


def made_groups(net: FrozenClassifier, cfg: FoolConfig, screen: ScreenConfig, out: Path, *,
                progress: Progress) -> list[Group]:
    """Fooling images of every method in screen.methods, `cfg.count_per_class` per class,
    each saved like a fool run in out/made/<method>/ (so it can be given as --fooled)."""
    from realsys_cli.fool.run import attack

    targets = list(range(net.num_classes))
    groups = []
    for label in screen.methods:
        method, encoding = METHODS[label]
        mine = dataclasses.replace(cfg, method=method, encoding=encoding, realness_weight=0.0)
        t0 = time.perf_counter()
        fooled = attack(net, mine, targets, progress=progress)
        folder = out / "made" / label.replace("/", "_")
        _save_as_fool_run(folder, fooled, net, mine, time.perf_counter() - t0)
        if fooled.interrupted:
            raise KeyboardInterrupt
        log.info("made %d %s image(s) in %.1f s -> %s", len(fooled), label,
                 time.perf_counter() - t0, folder)
        groups.append(Group(label, fooled.images, fooled.targets, method=method,
                            source=str(folder)))
    return groups


def _save_as_fool_run(folder: Path, fooled: Fooled, net: FrozenClassifier, cfg: FoolConfig,
                      seconds: float) -> None:
    """images.npz, a PNG per image, sheet.png and a report.json as `realsys fool` writes."""
    ok = report.success(fooled, cfg.method, cfg.confidence)
    paths = report.save_images(folder, fooled, net.class_names)
    if len(fooled):
        report.save_sheet(folder / "sheet.png", fooled, net.class_names)
    report.write_report(folder, {
        "method": cfg.method, "encoding": cfg.encoding if cfg.method == "evolve" else None,
        "checkpoint": str(net.workdir), "checkpoint_kind": net.checkpoint,
        "count_per_class": cfg.count_per_class,
        "success_rate": float(np.mean(ok)) if len(ok) else 0.0,
        "success_criterion": report.success_criterion(cfg.method, cfg.confidence),
        "interrupted": fooled.interrupted, "attack_seconds": round(seconds, 2),
        "made_by": "fool-screen",
        "images": report.image_records(fooled, net.class_names, paths, ok),
        "config": config_to_dict(cfg)})


class _NotPerturbing(logging.Filter):
    """perturb's loader says "perturbing real images from ..."; here they are only scored."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("perturbing real images")


def real_group(net: FrozenClassifier, n: int, cfg: FoolConfig) -> Group:
    """The first n images of the classifier's eval split, as perturb reads them (centre-cropped
    to the classifier's input)."""
    from realsys_cli.fool.perturb import load_test_images

    quiet = _NotPerturbing()
    log.addFilter(quiet)
    try:
        images, _ = load_test_images(net, net.dataset, data_dir=cfg.data_dir or net.data_dir,
                                     tfds_dir=cfg.tfds_data_dir or net.tfds_data_dir, limit=n)
    finally:
        log.removeFilter(quiet)
    log.info("scoring %d real images of %s's eval split", len(images), net.dataset)
    return Group("real (test)", images, None, source=f"{net.dataset} eval split")


# ---------------------------------------------------------------------------------- scoring
def judge(group: Group, net: FrozenClassifier, d: FrozenDiscriminator,
          confidence: float) -> Group:
    """Fill in the classifier's confidences, which images count as fooling, and D's scores."""
    probs = net.predict(fit_images(group.images, net.image_size, net.in_channels))  # (N, K)
    if group.is_fooling:
        group.confidences = probs[np.arange(len(probs)), group.targets]
        group.fooled = (probs.argmax(-1) == group.targets if group.method == "perturb"
                        else passes(group.confidences, confidence))
    else:
        group.confidences = probs.max(-1)
    group.scores = d.score(group.images)
    return group


def group_row(group: Group, real: Group, threshold: float) -> dict[str, Any]:
    """One row of the per-group table (the real group: its own share below the threshold)."""
    fooling = group.is_fooling
    accepted = group.scores >= threshold
    return {
        "group": group.label,
        "images": len(group.images),
        "fooled_share": float(np.mean(group.fooled)) if fooling else None,
        "auroc": auroc(real.scores, group.scores) if group is not real else None,
        "rejected_share": rejected_share(group.scores, threshold),
        "median_d_score": float(np.median(group.scores)),
        "median_confidence": float(np.median(group.confidences)),
        "fooled_and_accepted_share": (float(np.mean(group.fooled & accepted)) if fooling
                                      else None),
        "source": group.source,
    }


def pooled(groups: Sequence[Group], label: str) -> Group:
    """Every fooling group as one (the "all fooling images" row)."""
    return Group(label, np.concatenate([g.images for g in groups]),
                 np.concatenate([g.targets for g in groups]), method="pooled",
                 source=f"{len(groups)} group(s)",
                 confidences=np.concatenate([g.confidences for g in groups]),
                 fooled=np.concatenate([g.fooled for g in groups]),
                 scores=np.concatenate([g.scores for g in groups]))


# ---------------------------------------------------------------------------- the joint attack
def joint_attack(net: FrozenClassifier, d: FrozenDiscriminator, cfg: FoolConfig,
                 stop_at: float, *, progress: Progress = SILENT) -> Fooled:
    """Gradient ascent on the target margin + realness_weight x D's logit, from noise,
    cfg.count_per_class images per class; an image stops once confident and D's logit (in
    the step) is >= stop_at."""
    from realsys_cli.fool.ascent import Realness, ascend

    realness = Realness(d.weights, d.realness_fn(net.image_size, net.in_channels), stop_at)
    targets = np.repeat(np.arange(net.num_classes), cfg.count_per_class)
    joint_cfg = dataclasses.replace(cfg, method="ascent", seed=cfg.seed + 7)
    return ascend(net, targets, joint_cfg, progress=progress, realness=realness)


def joint_rows(group: Group, threshold: float,
               class_names: Sequence[str]) -> list[dict[str, Any]]:
    """Per class: images, confident, accepted by D, both."""
    rows = []
    accepted = group.scores >= threshold
    for c in np.unique(group.targets):
        mine = group.targets == c
        rows.append({"class": class_names[int(c)], "images": int(mine.sum()),
                     "confident_share": float(np.mean(group.fooled[mine])),
                     "accepted_share": float(np.mean(accepted[mine])),
                     "fooled_both_share": float(np.mean((group.fooled & accepted)[mine])),
                     "median_d_score": float(np.median(group.scores[mine]))})
    return rows


# -------------------------------------------------------------------------------- pictures
def caption(name: str, confidence: float, score: float, both: bool) -> str:
    """'3 0.9999 D+1.2': class, the classifier's confidence, D's score; '*' in front when
    the image fools both (confident and accepted)."""
    return f"{'*' if both else ''}{name} {report.shown_confidence(confidence)} D{score:+.2f}"


def _captions(group: Group, order: np.ndarray, class_names: Sequence[str],
              threshold: float) -> list[str]:
    out = []
    for i in order:
        name = class_names[int(group.targets[i])] if group.is_fooling else "real"
        both = group.is_fooling and bool(group.fooled[i]) and group.scores[i] >= threshold
        out.append(caption(name, float(group.confidences[i]), float(group.scores[i]), both))
    return out


def save_screened_sheet(path: Path, groups: Sequence[Group], class_names: Sequence[str],
                        threshold: float, per_group: int) -> None:
    """A row per group: its `per_group` images D scores highest (the ones most likely to
    pass), under a title line; captions: target, classifier confidence, D's score ('*': the
    image fools both)."""
    from PIL import Image, ImageDraw

    from realsys_cli import pictures

    rows = []
    for g in groups:
        order = np.argsort(-g.scores, kind="stable")[:per_group]
        row = pictures.grid(g.images[order], _captions(g, order, class_names, threshold),
                            columns=per_group, min_side=report.MIN_SIDE_PX)
        title = (f"{g.label}: the {len(order)} of {len(g.images)} D scores highest; "
                 f"{np.mean(g.scores >= threshold):.0%} pass D's threshold {threshold:+.3g}")
        rows.append((title, row))
    width = max(r.width for _, r in rows)
    height = sum(r.height + 16 for _, r in rows)
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw, y = ImageDraw.Draw(sheet), 0
    for title, row in rows:
        draw.text((4, y + 2), title, fill=(0, 0, 0), font=pictures._font())
        sheet.paste(row, (0, y + 16))
        y += row.height + 16
    sheet.save(path)


def save_joint_sheet(path: Path, group: Group, class_names: Sequence[str],
                     threshold: float) -> None:
    """Every joint image (or the first report.SHEET_MAX_IMAGES, classes round-robin)."""
    from realsys_cli import pictures

    order = report.sheet_order(group.targets)
    pictures.save_grid(path, group.images[order], _captions(group, order, class_names,
                                                            threshold),
                       columns=min(len(order), 10), min_side=report.MIN_SIDE_PX)


# ------------------------------------------------------------------------------------- run
def run_screen(screen: ScreenConfig, cfg: FoolConfig, classifier: str | Path,
               gan: str | Path, out: str | Path, *, fooled_runs: Sequence[str | Path] = (),
               announce: str | None = None, progress: Progress = SILENT) -> dict[str, Any]:
    """Screen fooling images with the GAN's D, attack both, write report.json; -> the result.

    Every input is checked (the output folder, the classifier, the GAN, each --fooled run)
    before anything is made or written."""
    t0 = time.perf_counter()
    out = check_creatable(out, option="--workdir", folder=True)
    _refuse_a_run(out)
    net = load_frozen(classifier)
    trained_gan = load_gan(gan)
    d = discriminator_of(trained_gan, screen.noise_draws)
    check_matches(d, net)
    given = [fool_run_group(p, net) for p in fooled_runs]
    _distinct_labels(given)
    if announce:
        log.info("%s", announce)
    log.info("screening with the discriminator of %s (%s checkpoint, step %d, %.2f epochs%s)"
             " -> %s", gan, d.checkpoint, d.step, d.epochs,
             f", scored under its instance noise {d.noise_std:g}, mean of {d.noise_draws}"
             if d.noise_std > 0 else "", out)

    # ------------------------------------------------------------------------- the images
    fooling = given or made_groups(net, cfg, screen, out, progress=progress)
    real = real_group(net, screen.real_images, cfg)
    generated = Group("generated (G)", generated_samples(trained_gan, screen.generated_images,
                                                         cfg.seed), None,
                      source=f"{screen.generated_images} samples of {gan}")
    for g in [real, generated, *fooling]:
        judge(g, net, d, cfg.confidence)
    threshold = threshold_keeping(real.scores, screen.keep_real)
    everything = pooled(fooling, "all fooling images")
    rows = [group_row(g, real, threshold) for g in [real, generated, *fooling, everything]]

    # --------------------------------------------------------------------- the joint attack
    joint = None
    if screen.joint:
        t_joint = time.perf_counter()
        made = joint_attack(net, d, cfg, threshold + screen.joint_margin, progress=progress)
        joint = judge(Group(f"joint (realness_weight {cfg.realness_weight:g})", made.images,
                            made.targets, method="ascent", source=str(out / "joint")),
                      net, d, cfg.confidence)
        joint_seconds = time.perf_counter() - t_joint
        rows.append(group_row(joint, real, threshold))

    # ------------------------------------------------------------------ pictures and report
    out.mkdir(parents=True, exist_ok=True)
    sheet_groups = [*fooling, *([joint] if joint else []), real]
    save_screened_sheet(out / "screened_sheet.png", sheet_groups, net.class_names, threshold,
                        screen.sheet_per_group)
    result = _summary(screen, cfg, net, d, real, generated, everything, threshold)
    if joint is not None:
        _save_as_fool_run(out / "joint", made, net, dataclasses.replace(cfg, method="ascent"),
                          joint_seconds)
        save_joint_sheet(out / "joint_sheet.png", joint, net.class_names, threshold)
        result.update(_joint_summary(joint, threshold, cfg, out))
        result["joint_per_class"] = joint_rows(joint, threshold, net.class_names)
    save_scores(out / "scores.npz", [real, generated, *fooling, *([joint] if joint else [])])
    result["screened_sheet"] = str(out / "screened_sheet.png")
    result["scores"] = str(out / "scores.npz")
    result["workdir"] = str(out)
    result["seconds"] = round(time.perf_counter() - t0, 2)
    result["groups"] = rows
    result["config"] = config_to_dict(screen)
    result["fool_config"] = config_to_dict(cfg)
    report.write_report(out, result)
    if joint is not None and made.interrupted:
        raise KeyboardInterrupt
    return result


def save_scores(path: Path, groups: Sequence[Group]) -> None:
    """Every image's numbers, so that any row of the report can be recomputed: for group i
    (its label in `labels`[i]), `d_<i>` D's scores, `confidence_<i>` the classifier's and,
    for fooling groups, `fooled_<i>` and `targets_<i>`."""
    arrays: dict[str, np.ndarray] = {"labels": np.asarray([g.label for g in groups])}
    for i, g in enumerate(groups):
        arrays[f"d_{i}"], arrays[f"confidence_{i}"] = g.scores, g.confidences
        if g.is_fooling:
            arrays[f"fooled_{i}"], arrays[f"targets_{i}"] = g.fooled, g.targets
    np.savez_compressed(path, **arrays)


def _refuse_a_run(out: Path) -> None:
    """--workdir must not be a run that is read (the GAN's, or a classifier's)."""
    try:
        saved = json.loads((out / "config.json").read_text())
    except (OSError, ValueError):
        return
    if isinstance(saved, dict) and ({"model", "dataset"} <= saved.keys()
                                    or "latent_dim" in saved):
        raise ConfigError(f"{out} holds a training run; --workdir/-w is the run fool-screen "
                          "writes: give it another folder")


def _distinct_labels(groups: list[Group]) -> None:
    """Two --fooled runs of one method: tell them apart by their folder's name."""
    seen: dict[str, int] = {}
    for g in groups:
        seen[g.label] = seen.get(g.label, 0) + 1
    for g in groups:
        if seen[g.label] > 1:
            g.label = f"{g.label} ({Path(g.source).name})"


def _summary(screen: ScreenConfig, cfg: FoolConfig, net: FrozenClassifier,
             d: FrozenDiscriminator, real: Group, generated: Group, everything: Group,
             threshold: float) -> dict[str, Any]:
    return {
        "classifier": str(net.workdir),
        "gan": str(d.workdir),
        "gan_checkpoint": f"{d.checkpoint} (step {d.step}, {d.epochs:g} epochs)",
        "gan_dataset": d.dataset,
        "d_image_size": d.image_size,
        "d_mode": "eval (BatchNorm running averages)",
        "d_noise": (f"mean logit over {d.noise_draws} draws of its instance noise "
                    f"{d.noise_std:g}" if d.noise_std > 0 else "none"),
        "real_images": len(real.images),
        "keep_real": screen.keep_real,
        "threshold": threshold,
        "real_kept_share": float(np.mean(real.scores >= threshold)),
        "real_median_d_score": float(np.median(real.scores)),
        "generated_auroc": auroc(real.scores, generated.scores),
        "generated_rejected_share": rejected_share(generated.scores, threshold),
        "fooling_images": len(everything.images),
        "fooling_auroc": auroc(real.scores, everything.scores),
        "fooling_rejected_share": rejected_share(everything.scores, threshold),
        "fooled_and_accepted_share": float(np.mean(everything.fooled
                                                   & (everything.scores >= threshold))),
        "confidence": cfg.confidence,
    }


def _joint_summary(joint: Group, threshold: float, cfg: FoolConfig,
                   out: Path) -> dict[str, Any]:
    both = joint.fooled & (joint.scores >= threshold)
    return {
        "joint_realness_weight": cfg.realness_weight,
        "joint_images": len(joint.images),
        "joint_confident_share": float(np.mean(joint.fooled)),
        "joint_accepted_share": float(np.mean(joint.scores >= threshold)),
        "joint_fooled_both_share": float(np.mean(both)),
        "joint_fooled_both": int(both.sum()),
        "joint_median_d_score": float(np.median(joint.scores)),
        "joint_median_confidence": float(np.median(joint.confidences)),
        "joint_sheet": str(out / "joint_sheet.png"),
        "joint_images_npz": str(out / "joint" / "images.npz"),
    }

