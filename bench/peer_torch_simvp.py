"""The PyTorch peer of `realsys predict-frames`' default step: SimVP gSTA, the frames_simvp workload.

bench/peer_torch.py (the shared bench's peer, kept unchanged) has the six workloads the shared
bench defined, among them `frames`, a one-cell ConvLSTM. predict-frames' default is SimVP now, so
the bench also times SimVP, and this file adds its peer to peer_torch.BUILDERS and then runs
peer_torch's own main (same modes, same JSON-lines protocol):

    .torchref/bin/python bench/peer_torch_simvp.py --wl frames_simvp --modes eager,compile
    .torchref/bin/python bench/peer_torch_simvp.py --serve        # what bench/run.py starts

The network is realsys_cli/models/simvp.py's at predict-frames' default sizes, read from the
recipe itself (configs/simvp_moving_digits.toml: hid_S, hid_T, N_S, N_T, the patch, the kernels,
the MLP ratio; skip "each"), written in torch the way OpenSTL writes it (openstl/models/
simvp_model.py, openstl/modules/simvp_modules.py) but with realsys's two choices: GroupNorm(1)
in the gSTA blocks and logits out, and its space-to-depth patch (torch's pixel_unshuffle /
pixel_shuffle) when the recipe sets one. Same parameter count (bench/run.py checks it). The
step: (B, 10, 1, 64, 64) in, MSE of sigmoid(logits) against the 10 future frames, gradient
clipping at norm 1, fused Adam, the recipe's batch, as realsys's (which also converts the uint8 clip and advances a cosine schedule).
"""
import sys
import tomllib
from pathlib import Path

import peer_torch
import torch
import torch.nn as nn
import torch.nn.functional as F

RECIPE = tomllib.loads((Path(__file__).resolve().parent.parent / "realsys_cli" / "configs"
                        / "simvp_moving_digits.toml").read_text())
assert RECIPE["simvp_translator"] == "gsta" and RECIPE["simvp_skip"] == "each", RECIPE
HID_S, HID_T, N_S, N_T = (RECIPE[f"simvp_{k}"] for k in ("hid_s", "hid_t", "n_s", "n_t"))
PATCH = RECIPE.get("simvp_patch", 1)
T_IN, T_OUT = RECIPE["input_frames"], RECIPE["output_frames"]
KERNEL, ATTN_KERNEL = RECIPE["simvp_kernel"], RECIPE["simvp_attention_kernel"]
MLP_RATIO = RECIPE["simvp_mlp_ratio"]


class ConvSC(nn.Module):
    def __init__(self, cin, cout, k, down=False, up=False):
        super().__init__()
        stride = 2 if down else 1
        pad = (k - stride + 1) // 2
        self.conv = nn.Conv2d(cin, 4 * cout if up else cout, k, stride, pad)
        self.shuffle = nn.PixelShuffle(2) if up else nn.Identity()
        self.norm = nn.GroupNorm(2, cout)

    def forward(self, x):
        return F.silu(self.norm(self.shuffle(self.conv(x))))


def samplings(n):
    return [i % 2 == 1 for i in range(n)]


class Encoder(nn.Module):
    def __init__(self, cin, hid, n, k):
        super().__init__()
        self.blocks = nn.ModuleList(ConvSC(cin if i == 0 else hid, hid, k, down=d)
                                    for i, d in enumerate(samplings(n)))

    def forward(self, x):
        skip = x = self.blocks[0](x)
        for b in self.blocks[1:]:
            x = b(x)
        return x, skip


class Decoder(nn.Module):
    def __init__(self, hid, cout, n, k):
        super().__init__()
        self.blocks = nn.ModuleList(ConvSC(hid, hid, k, up=u) for u in reversed(samplings(n)))
        self.readout = nn.Conv2d(hid, cout, 1)

    def forward(self, x, skip):
        for b in self.blocks[:-1]:
            x = b(x)
        return self.readout(self.blocks[-1](x + skip))


