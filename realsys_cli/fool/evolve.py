"""`--method evolve`: MAP-Elites over all classes at once (Nguyen, Yosinski, Clune, CVPR 2015).

The archive keeps one champion per class, with its fitness = the softmax score of that class.
Each generation picks `population` random champions as parents, mutates them, renders and scores
every offspring in one jitted, batched call, and an offspring replaces the champion of ANY class
it beats (so one lucky image can take several classes). Gradients are never used: the network is
a black box that returns probabilities.

Encodings (`--encoding`):
- `direct` (here): one value per pixel, initialised uniformly at random; each pixel mutates
  with probability `mutation_rate` (halved every `mutation_halve_every_generations`) by
  polynomial mutation of strength eta (Deb), as the paper's Sferes set-up.
- `cppn` (cppn.py): a compositional pattern-producing network grown by mutation.

Images are rounded to the uint8 grid before scoring, so a champion's fitness is exactly the
confidence of its saved PNG. The archive also records, per class, the first generation at which
its champion was the argmax and passed 0.99, 0.999 and 0.9999.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from realsys_cli.fool.config import THRESHOLDS, FoolConfig
from realsys_cli.fool.result import NEVER, Fooled, at_least, record
from realsys_cli.fool.target import FrozenClassifier, quantise
from realsys_cli.pictures import to_uint8
from realsys_cli.progress import SILENT, Progress

CHECK_EVERY_GENERATIONS = 5


class Encoding(Protocol):
    """How a genome becomes an image. Genomes are pytrees with a leading population axis."""

    def init(self, key: jax.Array, n: int) -> Any: ...
    def mutate(self, key: jax.Array, genomes: Any, generation: jax.Array) -> Any: ...
    def render(self, genomes: Any) -> jax.Array: ...  # (n, S, S, C) in [0, 1]


def polynomial_mutation(key: jax.Array, x: jax.Array, rate: jax.Array | float,
                        eta: float) -> jax.Array:
    """Each value of x in [0, 1] mutates with probability `rate` by Deb's polynomial mutation:
    u ~ U(0, 1), delta = (2u)^(1/(eta+1)) - 1 if u < 0.5 else 1 - (2(1-u))^(1/(eta+1));
    x + delta, clipped to [0, 1]. A larger eta gives smaller steps (15: mostly |delta| < 0.1)."""
    k_which, k_u = jax.random.split(key)
    which = jax.random.bernoulli(k_which, rate, x.shape)
    u = jax.random.uniform(k_u, x.shape)
    power = 1.0 / (eta + 1.0)
    delta = jnp.where(u < 0.5, (2.0 * u) ** power - 1.0, 1.0 - (2.0 * (1.0 - u)) ** power)
    return jnp.where(which, jnp.clip(x + delta, 0.0, 1.0), x)


def sbx_crossover(key: jax.Array, a: jax.Array, b: jax.Array, rate: float,
                  eta: float) -> jax.Array:
    """Simulated binary crossover (Deb & Agrawal 1995) of parents a and b, (n, ...) in [0, 1]:
    each child (with probability `rate`, else a itself) takes, gene by gene with probability
    1/2, 0.5 ((1 + beta) a + (1 - beta) b) with beta spread around 1 by eta; clipped to [0, 1]."""
    k_pair, k_gene, k_u = jax.random.split(key, 3)
    u = jax.random.uniform(k_u, a.shape)
    power = 1.0 / (eta + 1.0)
    beta = jnp.where(u <= 0.5, (2.0 * u) ** power, (1.0 / (2.0 * (1.0 - u) + 1e-12)) ** power)
    child = jnp.clip(0.5 * ((1.0 + beta) * a + (1.0 - beta) * b), 0.0, 1.0)
    gene = jax.random.bernoulli(k_gene, 0.5, a.shape)
    pair = jax.random.bernoulli(k_pair, rate, (a.shape[0],) + (1,) * (a.ndim - 1))
    return jnp.where(pair & gene, child, a)


@dataclasses.dataclass(frozen=True)
class DirectEncoding:
    """A genome is the image itself: (n, S, S, C) values in [0, 1]."""

    shape: tuple[int, int, int]  # (S, S, C)
    mutation_rate: float = 0.1
    halve_every: int = 1000
    eta: float = 15.0
    crossover_rate: float = 0.0  # probability that a child is an SBX cross of two champions
    eta_crossover: float = 10.0

    def init(self, key: jax.Array, n: int) -> jax.Array:
        return jax.random.uniform(key, (n, *self.shape))

    def mutate(self, key: jax.Array, genomes: jax.Array, generation: jax.Array,
               mates: jax.Array | None = None) -> jax.Array:
        k_cross, k_mutate = jax.random.split(key)
        if mates is not None and self.crossover_rate > 0:
            genomes = sbx_crossover(k_cross, genomes, mates, self.crossover_rate,
                                    self.eta_crossover)
        rate = self.mutation_rate * 0.5 ** (generation // self.halve_every)
        return polynomial_mutation(k_mutate, genomes, rate, self.eta)

    def render(self, genomes: jax.Array) -> jax.Array:
        return genomes


def update_archive(archive: dict[str, Any], offspring: Any,
                   probs: jax.Array) -> dict[str, Any]:
    """MAP-Elites replacement: for each class k, the offspring with the highest p_k replaces
    champion k if and only if it beats it (strictly); every class keeps exactly one champion.

    archive: {"genomes": (K, ...), "fitness": (K,), "hit": (K,) champion is the argmax};
    offspring: (P, ...); probs: (P, K) softmax of the offspring.
    """
    k = probs.shape[1]
    best = jnp.argmax(probs, axis=0)  # (K,) the best offspring for each class
    best_fitness = probs[best, jnp.arange(k)]  # (K,)
    better = best_fitness > archive["fitness"]  # (K,)

    def take(champions: jax.Array, children: jax.Array) -> jax.Array:
        mask = better.reshape((k,) + (1,) * (champions.ndim - 1))
        return jnp.where(mask, children[best], champions)

    hit = jnp.argmax(probs[best], axis=-1) == jnp.arange(k)
    return dict(archive,
                genomes=jax.tree.map(take, archive["genomes"], offspring),
                fitness=jnp.where(better, best_fitness, archive["fitness"]),
                hit=jnp.where(better, hit, archive["hit"]))


def make_encoding(net: FrozenClassifier, cfg: FoolConfig) -> Encoding:
    if cfg.encoding == "cppn":
        from realsys_cli.fool.cppn import CppnEncoding

        return CppnEncoding.from_config(net.image_size, net.in_channels, cfg)
    return DirectEncoding(net.image_shape, cfg.mutation_rate,
                          cfg.mutation_halve_every_generations, cfg.polynomial_eta,
                          cfg.crossover_rate, cfg.sbx_eta)


def make_generation(net: FrozenClassifier, encoding: Encoding, cfg: FoolConfig,
                    ) -> tuple[Callable, Callable]:
    """(init, generation) over an archive that is a dict of device arrays.

    Two jitted pieces, `breed` (select parents and mutate) and `judge` (render, score, replace,
    record), so that the first generation (a random population judged against an empty
    archive) reuses judge's compiled program: compiling, not running, dominates short runs.
    """
    k = net.num_classes

    def judge(weights: Any, archive: dict[str, Any], offspring: Any,
              generation: jax.Array) -> dict[str, Any]:
        images = quantise(encoding.render(offspring))  # (P, S, S, C)
        probs = jax.nn.softmax(net.logits(weights, images))  # (P, K)
        archive = update_archive(archive, offspring, probs)
        passed = jnp.stack([archive["hit"]] + [archive["fitness"] >= at_least(float(t))
                                               for t in THRESHOLDS[1:]], axis=1)
        done = (archive["done_at"] == NEVER) & (archive["fitness"] >= at_least(cfg.confidence))
        return dict(archive, reached=record(archive["reached"], passed, generation),
                    done_at=jnp.where(done, generation, archive["done_at"]))

    def breed(archive: dict[str, Any], generation: jax.Array) -> Any:
        k_parents, k_mates, k_mutate = jax.random.split(
            jax.random.fold_in(archive["key"], generation), 3)
        parents = jax.random.randint(k_parents, (cfg.population,), 0, k)
        genomes = jax.tree.map(lambda a: a[parents], archive["genomes"])
        if isinstance(encoding, DirectEncoding) and encoding.crossover_rate > 0:
            mates = archive["genomes"][jax.random.randint(k_mates, (cfg.population,), 0, k)]
            return encoding.mutate(k_mutate, genomes, generation, mates)
        return encoding.mutate(k_mutate, genomes, generation)

    judge_jit, breed_jit = jax.jit(judge), jax.jit(breed)  # no donation: see perturb.py

    @jax.jit
    def random_population(key: jax.Array) -> tuple[dict[str, Any], Any]:
        k_pop, k_run = jax.random.split(key)
        population = encoding.init(k_pop, cfg.population)
        empty = {  # fitness -1: the first judgement fills every class
            "genomes": jax.tree.map(lambda a: a[jnp.zeros((k,), jnp.int32)], population),
            "fitness": jnp.full((k,), -1.0, jnp.float32), "hit": jnp.zeros((k,), bool),
            "reached": jnp.full((k, 4), NEVER, jnp.int32),
            "done_at": jnp.full((k,), NEVER, jnp.int32), "key": k_run,
        }
        return empty, population

    def init(weights: Any, key: jax.Array) -> dict[str, Any]:
        # committed to the weights' device like judge's own outputs, or jit compiles judge twice
        device = jax.tree.leaves(weights)[0].sharding
        empty, population = jax.device_put(random_population(key), device)
        return judge_jit(weights, empty, population, jnp.zeros((), jnp.int32))

    def generation(weights: Any, archive: dict[str, Any], g: jax.Array) -> dict[str, Any]:
        return judge_jit(weights, archive, breed_jit(archive, g), g)

    return init, generation


def evolve(net: FrozenClassifier, targets: list[int], cfg: FoolConfig, *,
           progress: Progress = SILENT) -> Fooled:
    """`count_per_class` independent MAP-Elites runs; each gives the champions of `targets`."""
    encoding = make_encoding(net, cfg)
    init, generation = make_generation(net, encoding, cfg)
    render = jax.jit(encoding.render)
    parts: list[Fooled] = []
    chosen = np.asarray(targets)
    with progress.task(f"evolve ({cfg.encoding})",
                       total=cfg.generations * cfg.count_per_class) as task:
        for run in range(cfg.count_per_class):
            archive = init(net.weights, jax.random.fold_in(jax.random.key(cfg.seed), run))
            interrupted, g = False, 0
            try:
                for g in range(1, cfg.generations + 1):
                    archive = generation(net.weights, archive, jnp.asarray(g, jnp.int32))
                    task.advance(1)
                    if g % CHECK_EVERY_GENERATIONS == 0 and bool(
                            jnp.all(archive["fitness"][chosen] >= at_least(cfg.confidence))):
                        break
            except KeyboardInterrupt:
                interrupted = True
            genomes = jax.tree.map(lambda a: a[chosen], archive["genomes"])
            images = to_uint8(np.asarray(render(genomes)))
            probs = net.predict(images)
            done_at = np.asarray(archive["done_at"])[chosen]
            parts.append(Fooled(
                images=images, targets=chosen.copy(),
                confidences=probs[np.arange(len(chosen)), chosen], predicted=probs.argmax(-1),
                steps=np.where(done_at == NEVER, g, done_at),
                reached=np.asarray(archive["reached"])[chosen], unit="generations",
                interrupted=interrupted))
            if interrupted:
                break
    return Fooled.concat(parts)
