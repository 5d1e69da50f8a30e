"""PyTorch reference for realsys's workloads: the peer we measure our speed against.

Six workloads with fixed shapes and parameter counts (see README.md beside this file).
Modes: eager, compile (torch.compile of the nn.Modules, default inductor backend;
optimizer is the fused CPU implementation in both modes). NCHW, float32, 2 threads.

Standalone:  python peer_torch.py [--wl classifier,...] [--modes eager,compile] [--n 3] [--json]
Worker mode: python peer_torch.py --serve   (JSON lines on stdin/stdout, for an A/B driver)

Copied unchanged (but for this paragraph) from the project's shared folder,
shared/bench/peer_torch.py; the README.md named above stayed there (bench/workloads.py lists the
same workloads from realsys's side). bench/run.py runs this copy.
"""
import argparse, json, os, sys, time

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(int(os.environ.get("TORCHB_THREADS", "2")))
torch.manual_seed(0)
CHANNELS_LAST = os.environ.get("TORCHB_CHANNELS_LAST") == "1"


def conv(i, o, k, s=1, bias=True):
    return nn.Conv2d(i, o, k, stride=s, padding=k // 2, bias=bias)


class AlexNet(nn.Module):  # 3x64x64 -> 10
    def __init__(self):
        super().__init__()
        self.c1, self.c2 = conv(3, 64, 5, 2), conv(64, 192, 5)
        self.c3, self.c4, self.c5 = conv(192, 384, 3), conv(384, 256, 3), conv(256, 256, 3)
        self.d1, self.d2, self.d3 = nn.Linear(4096, 1024), nn.Linear(1024, 1024), nn.Linear(1024, 10)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        x = F.relu(self.c3(x))
        x = F.relu(self.c4(x))
        x = F.max_pool2d(F.relu(self.c5(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.d1(self.drop(x)))
        x = F.relu(self.d2(self.drop(x)))
        return self.d3(x)


class LeNet(nn.Module):  # 1x28x28 -> 10
    def __init__(self):
        super().__init__()
        self.c1, self.c2 = conv(1, 32, 5), conv(32, 64, 5)
        self.d1, self.d2 = nn.Linear(7 * 7 * 64, 256), nn.Linear(256, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        return self.d2(F.relu(self.d1(torch.flatten(x, 1))))


NZ, NGF, NDF = 100, 64, 64


class Generator(nn.Module):  # PyTorch DCGAN tutorial generator, 64x64x3
    def __init__(self):
        super().__init__()
        ct = lambda i, o, s, p: nn.ConvTranspose2d(i, o, 4, s, p, bias=False)
        self.net = nn.Sequential(
            ct(NZ, NGF * 8, 1, 0), nn.BatchNorm2d(NGF * 8), nn.ReLU(True),
            ct(NGF * 8, NGF * 4, 2, 1), nn.BatchNorm2d(NGF * 4), nn.ReLU(True),
            ct(NGF * 4, NGF * 2, 2, 1), nn.BatchNorm2d(NGF * 2), nn.ReLU(True),
            ct(NGF * 2, NGF, 2, 1), nn.BatchNorm2d(NGF), nn.ReLU(True),
            ct(NGF, 3, 2, 1), nn.Tanh())

    def forward(self, z):
        return self.net(z)


class Discriminator(nn.Module):
    def __init__(self):
        super().__init__()
        c = lambda i, o, s, p: nn.Conv2d(i, o, 4, s, p, bias=False)
        lr = lambda: nn.LeakyReLU(0.2, inplace=True)
        self.net = nn.Sequential(
            c(3, NDF, 2, 1), lr(),
            c(NDF, NDF * 2, 2, 1), nn.BatchNorm2d(NDF * 2), lr(),
            c(NDF * 2, NDF * 4, 2, 1), nn.BatchNorm2d(NDF * 4), lr(),
            c(NDF * 4, NDF * 8, 2, 1), nn.BatchNorm2d(NDF * 8), lr(),
            c(NDF * 8, 1, 1, 0))

    def forward(self, x):
        return self.net(x).view(-1)


HID = 64


class ConvLSTMPredictor(nn.Module):  # (B,10,1,64,64) -> next-frame logits (B,1,64,64)
    def __init__(self):
        super().__init__()
        self.cell = conv(1 + HID, 4 * HID, 3)
        self.head = conv(HID, 1, 3)

    def forward(self, seq):
        B, T, _, H, W = seq.shape
        h = seq.new_zeros(B, HID, H, W)
        c = seq.new_zeros(B, HID, H, W)
        for t in range(T):
            i, f, o, g = self.cell(torch.cat([seq[:, t], h], 1)).chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
        return self.head(h)


def nparams(m):
    return sum(p.numel() for p in m.parameters())


def maybe_compile(m, mode):
    if CHANNELS_LAST:
        m = m.to(memory_format=torch.channels_last)
    return torch.compile(m) if mode == "compile" else m


def cl(x):
    return x.contiguous(memory_format=torch.channels_last) if CHANNELS_LAST and x.dim() == 4 else x


class Workload:
    unit = "img"

    def step(self):
        raise NotImplementedError


class ClassifierTrain(Workload):
    def __init__(self, model_cls, shape, mode, batch=128):
        self.model = model_cls().train()
        self.params_count = nparams(self.model)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9, fused=True)
        self.fwd = maybe_compile(self.model, mode)
        self.x = cl(torch.rand(batch, *shape))
        self.y = torch.randint(0, 10, (batch,))
        self.units_per_step = batch

    def step(self):
        self.opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.fwd(self.x), self.y)
        loss.backward()
        self.opt.step()


class ClassifierEval(Workload):
    def __init__(self, mode, batch=128):
        self.model = AlexNet().eval()
        self.params_count = nparams(self.model)
        self.fwd = maybe_compile(self.model, mode)
        self.x = cl(torch.rand(batch, 3, 64, 64))
        self.units_per_step = batch

    def step(self):
        with torch.inference_mode():
            self.out = self.fwd(self.x)


class Fool(Workload):
    unit = "step"

    def __init__(self, mode, batch=16, target=3, lr=0.05):
        self.model = AlexNet().eval().requires_grad_(False)
        self.params_count = nparams(self.model)
        self.fwd = maybe_compile(self.model, mode)
        self.x = cl(torch.rand(batch, 3, 64, 64)).requires_grad_(True)
        self.target, self.lr = target, lr
        self.units_per_step = 1

    def step(self):
        x = self.x
        self.fwd(x)[:, self.target].sum().backward()
        with torch.no_grad():
            g = x.grad
            g = g / (g.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt() + 1e-8)
            x.add_(g, alpha=self.lr).clamp_(0.0, 1.0)
        x.grad = None


class DCGAN(Workload):
    """PyTorch DCGAN tutorial step: D on real + detached fake, then G via D(fake).
    D params are frozen during the G backward (no wasted D weight-grads)."""
    unit = "step"

    def __init__(self, mode, batch=64):
        self.G, self.D = Generator().train(), Discriminator().train()
        self.params_count = (nparams(self.G), nparams(self.D))
        self.optG = torch.optim.Adam(self.G.parameters(), lr=2e-4, betas=(0.5, 0.999), fused=True)
        self.optD = torch.optim.Adam(self.D.parameters(), lr=2e-4, betas=(0.5, 0.999), fused=True)
        self.g, self.d = maybe_compile(self.G, mode), maybe_compile(self.D, mode)
        self.real = cl(torch.rand(batch, 3, 64, 64) * 2 - 1)
        self.batch = batch
        self.units_per_step = 1

    def step(self):
        bce = F.binary_cross_entropy_with_logits
        z = cl(torch.randn(self.batch, NZ, 1, 1))
        fake = self.g(z)
        self.optD.zero_grad(set_to_none=True)
        out_r = self.d(self.real)
        out_f = self.d(fake.detach())
        lossD = bce(out_r, torch.ones_like(out_r)) + bce(out_f, torch.zeros_like(out_f))
        lossD.backward()
        self.optD.step()
        self.optG.zero_grad(set_to_none=True)
        self.D.requires_grad_(False)
        out = self.d(fake)
        lossG = bce(out, torch.ones_like(out))
        lossG.backward()
        self.D.requires_grad_(True)
        self.optG.step()


class Frames(Workload):
    unit = "step"

    def __init__(self, mode, batch=16):
        self.model = ConvLSTMPredictor().train()
        self.params_count = nparams(self.model)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3, fused=True)
        self.fwd = maybe_compile(self.model, mode)
        seq = torch.rand(batch, 11, 1, 64, 64)
        self.x, self.y = seq[:, :10].contiguous(), seq[:, 10].contiguous()
        self.units_per_step = 1

    def step(self):
        self.opt.zero_grad(set_to_none=True)
        loss = F.binary_cross_entropy_with_logits(self.fwd(self.x), self.y)
        loss.backward()
        self.opt.step()


BUILDERS = {
    "classifier": lambda m: ClassifierTrain(AlexNet, (3, 64, 64), m),
    "classifier_eval": lambda m: ClassifierEval(m),
    "classifier_small": lambda m: ClassifierTrain(LeNet, (1, 28, 28), m),
    "dcgan": lambda m: DCGAN(m),
    "frames": lambda m: Frames(m),
    "fool": lambda m: Fool(m),
}


def timed(w, n):
    t0 = time.perf_counter()
    for _ in range(n):
        w.step()
    return time.perf_counter() - t0


def setup(name, mode):
    t0 = time.perf_counter()
    w = BUILDERS[name](mode)
    t_build = time.perf_counter() - t0
    t_first = timed(w, 1)  # for compile: dynamo + inductor compile (fwd+bwd) + 1 step
    t_second = timed(w, 1)  # (compile: may still hit a recompile, e.g. requires_grad guards)
    t_third = timed(w, 1)
    return w, dict(params=w.params_count, build_s=t_build, first_s=t_first,
                   second_s=t_second, step_s=t_third, units_per_step=w.units_per_step, unit=w.unit)


def info():
    return dict(torch=torch.__version__, threads=torch.get_num_threads(),
                interop=torch.get_num_interop_threads(), mkldnn=torch.backends.mkldnn.is_available(),
                channels_last=CHANNELS_LAST)


def serve():
    out = sys.stdout
    sys.stdout = sys.stderr
    ws = {}
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "info":
            r = info()
        elif op == "setup" and (cmd["wl"] not in BUILDERS or cmd.get("mode") not in ("eager", "compile")):
            r = dict(skip=True)
        elif op == "setup":
            try:
                ws[(cmd["wl"], cmd["mode"])], r = setup(cmd["wl"], cmd["mode"])
            except Exception as e:  # e.g. inductor failure
                r = dict(error=repr(e)[:500])
        elif op == "run":
            r = dict(t=timed(ws[(cmd["wl"], cmd["mode"])], cmd["n"]))
        elif op == "quit":
            break
        out.write(json.dumps(r) + "\n")
        out.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--serve", action="store_true")
    ap.add_argument("--wl", default="classifier,classifier_eval,classifier_small,dcgan,frames,fool")
    ap.add_argument("--modes", default="eager,compile")
    ap.add_argument("--n", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="one JSON object per line on stdout")
    a = ap.parse_args()
    if a.serve:
        return serve()
    print(json.dumps(info()) if a.json else info(), flush=True)
    for name in a.wl.split(","):
        for mode in a.modes.split(","):
            w, r = setup(name, mode)
            t = min(timed(w, a.n) for _ in range(3))
            rate = a.n * w.units_per_step / t
            if a.json:
                print(json.dumps(dict(workload=name, mode=mode, params=r["params"], unit=w.unit + "/s",
                                      rate=rate, first_call_s=r["first_s"])), flush=True)
            else:
                print(f"{name:18s} {mode:8s} params={r['params']} first_call={r['first_s']:.1f}s "
                      f"{rate:9.2f} {w.unit}/s", flush=True)


if __name__ == "__main__":
    main()