def depthwise(c, k, dilation=1):
    return nn.Conv2d(c, c, k, padding=dilation * (k - 1) // 2, dilation=dilation, groups=c)


class AttentionModule(nn.Module):
    def __init__(self, dim, kernel, dilation=3):
        super().__init__()
        d_k = 2 * dilation - 1
        dd_k = kernel // dilation + ((kernel // dilation) % 2 - 1)
        self.conv0 = depthwise(dim, d_k)
        self.conv_spatial = depthwise(dim, dd_k, dilation)
        self.conv1 = nn.Conv2d(dim, 2 * dim, 1)

    def forward(self, x):
        f, g = self.conv1(self.conv_spatial(self.conv0(x))).chunk(2, 1)
        return torch.sigmoid(g) * f


class GABlock(nn.Module):
    def __init__(self, dim, kernel, mlp_ratio):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1, self.norm2 = nn.GroupNorm(1, dim), nn.GroupNorm(1, dim)
        self.proj_1, self.proj_2 = nn.Conv2d(dim, dim, 1), nn.Conv2d(dim, dim, 1)
        self.gating = AttentionModule(dim, kernel)
        self.fc1, self.dwconv, self.fc2 = (nn.Conv2d(dim, hidden, 1), depthwise(hidden, 3),
                                           nn.Conv2d(hidden, dim, 1))
        self.layer_scale_1 = nn.Parameter(torch.full((dim, 1, 1), 1e-2))
        self.layer_scale_2 = nn.Parameter(torch.full((dim, 1, 1), 1e-2))

    def forward(self, x):
        y = self.norm1(x)
        x = x + self.layer_scale_1 * (self.proj_2(self.gating(F.gelu(self.proj_1(y)))) + y)
        y = self.norm2(x)
        return x + self.layer_scale_2 * self.fc2(F.gelu(self.dwconv(self.fc1(y))))


class SimVP(nn.Module):  # (B, 10, 1, 64, 64) -> logits of the next 10 frames, same shape
    def __init__(self):
        super().__init__()
        cells = PATCH * PATCH  # a frame's channels after space-to-depth (1 colour)
        self.encoder = Encoder(cells, HID_S, N_S, KERNEL)
        cin, cout = T_IN * HID_S, T_OUT * HID_S
        self.blocks = nn.ModuleList(GABlock(d, ATTN_KERNEL, MLP_RATIO)
                                    for d in [cin] + [HID_T] * (N_T - 1))
        self.reduce_in, self.reduce_out = nn.Conv2d(cin, HID_T, 1), nn.Conv2d(HID_T, cout, 1)
        self.decoder = Decoder(HID_S, cells, N_S, KERNEL)

    def forward(self, x):
        b, t, c, h, w = x.shape
        cells = x.reshape(b * t, c, h, w)
        if PATCH > 1:
            cells = F.pixel_unshuffle(cells, PATCH)  # (B*T, p*p*C, H/p, W/p)
        latent, skip = self.encoder(cells)
        _, s, hl, wl = latent.shape
        z = self.reduce_in(self.blocks[0](latent.reshape(b, t * s, hl, wl)))
        for block in self.blocks[1:]:
            z = block(z)
        z = self.reduce_out(z).reshape(b * T_OUT, s, hl, wl)
        out = self.decoder(z, skip)  # (B*T', p*p*C, H/p, W/p)
        if PATCH > 1:
            out = F.pixel_shuffle(out, PATCH)
        return out.reshape(b, T_OUT, c, h, w)


class FramesSimVP(peer_torch.Workload):
    unit = "step"

    def __init__(self, mode, batch=RECIPE["batch_size"]):
        self.model = SimVP().train()
        self.params_count = peer_torch.nparams(self.model)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=4e-3, fused=True)
        self.fwd = peer_torch.maybe_compile(self.model, mode)
        seq = torch.rand(batch, T_IN + T_OUT, 1, 64, 64)
        self.x, self.y = seq[:, :T_IN].contiguous(), seq[:, T_IN:].contiguous()
        self.units_per_step = 1

    def step(self):
        self.opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(torch.sigmoid(self.fwd(self.x)), self.y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0, foreach=True)
        self.opt.step()


peer_torch.BUILDERS["frames_simvp"] = lambda m: FramesSimVP(m)

if __name__ == "__main__":
    if "--wl" not in sys.argv and "--serve" not in sys.argv:
        sys.argv += ["--wl", "frames_simvp"]
    peer_torch.main()
