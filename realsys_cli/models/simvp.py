"""SimVP: a recurrence-free next-frames predictor (Flax NNX, NHWC) with the gSTA translator.

Gao, Tan, Wu, Li, "SimVP: Simpler yet Better Video Prediction", CVPR 2022; the gated
spatiotemporal attention (gSTA) translator of SimVP v2: Tan, Li, Gao, Li, "SimVP: Towards Simple
yet Powerful Spatiotemporal Predictive Learning", 2022 (TAU, CVPR 2023, is its sibling). The
layers follow OpenSTL's implementation (chengtan9907/OpenSTL, openstl/models/simvp_model.py and
openstl/modules/simvp_modules.py) in shapes, kernel sizes, paddings and initialisation:

    observed (B, T, H, W, C) --per frame--> encoder: N_S ConvSC blocks, every second one strided
        -> (B*T, H/4, W/4, hid_S)  and the first block's output (B*T, H, W, hid_S), the skip
    stack the frames along channels -> (B, H/4, W/4, T*hid_S) --> translator: N_T gSTA blocks,
        the first on T*hid_S channels then 1x1 down to hid_T, the last 1x1 out to T'*hid_S
    split into frames -> (B*T', H/4, W/4, hid_S) --per frame--> decoder: N_S ConvSC blocks,
        every second one upsampling (conv to 4x channels + pixel shuffle); the skip added before
        the last; a 1x1 readout -> logits (B, T', H, W, C) of all T' future frames at once

Where this differs from OpenSTL, and why:
  * normalisation in the gSTA blocks is GroupNorm with one group (per clip over H, W and the
    channels, MetaFormer's "LayerNorm for convolutions") where OpenSTL has BatchNorm2d: no
    running statistics in the state (the train step is a pure function of params), no
    train/eval difference, and a clip's prediction never depends on the other clips of its batch;
  * the outputs are logits, `sigmoid(logits)` the frames (OpenSTL regresses the values
    directly): the same losses, metrics and movie code serve the ConvLSTM and SimVP; the readout
    bias starts at -3, the log-odds of a dark frame, as the ConvLSTM's head;
  * T' (output frames) may differ from T: the translator's last 1x1 maps to T'*hid_S channels.
    The skip: OpenSTL (T' = T) adds the first encoder block's features of observed frame k to
    future frame k (`skip="each"`, the default; it needs T' = T); `skip="last"` adds the last
    observed frame's features to every future frame;
  * past T' frames (the movie) the model feeds its own T' predictions back as the next observed
    frames, T' at a time (`__call__` with a larger `horizon`);
  * `patch` > 1 (space-to-depth, as OpenSTL patches the ConvLSTM's frames): every frame
    (H, W, C) is read as (H/p, W/p, p*p*C) before the encoder and the readout's p*p*C channels
    are put back as (H, W, C). With p = 2 and N_S = 2 the latent grid is the same H/4 as with
    p = 1 and N_S = 4, without the encoder's and decoder's full-resolution layers, which cost
    most of a step on XLA:CPU at hid_S 8 (docs/frames.md).

Causal by construction: the model's only input is the observed frames; `__call__` takes no
future frames at all (tests/test_simvp.py).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from realsys_cli.models.convlstm import patch as space_to_depth
from realsys_cli.models.convlstm import unpatch as depth_to_space
from realsys_cli.models.simvp_ops import depthwise_conv, group_norm, pixel_shuffle

SKIPS = ("each", "last")


def _fan_out_normal(kernel: int, out_channels: int, groups: int = 1) -> nnx.Initializer:
    """OpenSTL's gSTA conv init: N(0, 2 / fan_out), fan_out = k*k*out/groups (torch's count,
    which for a depthwise conv is k*k; flax's variance_scaling would count k*k*out)."""
    std = math.sqrt(2.0 / (kernel * kernel * out_channels // groups))
    return nnx.initializers.normal(std)


def _conv(cin: int, cout: int, kernel: int, *, rngs: nnx.Rngs) -> nnx.Conv:
    """A stride-1 conv of the gSTA blocks (1x1 in practice), OpenSTL's init."""
    return nnx.Conv(cin, cout, (kernel, kernel), padding="SAME",
                    kernel_init=_fan_out_normal(kernel, cout), rngs=rngs)


class DepthwiseConv(nnx.Module):
    """A depthwise k x k conv with bias, 'SAME' size, optionally dilated; the kernel is kept
    as nnx.Conv's grouped kernel (k, k, 1, C) and initialised as OpenSTL's (fan_out = k*k)."""

    def __init__(self, channels: int, kernel: int, *, rngs: nnx.Rngs, dilation: int = 1) -> None:
        init = _fan_out_normal(kernel, channels, channels)
        self.kernel = nnx.Param(init(rngs.params(), (kernel, kernel, 1, channels)))
        self.bias = nnx.Param(jnp.zeros((channels,)))
        self.dilation = dilation

    def __call__(self, x: jax.Array) -> jax.Array:
        return depthwise_conv(x, self.kernel[...][:, :, 0], self.dilation) + self.bias[...]


class GroupNorm(nnx.Module):
    """nnx.GroupNorm's parameters (scale 1, bias 0, shape (C,)) over `group_norm`."""

    def __init__(self, channels: int, *, num_groups: int, epsilon: float = 1e-5) -> None:
        self.scale = nnx.Param(jnp.ones((channels,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((channels,), jnp.float32))
        self.num_groups, self.epsilon = num_groups, epsilon

    def __call__(self, x: jax.Array) -> jax.Array:
        return group_norm(x, self.scale[...], self.bias[...], self.num_groups, self.epsilon)


class ConvSC(nnx.Module):
    """OpenSTL's ConvSC: conv (stride 2 to downsample, or to 4x channels + pixel shuffle to
    upsample) -> GroupNorm(2 groups) -> SiLU. (B, H, W, cin) -> (B, H', W', cout)."""

    def __init__(self, cin: int, cout: int, kernel: int, *, down: bool = False,
                 up: bool = False, rngs: nnx.Rngs) -> None:
        stride = 2 if down else 1
        pad = (kernel - stride + 1) // 2  # torch's: symmetric, so 64 -> 32 keeps the centre
        self.up = up
        self.conv = nnx.Conv(cin, 4 * cout if up else cout, (kernel, kernel), strides=stride,
                             padding=((pad, pad), (pad, pad)),
                             kernel_init=nnx.initializers.truncated_normal(0.02), rngs=rngs)
        self.norm = GroupNorm(cout, num_groups=2, epsilon=1e-5)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.conv(x)
        if self.up:
            y = pixel_shuffle(y, 2)  # (B, 2H, 2W, cout)
        return jax.nn.silu(self.norm(y))


def _samplings(n: int) -> list[bool]:
    """Which of the N_S encoder blocks stride (OpenSTL's sampling_generator): the 2nd, 4th, ..."""
    return [i % 2 == 1 for i in range(n)]


class Encoder(nnx.Module):
    """Per frame: (N, H, W, C) -> latent (N, H/2^(N_S//2), W/2^(N_S//2), hid), and the first
    block's output, the skip (N, H, W, hid)."""

    def __init__(self, cin: int, hid: int, blocks: int, kernel: int, *, rngs: nnx.Rngs) -> None:
        self.blocks = nnx.List([ConvSC(cin if i == 0 else hid, hid, kernel, down=down, rngs=rngs)
                                for i, down in enumerate(_samplings(blocks))])

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        skip = x = self.blocks[0](x)
        for block in self.blocks[1:]:
            x = block(x)
        return x, skip


class Decoder(nnx.Module):
    """Per frame: latent (N, h, w, hid) + skip (N, H, W, hid) -> logits (N, H, W, cout)."""

    def __init__(self, hid: int, cout: int, blocks: int, kernel: int, *, output_bias: float,
                 rngs: nnx.Rngs) -> None:
        ups = list(reversed(_samplings(blocks)))  # the 1st, 3rd, ... block upsamples
        self.blocks = nnx.List([ConvSC(hid, hid, kernel, up=up, rngs=rngs) for up in ups])
        self.readout = nnx.Conv(hid, cout, (1, 1), rngs=rngs,
                                bias_init=nnx.initializers.constant(output_bias))

    def __call__(self, x: jax.Array, skip: jax.Array) -> jax.Array:
        for block in self.blocks[:-1]:
            x = block(x)
        return self.readout(self.blocks[-1](x + skip))


class AttentionModule(nnx.Module):
    """gSTA's large-kernel attention: depthwise k_d x k_d, depthwise dilated k_dd x k_dd
    (dilation 3; about a `kernel` x `kernel` receptive field together: 5 and 7 for 21, which
    see 23 px), then a 1x1 to 2x channels split into f, g: returns sigmoid(g) * f.
    (B, h, w, d) -> (B, h, w, d)."""

    def __init__(self, dim: int, kernel: int, *, rngs: nnx.Rngs, dilation: int = 3) -> None:
        d_k = 2 * dilation - 1
        dd_k = kernel // dilation + ((kernel // dilation) % 2 - 1)  # odd, as OpenSTL
        self.conv0 = DepthwiseConv(dim, d_k, rngs=rngs)
        self.conv_spatial = DepthwiseConv(dim, dd_k, dilation=dilation, rngs=rngs)
        self.conv1 = _conv(dim, 2 * dim, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        f, g = jnp.split(self.conv1(self.conv_spatial(self.conv0(x))), 2, axis=-1)
        return jax.nn.sigmoid(g) * f


class SpatialAttention(nnx.Module):
    """1x1 -> GELU -> large-kernel gated attention -> 1x1, plus the input (attn_shortcut)."""

    def __init__(self, dim: int, kernel: int, *, rngs: nnx.Rngs) -> None:
        self.proj_1 = _conv(dim, dim, 1, rngs=rngs)
        self.gating = AttentionModule(dim, kernel, rngs=rngs)
        self.proj_2 = _conv(dim, dim, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jax.nn.gelu(self.proj_1(x), approximate=False)  # torch's nn.GELU is the exact one
        return self.proj_2(self.gating(y)) + x


class MixMlp(nnx.Module):
    """The gSTA block's MLP: 1x1 up to `hidden`, depthwise 3x3, GELU, 1x1 back down."""

    def __init__(self, dim: int, hidden: int, *, rngs: nnx.Rngs) -> None:
        self.fc1 = _conv(dim, hidden, 1, rngs=rngs)
        self.dwconv = DepthwiseConv(hidden, 3, rngs=rngs)
        self.fc2 = _conv(hidden, dim, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(jax.nn.gelu(self.dwconv(self.fc1(x)), approximate=False))


class GABlock(nnx.Module):
    """OpenSTL's GASubBlock (gSTA): x + s1 * attn(norm(x)), then + s2 * mlp(norm(x)), with
    per-channel layer scales starting at 0.01 (so the block starts near the identity)."""

    def __init__(self, dim: int, kernel: int, mlp_ratio: float, *, rngs: nnx.Rngs) -> None:
        self.norm1 = nnx.GroupNorm(dim, num_groups=1, epsilon=1e-5, rngs=rngs)
        self.attn = SpatialAttention(dim, kernel, rngs=rngs)
        self.norm2 = nnx.GroupNorm(dim, num_groups=1, epsilon=1e-5, rngs=rngs)
        self.mlp = MixMlp(dim, int(dim * mlp_ratio), rngs=rngs)
        # float32 given: a Python scalar's weak type would differ from the updated params' and
        # make jit compile the train step a second time
        self.layer_scale_1 = nnx.Param(jnp.full((dim,), 1e-2, jnp.float32))
        self.layer_scale_2 = nnx.Param(jnp.full((dim,), 1e-2, jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.layer_scale_1[...] * self.attn(self.norm1(x))
        return x + self.layer_scale_2[...] * self.mlp(self.norm2(x))


class Translator(nnx.Module):
    """OpenSTL's MidMetaNet with gSTA blocks: (B, h, w, cin) -> (B, h, w, cout).

    Block 0 runs on cin channels and a 1x1 takes it to `hid`; blocks 1..N-2 run on `hid`; block
    N-1 runs on `hid` and a 1x1 takes it to cout (cin = T*hid_S, cout = T'*hid_S)."""

    def __init__(self, cin: int, hid: int, cout: int, blocks: int, kernel: int,
                 mlp_ratio: float, *, rngs: nnx.Rngs) -> None:
        dims = [cin, *[hid] * (blocks - 1)]
        self.blocks = nnx.List([GABlock(d, kernel, mlp_ratio, rngs=rngs) for d in dims])
        # a 1x1 where the width changes (OpenSTL's MetaBlock.reduction; torch's default init
        # for it is close to flax's lecun normal)
        self.reduce_in = nnx.Conv(cin, hid, (1, 1), rngs=rngs) if cin != hid else None
        self.reduce_out = nnx.Conv(hid, cout, (1, 1), rngs=rngs) if hid != cout else None

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.blocks[0](x)  # (B, h, w, cin)
        if self.reduce_in is not None:
            x = self.reduce_in(x)  # (B, h, w, hid)
        for block in self.blocks[1:]:
            x = block(x)
        return x if self.reduce_out is None else self.reduce_out(x)  # (B, h, w, cout)


class ResidualConvBlock(nnx.Module):
    """x + s * conv3x3(GELU(norm(conv3x3_dilated(GELU(norm(x)))))): a pre-norm residual block
    of two dense 3x3 convolutions, the first dilated (1 or 2: the translator alternates, so
    that 3 blocks see 19 latent cells, 76 px), with a per-channel layer scale from 0.01 as
    gSTA's. (B, h, w, d) -> (B, h, w, d)."""

    def __init__(self, dim: int, dilation: int, *, rngs: nnx.Rngs) -> None:
        self.norm1 = nnx.GroupNorm(dim, num_groups=1, epsilon=1e-5, rngs=rngs)
        self.conv1 = nnx.Conv(dim, dim, (3, 3), padding="SAME", kernel_dilation=dilation,
                              kernel_init=_fan_out_normal(3, dim), rngs=rngs)
        self.norm2 = nnx.GroupNorm(dim, num_groups=1, epsilon=1e-5, rngs=rngs)
        self.conv2 = nnx.Conv(dim, dim, (3, 3), padding="SAME",
                              kernel_init=_fan_out_normal(3, dim), rngs=rngs)
        self.layer_scale = nnx.Param(jnp.full((dim,), 1e-2, jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.conv1(jax.nn.gelu(self.norm1(x), approximate=False))
        y = self.conv2(jax.nn.gelu(self.norm2(y), approximate=False))
        return x + self.layer_scale[...] * y


class ConvTranslator(nnx.Module):
    """A translator of dense convolutions (`translator="conv"`): a 1x1 from cin to hid, N
    residual blocks of two 3x3 convolutions on hid channels, a 1x1 to cout.
    (B, h, w, cin) -> (B, h, w, cout).

    Why beside gSTA: on XLA:CPU a depthwise convolution runs far below a dense one's FLOP
    rate (gSTA's 5x5 depthwise on (16, 16, 16, 128) took 40 ms forward, a dense 3x3 128 -> 128
    on the same tensor, 18x the FLOPs, about as long), so at hid 128 and 3 blocks this
    translator's train step costs about a quarter of gSTA's (docs/frames.md)."""

    def __init__(self, cin: int, hid: int, cout: int, blocks: int, *, rngs: nnx.Rngs) -> None:
        self.reduce_in = nnx.Conv(cin, hid, (1, 1), rngs=rngs)
        self.blocks = nnx.List([ResidualConvBlock(hid, 1 + i % 2, rngs=rngs)
                                for i in range(blocks)])
        self.reduce_out = nnx.Conv(hid, cout, (1, 1), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.reduce_in(x)  # (B, h, w, hid)
        for block in self.blocks:
            x = block(x)
        return self.reduce_out(x)  # (B, h, w, cout)


TRANSLATORS = ("gsta", "conv")


class SimVP(nnx.Module):
    """Encoder -> translator (gSTA, or `translator="conv"`) -> decoder; all `future_frames`
    frames in one pass.

        model = SimVP(channels=1, input_frames=10, future_frames=10, rngs=nnx.Rngs(0))
        logits = model(observed, horizon=10)   # (B, 10, H, W, C); sigmoid(logits) = the frames

    `observed` (B, input_frames, H, W, C) float in [0, 1]; H and W divisible by
    patch * 2^(spatial_blocks//2). A `horizon` past `future_frames` feeds the predictions back (see
    `__call__`).
    """

    def __init__(self, *, channels: int = 1, input_frames: int = 10, future_frames: int = 10,
                 hid_s: int = 8, hid_t: int = 128, spatial_blocks: int = 4,
                 translator_blocks: int = 3, kernel: int = 3, attention_kernel: int = 21,
                 mlp_ratio: float = 4.0, skip: str = "each", output_bias: float = -3.0,
                 translator: str = "gsta", patch: int = 1, rngs: nnx.Rngs) -> None:
        if translator not in TRANSLATORS:
            raise ValueError(f"translator must be one of {', '.join(TRANSLATORS)}, got "
                             f"{translator!r}")
        if skip not in SKIPS:
            raise ValueError(f"skip must be one of {', '.join(SKIPS)}, got {skip!r}")
        if skip == "each" and future_frames != input_frames:
            raise ValueError("skip='each' adds observed frame k's features to future frame k: it "
                             "needs as many future frames as observed ones (or skip='last')")
        if patch < 1:
            raise ValueError(f"patch must be at least 1, got {patch}")
        self.input_frames, self.future_frames, self.skip = input_frames, future_frames, skip
        self.patch = patch
        cells = channels * patch * patch  # a frame cell's values after space-to-depth
        self.encoder = Encoder(cells, hid_s, spatial_blocks, kernel, rngs=rngs)
        cin, cout = input_frames * hid_s, future_frames * hid_s
        self.translator = (
            Translator(cin, hid_t, cout, translator_blocks, attention_kernel, mlp_ratio,
                       rngs=rngs) if translator == "gsta"
            else ConvTranslator(cin, hid_t, cout, translator_blocks, rngs=rngs))
        self.decoder = Decoder(hid_s, cells, spatial_blocks, kernel, output_bias=output_bias,
                               rngs=rngs)

    def predict_once(self, observed: jax.Array) -> jax.Array:
        """observed (B, T, H, W, C) in [0, 1] -> logits of the next T' frames (B, T', H, W, C)."""
        b, t, h0, w0, c0 = observed.shape
        t_out, p = self.future_frames, self.patch
        cells = space_to_depth(observed.reshape(b * t, h0, w0, c0), p)  # (B*T, H/p, W/p, p*p*C)
        _, h, w, _ = cells.shape
        # latent (B*T, h', w', S), skip (B*T, H/p, W/p, S)
        latent, skip = self.encoder(cells)
        _, hl, wl, s = latent.shape
        # frames side by side along channels: (B, h', w', T*S), frame-major as torch's view
        z = latent.reshape(b, t, hl, wl, s).transpose(0, 2, 3, 1, 4).reshape(b, hl, wl, t * s)
        z = self.translator(z)  # (B, h', w', T'*S)
        z = z.reshape(b, hl, wl, t_out, s).transpose(0, 3, 1, 2, 4).reshape(b * t_out, hl, wl, s)
        skip = skip.reshape(b, t, h, w, s)
        skip = skip if self.skip == "each" else jnp.broadcast_to(skip[:, -1:], (b, t_out, h, w, s))
        logits = self.decoder(z, skip.reshape(b * t_out, h, w, s))  # (B*T', H/p, W/p, p*p*C)
        return depth_to_space(logits, p).reshape(b, t_out, h0, w0, c0)

    def __call__(self, observed: jax.Array, horizon: int) -> jax.Array:
        """Logits of the `horizon` frames after `observed` (B, T, H, W, C): (B, horizon, ...).

        Up to T' frames: one pass. Further (the movie): the last T frames of the observed and
        predicted ones so far (the predictions as frames, sigmoid(logits)) are read as the next
        observed clip, T' new frames a pass, cut to exactly `horizon`. The later passes run in a
        `lax.scan` (inference only: no gradient flows through them, and the compile stays one
        pass however long the movie)."""
        first = self.predict_once(observed)  # (B, T', H, W, C)
        passes = -(-horizon // self.future_frames)  # ceil
        if passes == 1:
            return first[:, :horizon]
        t = self.input_frames

        def body(carry: tuple[jax.Array, jax.Array], _: None):
            window, logits = carry  # (B, T, H, W, C) frames, (B, T', H, W, C) logits
            window = jnp.concatenate([window, jax.nn.sigmoid(logits)], axis=1)[:, -t:]
            logits = self.predict_once(window)
            return (window, logits), logits

        _, rest = jax.lax.scan(body, (observed, first), None, length=passes - 1)
        # rest (passes-1, B, T', H, W, C) -> (B, (passes-1)*T', H, W, C)
        rest = jnp.moveaxis(rest, 0, 1).reshape(first.shape[0], -1, *first.shape[2:])
        return jnp.concatenate([first, rest], axis=1)[:, :horizon]
