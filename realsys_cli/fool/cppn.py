"""`--encoding cppn`: compositional pattern-producing networks (Stanley 2007), grown NEAT-style.

A CPPN maps each pixel's coordinates to its value: inputs x, y in [-1, 1], d = sqrt(x^2 + y^2)
(distance from the centre) and a bias of 1; hidden nodes apply sine, sigmoid, Gaussian or linear
functions; one output per channel, squashed to [0, 1] by (tanh + 1) / 2. Because the image is a
function of coordinates, a genome renders at any resolution, and its images are regular and
patterned (the paper's ImageNet fooling images came from this encoding).

A genome is a fixed-capacity, batched representation, so a whole population renders and mutates
in one jitted call (leading axis n everywhere):

    w      (n, I+H, H+O) float  weight of the connection source -> target
    on     (n, I+H, H+O) bool   the connection is enabled
    hidden (n, H) bool          the hidden node exists
    fn     (n, H) int32         its function: 0 sine, 1 sigmoid, 2 Gaussian, 3 linear
    pos    (n, H) float         its depth in (0, 1): inputs sit at 0, outputs at 1

with I = 4 inputs, H = max_hidden_nodes, O = channels. A connection may only go from a smaller
to a larger depth, so every CPPN is feed-forward; nodes are evaluated in order of depth.
Genomes start with no hidden nodes and every input connected to every output (as in the paper);
mutation perturbs weights, adds connections, splits a connection with a new node (NEAT's
add-node: in -> new with weight 1, new -> out with the old weight) and changes node functions.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from realsys_cli.fool.config import FoolConfig

N_INPUTS = 4  # x, y, d, bias
FUNCTIONS = ("sine", "sigmoid", "gaussian", "linear")
MAX_WEIGHT = 4.0
LINEAR_LIMIT = 10.0  # a linear node's output is clipped to +-10 so deep chains stay finite


def coordinates(size: int) -> jax.Array:
    """(size * size, 4): x, y, d, bias at the pixel centres of a size x size image."""
    axis = jnp.linspace(-1.0, 1.0, size)
    y, x = jnp.meshgrid(axis, axis, indexing="ij")  # (S, S) each, row-major
    d = jnp.sqrt(x * x + y * y)
    return jnp.stack([x, y, d, jnp.ones_like(x)], axis=-1).reshape(size * size, N_INPUTS)


def activate(fn: jax.Array, a: jax.Array) -> jax.Array:
    """Node function number `fn` (a traced scalar) applied to pre-activations `a`."""
    outs = jnp.stack([jnp.sin(a), jax.nn.sigmoid(a), jnp.exp(-a * a),
                      jnp.clip(a, -LINEAR_LIMIT, LINEAR_LIMIT)])
    return outs[fn]


@dataclasses.dataclass(frozen=True)
class CppnEncoding:
    image_size: int
    channels: int
    max_hidden: int = 24
    weight_sigma: float = 0.5
    weight_rate: float = 0.2
    add_connection_rate: float = 0.3
    add_node_rate: float = 0.15
    change_function_rate: float = 0.1

    @classmethod
    def from_config(cls, image_size: int, channels: int, cfg: FoolConfig) -> CppnEncoding:
        return cls(image_size, channels, cfg.cppn_max_hidden_nodes, cfg.cppn_weight_sigma,
                   cfg.cppn_weight_rate, cfg.cppn_add_connection_rate, cfg.cppn_add_node_rate,
                   cfg.cppn_change_function_rate)

    # ------------------------------------------------------------------------------ genomes
    def init(self, key: jax.Array, n: int) -> dict[str, jax.Array]:
        h, o = self.max_hidden, self.channels
        k_w, k_fn = jax.random.split(key)
        on = jnp.zeros((n, N_INPUTS + h, h + o), bool).at[:, :N_INPUTS, h:].set(True)
        return {
            "w": jax.random.normal(k_w, (n, N_INPUTS + h, h + o)),
            "on": on,
            "hidden": jnp.zeros((n, h), bool),
            "fn": jax.random.randint(k_fn, (n, h), 0, len(FUNCTIONS)),
            "pos": jnp.zeros((n, h)),
        }

    # ---------------------------------------------------------------------------- rendering
    def render(self, genomes: dict[str, jax.Array], size: int | None = None) -> jax.Array:
        """(n, size, size, C) in [0, 1]; size defaults to the classifier's input side."""
        size = size or self.image_size
        coords = coordinates(size)  # (P, 4), P = size * size
        images = jax.vmap(lambda g: self._render_one(g, coords))(genomes)  # (n, P, C)
        return images.reshape(-1, size, size, self.channels)

    def _render_one(self, g: dict[str, jax.Array], coords: jax.Array) -> jax.Array:
        h = self.max_hidden
        weights = jnp.where(g["on"], g["w"], 0.0)  # (I+H, H+O)
        # Renumber the hidden nodes by depth once, so the loop below uses static indices only
        # (dynamic column updates became scatters and made rendering ~10x slower).
        order = jnp.argsort(jnp.where(g["hidden"], g["pos"], 2.0))  # existing nodes first
        rows = jnp.concatenate([jnp.arange(N_INPUTS), N_INPUTS + order])
        cols = jnp.concatenate([order, h + jnp.arange(self.channels)])
        weights = weights[rows][:, cols]  # (I+H, H+O), hidden in depth order
        exists, fns = g["hidden"][order], g["fn"][order]  # (H,) each
        values = [coords]  # (P, 4), then one (P, 1) column per hidden node
        for k in range(h):  # unrolled: node k only reads inputs and nodes 0..k-1
            seen = jnp.concatenate(values, axis=1)  # (P, I+k)
            a = seen @ weights[: N_INPUTS + k, k]  # (P,)
            out = jnp.where(exists[k], activate(fns[k], a), 0.0)
            values.append(out[:, None])
        out = jnp.concatenate(values, axis=1) @ weights[:, h:]  # (P, O)
        return (jnp.tanh(out) + 1.0) / 2.0

    # ----------------------------------------------------------------------------- mutation
    def mutate(self, key: jax.Array, genomes: dict[str, jax.Array],
               generation: jax.Array) -> dict[str, jax.Array]:
        keys = jax.random.split(key, genomes["w"].shape[0])
        return jax.vmap(self._mutate_one)(keys, genomes)

    def _depths(self, g: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
        """Depth of every source (I+H,) and target (H+O,); missing nodes can be neither."""
        src = jnp.concatenate([jnp.zeros(N_INPUTS), jnp.where(g["hidden"], g["pos"], jnp.inf)])
        tgt = jnp.concatenate([jnp.where(g["hidden"], g["pos"], -jnp.inf),
                               jnp.ones(self.channels)])
        return src, tgt

    def _mutate_one(self, key: jax.Array, g: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """Every edit is a masked `where`, and all the randomness comes from two draws (each
        `jax.random` call adds its own hash to the program: eleven made compiling ~4x slower)."""
        w, on, hidden, fn, pos = g["w"], g["on"], g["hidden"], g["fn"], g["pos"]
        rows, cols = on.shape
        h, n_fn = self.max_hidden, len(FUNCTIONS)
        k_u, k_n = jax.random.split(key)
        u = jax.random.uniform(k_u, (3 * rows * cols + h + 8,), minval=1e-7, maxval=1.0)
        normal = jax.random.normal(k_n, (rows * cols + 1,))
        u_bump, u_free, u_split = (u[i * rows * cols : (i + 1) * rows * cols].reshape(rows, cols)
                                   for i in range(3))
        u_node, u_scalar = u[3 * rows * cols : 3 * rows * cols + h], u[3 * rows * cols + h :]
        row_ids, col_ids = jnp.arange(rows)[:, None], jnp.arange(cols)[None, :]
        slots = jnp.arange(h)

        def cell(r: jax.Array, c: jax.Array) -> jax.Array:  # one-hot (I+H, H+O) mask
            return (row_ids == r) & (col_ids == c)

        def pick(uniform: jax.Array, allowed: jax.Array) -> jax.Array:
            """A uniformly random allowed index (Gumbel-max over the flat array)."""
            gumbel = -jnp.log(-jnp.log(uniform))
            return jnp.argmax(jnp.where(allowed, gumbel, -jnp.inf).ravel())

        # 1. perturb the weights of some enabled connections
        bump = (u_bump < self.weight_rate) & on
        w = jnp.where(bump, w + self.weight_sigma * normal[:-1].reshape(rows, cols), w)
        w = jnp.clip(w, -MAX_WEIGHT, MAX_WEIGHT)

        # 2. add a connection between two nodes that may be connected and are not yet
        src, tgt = self._depths(g)
        free = (src[:, None] < tgt[None, :]) & ~on
        flat = pick(u_free, free)
        add = cell(flat // cols, flat % cols) & (u_scalar[0] < self.add_connection_rate)
        add = add & jnp.any(free)
        on = on | add
        w = jnp.where(add, normal[-1], w)

        # 3. split an enabled connection s -> t with a new node n: s -> n (1.0), n -> t (old w)
        node = jnp.argmin(hidden)  # the first free slot
        flat = pick(u_split, on)
        s, t = flat // cols, flat % cols
        split = (u_scalar[1] < self.add_node_rate) & ~jnp.all(hidden) & jnp.any(on)
        old_edge = cell(s, t) & split
        into, out_of = cell(s, node) & split, cell(N_INPUTS + node, t) & split
        old_weight = jnp.sum(jnp.where(cell(s, t), w, 0.0))
        on = (on & ~old_edge) | into | out_of
        w = jnp.where(into, 1.0, jnp.where(out_of, old_weight, w))
        new_slot = (slots == node) & split
        hidden = hidden | new_slot
        pos = jnp.where(new_slot, (src[s] + tgt[t]) / 2.0, pos)
        new_fn = jnp.minimum((u_scalar[2] * n_fn).astype(jnp.int32), n_fn - 1)
        fn = jnp.where(new_slot, new_fn, fn)

        # 4. change the function of an existing node to a different one
        chosen = pick(u_node, hidden)
        change = (slots == chosen) & hidden & (u_scalar[3] < self.change_function_rate)
        shift = 1 + jnp.minimum((u_scalar[4] * (n_fn - 1)).astype(jnp.int32), n_fn - 2)
        fn = jnp.where(change, (fn + shift) % n_fn, fn)
        return {"w": w, "on": on, "hidden": hidden, "fn": fn, "pos": pos}

    @staticmethod
    def size_of(genomes: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """Hidden nodes and enabled connections per genome: (n,) each."""
        return {"nodes": genomes["hidden"].sum(-1), "connections": genomes["on"].sum((-2, -1))}
