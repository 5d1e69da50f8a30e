"""ConvLSTM next-frame predictors (Flax NNX, NHWC): the cell and an encoder-forecaster.

Shi et al., "Convolutional LSTM Network: A Machine Learning Approach for Precipitation
Nowcasting", NIPS 2015: an LSTM whose input-to-state and state-to-state maps are convolutions,

    i, f, o, g = split(conv([x_t, h_{t-1}]))          (one convolution over the concatenation)
    c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
    h_t = sigmoid(o) * tanh(c_t)

(without the paper's peephole terms, as OpenSTL's ConvLSTM), stacked into an encoding network
that reads the observed frames and a forecasting network, started from the encoder's states,
that emits the future ones. Its prediction at each step comes from all forecaster layers' hidden
states through a 1x1 convolution, as in the paper.

Choices made for a CPU and for a movie that runs past the training horizon:
  * patching (OpenSTL's Moving MNIST recipe, `patch_size = 4`): a 64x64x1 frame becomes a
    16x16x16 tensor before the cells (space-to-depth) and back after the head, cutting the cost of
    every recurrent step 16-fold;
  * the forecaster is autoregressive: its input at each step is the previous frame, the last
    observed one first, then its own previous prediction (or, under scheduled sampling in
    training, the true previous frame), so it can be rolled out for any number of steps;
  * the encoder's states also predict the observed frames 2..T through the same head: a
    next-frame loss on them (`observed_loss_weight` in the config) teaches motion early;
  * the time loop is unrolled in Python: on XLA:CPU a `jax.lax.scan` over these convolutions made
    the gradient 52x slower (the project's shared notes, STACK.md), while the unrolled loop
    compiles in seconds;
  * causal by construction: the prediction for frame t+1 is computed from frames <= t only, the
    observed ones and, past them, the fed-back ones (tests/test_frames_model.py proves it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


def patch(x: jax.Array, size: int) -> jax.Array:
    """Space-to-depth: (B, H, W, C) -> (B, H/size, W/size, size*size*C)."""
    if size == 1:
        return x
    b, h, w, c = x.shape
    x = x.reshape(b, h // size, size, w // size, size, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h // size, w // size, size * size * c)


def unpatch(x: jax.Array, size: int) -> jax.Array:
    """Depth-to-space, the inverse of `patch`: (B, h, w, size*size*C) -> (B, h*size, w*size, C)."""
    if size == 1:
        return x
    b, h, w, d = x.shape
    c = d // (size * size)
    x = x.reshape(b, h, w, size, size, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h * size, w * size, c)


State = tuple[jax.Array, jax.Array]  # (h, c), each (B, h, w, hidden)


@jax.custom_vjp
def lstm_update(gates: jax.Array, c: jax.Array) -> State:
    """The LSTM's pointwise update: gates (..., 4H) ordered i, f, o, g and c (..., H) ->
    (h, c'), c' = sigmoid(f) c + sigmoid(i) tanh(g), h = sigmoid(o) tanh(c').

    The gradient is written by hand, from the gates and c alone (recomputing the activations):
    one elementwise pass with two outputs, where JAX's derived gradient ran as about ten
    separate passes over these (B, h, w, 4H) tensors, a memory-bound quarter of a ConvLSTM
    step on 2 cores."""
    return _lstm_forward(gates, c)[0]


def _activations(gates: jax.Array) -> tuple[jax.Array, ...]:
    i, f, o, g = jnp.split(gates, 4, axis=-1)
    return jax.nn.sigmoid(i), jax.nn.sigmoid(f), jax.nn.sigmoid(o), jnp.tanh(g)


def _lstm_forward(gates: jax.Array, c: jax.Array) -> tuple[State, tuple[jax.Array, ...]]:
    i, f, o, g = _activations(gates)
    c_new = f * c + i * g
    return (o * jnp.tanh(c_new), c_new), (gates, c)


def _lstm_backward(residuals: tuple[jax.Array, ...], cotangents: State) -> tuple[jax.Array, ...]:
    gates, c = residuals
    dh, dc_new = cotangents
    i, f, o, g = _activations(gates)
    tanh_c = jnp.tanh(f * c + i * g)
    dc_total = dc_new + dh * o * (1.0 - tanh_c * tanh_c)  # through h = o tanh(c')
    d_gates = jnp.concatenate([dc_total * g * i * (1.0 - i),  # d sigmoid(i) / d i
                               dc_total * c * f * (1.0 - f),
                               dh * tanh_c * o * (1.0 - o),
                               dc_total * i * (1.0 - g * g)], axis=-1)
    return d_gates, dc_total * f


lstm_update.defvjp(lambda gates, c: _lstm_forward(gates, c), _lstm_backward)


class ConvLSTMCell(nnx.Module):
    """One ConvLSTM cell: a single `kernel` x `kernel` convolution over [x_t, h_{t-1}]."""

    def __init__(self, in_channels: int, hidden: int, kernel: int, *, rngs: nnx.Rngs,
                 forget_bias: float = 1.0) -> None:
        self.hidden = hidden

        def bias_init(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype) -> jax.Array:
            # gates are ordered i, f, o, g: start by remembering (Jozefowicz et al. 2015)
            return jnp.zeros(shape, dtype).at[hidden : 2 * hidden].set(forget_bias)

        self.conv = nnx.Conv(in_channels + hidden, 4 * hidden, (kernel, kernel), padding="SAME",
                             bias_init=bias_init, rngs=rngs)

    def zero_state(self, x: jax.Array) -> State:
        shape = (*x.shape[:-1], self.hidden)
        return jnp.zeros(shape, x.dtype), jnp.zeros(shape, x.dtype)

    def __call__(self, x: jax.Array, state: State) -> State:
        h, c = state  # (B, h, w, hidden) each
        gates = self.conv(jnp.concatenate([x, h], axis=-1))  # (B, h, w, 4 * hidden)
        return lstm_update(gates, c)

    def input_gates(self, x: jax.Array) -> jax.Array:
        """The input's share of the gates, bias included: x (N, h, w, Cin) -> (N, h, w, 4H).
        It does not depend on the state, so a whole clip's frames go through it at once."""
        kernel = self.conv.kernel[...]
        cin = kernel.shape[2] - self.hidden
        return _same_conv(x, kernel[:, :, :cin]) + self.conv.bias[...]

    def recur(self, x_gates: jax.Array, state: State) -> State:
        """The same step as __call__ from `input_gates(x)` (B, h, w, 4H): the convolution
        of [x, h] is the sum of the convolutions of x and of h with their slices of the one
        kernel."""
        h, c = state
        kernel = self.conv.kernel[...]
        cin = kernel.shape[2] - self.hidden
        return lstm_update(x_gates + _same_conv(h, kernel[:, :, cin:]), c)


def _same_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """nnx.Conv's padding="SAME", stride-1 convolution, NHWC / HWIO, no bias."""
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


class _Stack(nnx.Module):
    """Cells on top of each other: layer l reads layer l-1's new hidden state."""

    def __init__(self, in_channels: int, hidden: tuple[int, ...], kernel: int, *,
                 rngs: nnx.Rngs) -> None:
        ins = (in_channels, *hidden[:-1])
        self.cells = nnx.List([ConvLSTMCell(i, h, kernel, rngs=rngs) for i, h in zip(ins, hidden)])

    def __call__(self, x: jax.Array, states: list[State], *,
                 x_gates: jax.Array | None = None) -> list[State]:
        """One step; with `x_gates` (the first cell's `input_gates(x)`, computed ahead for a
        whole clip), x is not needed."""
        new = []
        for layer, (cell, state) in enumerate(zip(self.cells, states)):
            if layer == 0 and x_gates is not None:
                h, c = cell.recur(x_gates, state)
            else:
                h, c = cell(x, state)
            new.append((h, c))
            x = h
        return new


class ConvLSTMPredictor(nnx.Module):
    """Encoder-forecaster ConvLSTM (Shi et al. 2015) on patched frames.

        model = ConvLSTMPredictor(channels=1, hidden=(64, 64), kernel=5, patch_size=4, rngs=...)
        logits = model(observed, horizon=10)   # (B, 10, H, W, C) logits of frames T+1..T+10

    `observed` (B, T, H, W, C) float in [0, 1]; H and W divisible by `patch_size`. The outputs
    are logits: `jax.nn.sigmoid(logits)` is the predicted frame in [0, 1].

    Every frame enters the network once: the encoder reads frames 1..T-1, the forecaster, started
    from the encoder's states, reads frame T and emits frame T+1, then reads its own prediction
    (19 recurrent steps for 10 -> 10). The head, shared by both, turns the hidden states after
    reading frame t into the prediction of frame t+1, which `predict_all` also returns for the
    observed frames 2..T (a cheap extra training signal). `shared_weights=True` makes the
    forecaster the encoder itself (one ConvLSTM over all 19 steps, OpenSTL's form).
    """

    def __init__(self, *, channels: int = 1, hidden: tuple[int, ...] = (64, 64),
                 kernel: int = 5, patch_size: int = 4, shared_weights: bool = False,
                 output_bias: float = -3.0, rngs: nnx.Rngs) -> None:
        self.patch_size = patch_size
        patch_channels = patch_size * patch_size * channels
        self.encoder = _Stack(patch_channels, hidden, kernel, rngs=rngs)
        self.forecaster = (self.encoder if shared_weights
                           else _Stack(patch_channels, hidden, kernel, rngs=rngs))
        # Shi et al.: all layers' hidden states -> 1x1 conv -> the prediction. The bias starts
        # at the log-odds of a dark frame (sigmoid(-3) = 0.047; Moving MNIST is ~95% black), so
        # training starts on motion, not on learning that the background is black.
        self.head = nnx.Conv(sum(hidden), patch_channels, (1, 1), rngs=rngs,
                             bias_init=nnx.initializers.constant(output_bias))

    def _predict(self, states: list[State]) -> jax.Array:
        """Every layer's hidden state -> logits of the next frame, patched (B, h, w, p*p*C)."""
        return self.head(jnp.concatenate([h for h, _ in states], axis=-1))

    def encode(self, observed: jax.Array, *,
               with_predictions: bool = False) -> tuple[list[State], jax.Array | None]:
        """Read frames 1..T-1 of `observed` (B, T, H, W, C): every layer's (h, c), and with
        `with_predictions` the logits of frames 2..T (B, T-1, H, W, C)."""
        p = self.patch_size
        b, steps = observed.shape[0], observed.shape[1] - 1
        states = [cell.zero_state(patch(observed[:, 0], p)) for cell in self.encoder.cells]
        # the first layer's input terms of all observed frames in one convolution, before
        # the recurrence (they do not depend on the states): (B, T-1, h, w, 4H)
        seen = observed[:, :steps].reshape(b * steps, *observed.shape[2:])
        x_gates = self.encoder.cells[0].input_gates(patch(seen, p))
        x_gates = x_gates.reshape(b, steps, *x_gates.shape[1:])
        predictions = []
        for t in range(steps):  # Python-unrolled (see the module docstring)
            states = self.encoder(None, states, x_gates=x_gates[:, t])
            if with_predictions:
                predictions.append(unpatch(self._predict(states), p))
        return states, (jnp.stack(predictions, axis=1) if predictions else None)

    def forecast(self, states: list[State], last: jax.Array, horizon: int, *,
                 truth: jax.Array | None = None, teacher: jax.Array | None = None) -> jax.Array:
        """Predict `horizon` frames after `last` (B, H, W, C), feeding each prediction back.

        With `truth` (B, horizon, H, W, C) and `teacher` (B, horizon) in {0, 1}, the input of step
        k >= 1 is truth[:, k-1] where teacher[:, k] is 1 (scheduled sampling), else the model's
        own prediction of that frame. Returns logits (B, horizon, H, W, C).
        """
        p = self.patch_size
        x = patch(last, p)  # (B, h, w, p*p*C)
        outputs = []
        for k in range(horizon):
            states = self.forecaster(x, states)
            logits = self._predict(states)  # (B, h, w, p*p*C)
            outputs.append(unpatch(logits, p))
            x = jax.nn.sigmoid(logits)  # the prediction, fed back
            if truth is not None and teacher is not None and k + 1 < horizon:
                use_truth = teacher[:, k + 1, None, None, None]  # (B, 1, 1, 1)
                x = use_truth * patch(truth[:, k], p) + (1 - use_truth) * x
        return jnp.stack(outputs, axis=1)

    def predict_all(self, observed: jax.Array, horizon: int, *, truth: jax.Array | None = None,
                    teacher: jax.Array | None = None) -> jax.Array:
        """Logits of frames 2..T+horizon: (B, T-1+horizon, H, W, C)."""
        states, seen = self.encode(observed, with_predictions=True)
        future = self.forecast(states, observed[:, -1], horizon, truth=truth, teacher=teacher)
        return future if seen is None else jnp.concatenate([seen, future], axis=1)

    def __call__(self, observed: jax.Array, horizon: int, *, truth: jax.Array | None = None,
                 teacher: jax.Array | None = None) -> jax.Array:
        states, _ = self.encode(observed)
        return self.forecast(states, observed[:, -1], horizon, truth=truth, teacher=teacher)

