"""The configs of `realsys fool` and `realsys fool-defence`: every field `--set` can change.

Defaults follow Nguyen, Yosinski, Clune (CVPR 2015) where the paper gives a number (MAP-Elites
population 200, per-pixel mutation rate 0.1 halved every 1000 generations, polynomial mutation
strength 15; their gradient-ascent script's 300 steps, L2 decay 0.01 per step and the 0.99 /
0.999 / 0.9999 thresholds) and Madry et al. 2017 for PGD (MNIST epsilon 0.3, 40 steps).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from realsys_cli.config import check_fields

METHODS = ("ascent", "evolve", "perturb")
ENCODINGS = ("direct", "cppn")
THRESHOLDS = ("argmax", "0.99", "0.999", "0.9999")  # the milestones every image records


@dataclasses.dataclass(frozen=True)
class FoolConfig:
    # --- what to make
    method: Literal["ascent", "evolve", "perturb"] = "ascent"
    target_classes: tuple[str, ...] = ()  # names or indices; empty = every class
    count_per_class: int = 1  # images per target class (evolve: independent MAP-Elites runs)
    confidence: float = 0.9999  # softmax confidence of the target at which an image is done
    seed: int = 0
    batch_size: int = 256  # images per jitted call (ascent, perturb); all targets share it
    # --- ascent: gradient ascent on the target's logit, from uniform noise
    ascent_steps: int = 300  # the paper's script: 300
    # "margin" (z_t - max of the other logits) or the paper's "logit" (z_t alone; on alexnet-small
    # /shapes it left 4 classes at p ~ 0: their rivals' logits rose faster, see ascent.py)
    ascent_objective: Literal["logit", "margin"] = "margin"
    ascent_step_size: float = 0.02  # pixel units ([0, 1]) of the RMS-normalised update
    l2_decay: float = 0.01  # x <- mean + (x - mean) * (1 - l2_decay) after every step
    jitter_px: int = 0  # random roll of the image by up to this many px before each gradient
    blur_sigma_px: float = 0.0  # Gaussian blur of this sigma every blur_every_steps; 0 = off
    blur_every_steps: int = 4
    # fool-screen's joint attack: the ascent's objective gains realness_weight x a GAN
    # discriminator's realness logit (see fool/screen.py). `realsys fool` has no discriminator:
    # it must stay 0 there, and at 0 the ascent is exactly the one without the term.
    realness_weight: float = 0.0
    # --- evolve: MAP-Elites, one champion per class
    encoding: Literal["direct", "cppn"] = "direct"
    generations: int = 200
    population: int = 200  # offspring evaluated per generation
    mutation_rate: float = 0.1  # direct: probability that a pixel mutates
    mutation_halve_every_generations: int = 1000
    polynomial_eta: float = 15.0  # direct: polynomial mutation strength (Deb)
    crossover_rate: float = 0.0  # direct: share of offspring made by SBX of two champions
    sbx_eta: float = 10.0  # direct: SBX crossover spread (the paper's Sferes set-up: 10)
    cppn_max_hidden_nodes: int = 24
    cppn_weight_sigma: float = 0.5  # std of a weight perturbation
    cppn_weight_rate: float = 0.2  # probability that an enabled connection's weight mutates
    cppn_add_connection_rate: float = 0.3  # per offspring
    cppn_add_node_rate: float = 0.15  # per offspring
    cppn_change_function_rate: float = 0.1  # per offspring
    # --- perturb: targeted PGD in an L-infinity ball around real test images
    epsilon: float = 0.3  # radius in pixel units ([0, 1])
    pgd_steps: int = 40  # 1 = FGSM (no random start, one step of size epsilon)
    pgd_step_size: float = 0.0  # 0 = 2.5 * epsilon / pgd_steps (Madry et al.)
    random_start: bool = True
    # --- data for perturb (the classifier's own test split by default)
    tfds_data_dir: str | None = None
    data_dir: str | None = None

    def __post_init__(self) -> None:
        for name in ("count_per_class", "batch_size", "ascent_steps", "generations",
                     "population", "pgd_steps", "blur_every_steps",
                     "mutation_halve_every_generations", "cppn_max_hidden_nodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError("confidence must be in (0, 1)")
        if not 0.0 < self.epsilon <= 1.0:
            raise ValueError("epsilon must be in (0, 1] (pixel units)")
        for name in ("l2_decay", "mutation_rate", "crossover_rate"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1)")
        if self.ascent_step_size <= 0 or self.pgd_step_size < 0:
            raise ValueError("step sizes must be positive")
        if self.jitter_px < 0 or self.blur_sigma_px < 0:
            raise ValueError("jitter_px and blur_sigma_px must be >= 0")
        if not self.realness_weight >= 0:  # NaN fails too
            raise ValueError(f"realness_weight must be >= 0, got {self.realness_weight}")
        check_fields(self)


@dataclasses.dataclass(frozen=True)
class DefenceConfig:
    """`realsys fool-defence`: the paper's retraining with an extra "fooling images" class."""

    rounds: int = 3  # retrain-and-attack rounds after the original network (round 0)
    retrain_epochs: int = 1  # epochs of each retraining (from scratch, on data + fooling class)
    fooling_class_name: str = "fooling"
    fooling_fraction: float = 1.0  # fooling-class examples = this x the mean class size

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.retrain_epochs < 1:
            raise ValueError("rounds and retrain_epochs must be at least 1")
        if self.fooling_fraction <= 0:
            raise ValueError("fooling_fraction must be positive")
        check_fields(self)
