"""Speed of realsys against its PyTorch peer, side by side on this machine (`make bench`).

    make bench
    .venv/bin/python bench/run.py --workloads classifier_small,classifier,classifier_eval
    .venv/bin/python bench/run.py --workloads classifier --jax-flags both   # flags on vs off
    .venv/bin/python bench/run.py --json                                  # one JSON object

Two kinds of worker speak the same JSON-lines protocol: the peer (bench/peer_torch_simvp.py --serve,
in its own venv .torchref/) and realsys (bench/jax_worker.py --serve, in .venv/). For
each workload the driver sets both up (first-call / compile seconds are kept), picks a step count
per side so that one run takes about --round-seconds, then runs them in alternation, A B A B ...,
for --rounds rounds: one worker computes at a time, the others wait idle. The result is the
median over rounds of realsys's rate / the peer's rate in the same round, against the better of
the peer's modes (eager, torch.compile): 1.0 = parity, 0.5 = realsys takes twice as long.

XLA flags: each realsys command sets the flags of realsys_cli.xla_flags for what it computes
(training flags where there is a backward pass: the trainers, fool's ascent; inference flags for
evaluate and classify), so --jax-flags auto (the default) measures each workload with its
command's flags; `training` / `inference` / `default` force one setting; `both` measures every
workload with its own flags, the training flags and XLA's defaults (the flags' own effect, in the
same interleaved rounds).

Set up the peer's venv once (about 1 GB, CPU-only torch):
    python3 -m venv .torchref && .torchref/bin/pip install torch==2.13.0 numpy
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from realsys_cli.launch import with_malloc_tunables  # noqa: E402  (the `realsys` launcher's)

# peer_torch.py (the shared bench's six workloads) with frames_simvp added to its builders
PEER = ROOT / "bench" / "peer_torch_simvp.py"
TORCH_PYTHON = ROOT / ".torchref" / "bin" / "python"
WORKLOADS = ("classifier_small", "classifier", "classifier_eval", "dcgan", "frames",
             "frames_simvp", "fool")
# The flag set each workload's command uses (realsys_cli.xla_flags): evaluate and classify the
# inference flags; the trainers and fool's gradient ascent the training flags.
USUAL_FLAGS = {"classifier_eval": "inference"}


def usual_flags(workload: str) -> str:
    return USUAL_FLAGS.get(workload, "training")
SETUP_TIMEOUT_S = 1200.0  # torch.compile or an XLA compile on a busy 2-core machine


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class WorkerError(RuntimeError):
    pass


class Worker:
    """A --serve process: one JSON line in, one JSON line out."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None):
        self.name = name
        self.log = tempfile.NamedTemporaryFile("w+", prefix=f"bench-{name}-", suffix=".log",
                                               delete=False)
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, bufsize=1, cwd=ROOT, env=env)

    def ask(self, timeout: float, **cmd: Any) -> dict[str, Any]:
        try:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise WorkerError(self._died()) from None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise WorkerError(f"{self.name} gave no answer to {cmd} in {timeout:.0f} s "
                              f"(log: {self.log.name})")
        line = self.proc.stdout.readline()
        if not line:
            raise WorkerError(self._died())
        return json.loads(line)

    def _died(self) -> str:
        self.proc.wait(timeout=10)
        self.log.flush()
        tail = Path(self.log.name).read_text(errors="replace")[-1500:]
        return f"{self.name} exited with code {self.proc.returncode}; its stderr ends:\n{tail}"

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Side:
    """One contestant of a workload: realsys under one flag setting, or one peer mode."""

    def __init__(self, label: str, worker: Worker, mode: str):
        self.label, self.worker, self.mode = label, worker, mode
        self.setup: dict[str, Any] = {}
        self.n = 1
        self.rates: list[float] = []

    @property
    def ok(self) -> bool:
        return bool(self.setup) and "skip" not in self.setup and "error" not in self.setup

    def do_setup(self, wl: str, round_seconds: float) -> None:
        t0 = time.perf_counter()
        self.setup = self.worker.ask(SETUP_TIMEOUT_S, op="setup", wl=wl, mode=self.mode)
        took = time.perf_counter() - t0
        if self.ok:
            self.n = max(1, round(round_seconds / max(self.setup["step_s"], 1e-6)))
            say(f"  {wl} {self.label}: set up in {took:.1f} s (first call "
                f"{self.setup['first_s']:.2f} s), {self.n} steps a round")
        else:
            say(f"  {wl} {self.label}: {self.setup}")

    def do_round(self, wl: str) -> float:
        timeout = max(120.0, 30 * self.n * self.setup["step_s"])
        t = self.worker.ask(timeout, op="run", wl=wl, mode=self.mode, n=self.n)["t"]
        rate = self.n * self.setup["units_per_step"] / t
        self.rates.append(rate)
        return rate


def same_params(a: Any, b: Any) -> bool:
    as_list = lambda p: [int(x) for x in (p if isinstance(p, (list, tuple)) else [p])]  # noqa: E731
    return as_list(a) == as_list(b)


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def wait_quiet(threshold: float, max_wait_s: float) -> dict[str, Any]:
    """Poll the 1-minute load average until it is below `threshold`, for at most max_wait_s."""
    t0 = time.perf_counter()
    while os.getloadavg()[0] >= threshold and time.perf_counter() - t0 < max_wait_s:
        say(f"waiting for a quieter machine: load {load()} >= {threshold} "
            f"({time.perf_counter() - t0:.0f}/{max_wait_s:.0f} s)")
        time.sleep(min(30.0, max(1.0, max_wait_s - (time.perf_counter() - t0))))
    return {"waited_s": round(time.perf_counter() - t0, 1), "load": load(),
            "quiet": os.getloadavg()[0] < threshold}


def bench_workload(wl: str, jax_sides: list[Side], peer_sides: list[Side], rounds: int,
                   round_seconds: float, pause_s: float) -> dict[str, Any]:
    say(f"{wl}: setting up (load {load()})")
    row: dict[str, Any] = {"workload": wl}
    for side in jax_sides:
        side.do_setup(wl, round_seconds)
    live_jax = [s for s in jax_sides if s.ok]
    if not live_jax:
        first = jax_sides[0].setup
        row["skipped"] = first.get("reason") or first.get("error") or str(first)
        return row
    for side in peer_sides:
        side.do_setup(wl, round_seconds)
    live_peer = [s for s in peer_sides if s.ok]
    sides = live_jax + live_peer
    row["load_during"] = [load()]
    for r in range(rounds):
        order = sides[r % len(sides):] + sides[: r % len(sides)]  # rotate who goes first
        shown = []
        for side in order:
            time.sleep(pause_s)  # let the previous worker's threads go idle
            shown.append(f"{side.label} {fmt_rate(side.do_round(wl))}")
        say(f"  round {r + 1}/{rounds}: " + ", ".join(shown))
    row["load_during"].append(load())

    unit = live_jax[0].setup["unit"] + "/s"
    row.update(unit=unit, rounds=rounds, realsys_params=live_jax[0].setup["params"],
               realsys_describe=live_jax[0].setup.get("describe", ""))
    best = max(live_peer, key=lambda s: statistics.median(s.rates)) if live_peer else None
    for side in peer_sides:
        key = f"peer_{side.mode}"
        row[key] = ({"rate": statistics.median(side.rates), "first_call_s": side.setup["first_s"],
                     "n": side.n} if side.ok else {"error": side.setup.get("error", "skipped")})
    if live_peer:
        row["peer_params"] = live_peer[0].setup["params"]
        row["params_match"] = same_params(row["realsys_params"], row["peer_params"])
        row["peer_best"] = best.mode
    for side in live_jax:
        entry: dict[str, Any] = {"rate": statistics.median(side.rates),
                                 "first_call_s": side.setup["first_s"], "n": side.n,
                                 "params": side.setup["params"]}
        if best is not None:
            ratios = [a / b for a, b in zip(side.rates, best.rates)]
            entry.update(ratio=statistics.median(ratios), ratio_min=min(ratios),
                         ratio_max=max(ratios))
        row[f"realsys_{side.mode}"] = entry
    if len(live_jax) == 2:  # --jax-flags both: the flags' own effect, round by round
        t, d = (next(s for s in live_jax if s.mode == m) for m in ("training", "default"))
        row["training_over_default"] = statistics.median(
            [a / b for a, b in zip(t.rates, d.rates)])
    return row


def fmt_rate(r: float) -> str:
    return f"{r:.1f}" if r >= 10 else f"{r:.3g}"


def fmt_params(p: Any) -> str:
    return "/".join(f"{int(x):,}" for x in (p if isinstance(p, (list, tuple)) else [p]))


def table(rows: list[dict[str, Any]], modes: list[str]) -> str:
    head = ["workload", "params (realsys = peer)", "realsys", *[f"peer {m}" for m in modes],
            "ratio (min-max)", "first call s: realsys / " + " / ".join(modes)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        if "skipped" in row:
            lines.append(f"| {row['workload']} | skipped: {row['skipped']} |"
                         + " |" * (len(head) - 2))
            continue
        for key in sorted(k for k in row if k.startswith("realsys_") and isinstance(row[k], dict)):
            j = row[key]
            usual = usual_flags(row["workload"])
            name = row["workload"] + ("" if key == "realsys_auto" and j["xla_flags"] == usual
                                      else f" [{j['xla_flags']} flags]")
            params = fmt_params(j["params"])
            if "peer_params" in row:
                params += " = " if same_params(j["params"], row["peer_params"]) else " != "
                params += fmt_params(row["peer_params"])
            peer = [(fmt_rate(row[f"peer_{m}"]["rate"]) + (" *" if row.get("peer_best") == m
                                                          else ""))
                    if "rate" in row.get(f"peer_{m}", {}) else "failed" for m in modes]
            ratio = (f"**{j['ratio']:.2f}** ({j['ratio_min']:.2f}-{j['ratio_max']:.2f})"
                     if "ratio" in j else "n/a")
            first = " / ".join([f"{j['first_call_s']:.1f}"] + [
                f"{row[f'peer_{m}']['first_call_s']:.1f}"
                if "rate" in row.get(f"peer_{m}", {}) else "-" for m in modes])
            lines.append(f"| {name} | {params} | {fmt_rate(j['rate'])} {row['unit']} | "
                         + " | ".join(peer) + f" | {ratio} | {first} |")
        if "training_over_default" in row:
            lines.append(f"| {row['workload']}: training flags / default flags | | "
                         f"x{row['training_over_default']:.2f} |" + " |" * (len(head) - 3))
    return "\n".join(lines)


def cpu_list(text: str) -> set[int]:
    """A taskset CPU list ("0", "0,1", "0-3") as a set."""
    out: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def report(result: dict[str, Any]) -> str:
    """The printed form of a run: a header line and a Markdown table."""
    infos = result["workers"]
    versions = ", ".join(dict.fromkeys(
        f"{k} {v}" for name in ("training", "default", "peer") if name in infos
        for k, v in infos[name].items() if k in ("jax", "flax", "torch")))
    return "\n".join([
        f"realsys vs PyTorch peer, {result['started']}, {result['cpus']} CPUs"
        + (f" (workers pinned to CPU {result['cpus_pinned']}, peer threads "
           f"{infos.get('peer', {}).get('threads')})" if result.get("cpus_pinned") else "")
        + f", {versions}; "
        f"load average (1/5/15 min) before {result['load_before']}, "
        f"after {result['load_after']}",
        f"rates: median of {result['rounds']} interleaved rounds; ratio = realsys / the better "
        "peer mode (*), median (and range) of per-round ratios; 1.0 = parity",
        table(result["workloads"], result.get("modes", ["eager", "compile"]))])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("--workloads", default=",".join(WORKLOADS),
                    help="comma-separated, from: " + ", ".join(WORKLOADS))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--modes", default="eager,compile", help="the peer's modes to measure")
    ap.add_argument("--malloc", choices=("tuned", "default"), default="tuned",
                    help="both sides run under the glibc malloc tunables the `realsys` launcher "
                         "sets (realsys_cli/launch.py), or under glibc's defaults")
    ap.add_argument("--jax-flags", choices=("auto", "training", "inference", "default", "both"),
                    default="auto")
    ap.add_argument("--round-seconds", type=float, default=3.0,
                    help="target length of one side's run in a round")
    ap.add_argument("--pause", type=float, default=0.3,
                    help="seconds of rest before each run (the other worker's threads go idle)")
    ap.add_argument("--quiet-load", type=float, default=0.0,
                    help="before each workload, wait until the 1-minute load average is below "
                         "this (0 = do not wait)")
    ap.add_argument("--quiet-wait", type=float, default=1200.0,
                    help="the longest wait for --quiet-load, in seconds (then measure anyway)")
    ap.add_argument("--cpus", default="",
                    help="pin both workers to these CPUs (taskset list, e.g. 0) and give the "
                         "peer as many threads (XLA sizes its pool from the affinity); default: "
                         "no pinning, the peer's 2 threads")
    ap.add_argument("--peer", default=str(PEER), help="peer_torch.py")
    ap.add_argument("--torch-python", default=str(TORCH_PYTHON))
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--render", metavar="RESULT.json",
                    help="print the table of a saved --json result and exit")
    a = ap.parse_args()
    if a.render:
        print(report(json.loads(Path(a.render).read_text())))
        return 0

    workloads = [w.strip() for w in a.workloads.split(",") if w.strip()]
    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    unknown = sorted(set(workloads) - set(WORKLOADS))
    if unknown or not set(modes) <= {"eager", "compile"} or not modes or a.rounds < 1:
        ap.error(f"unknown workload(s) {unknown}" if unknown else "bad --modes or --rounds")
    if not Path(a.torch_python).exists():
        say(f"The PyTorch peer's venv is missing ({a.torch_python}). Make it once with:\n"
            f"    cd {ROOT} && python3 -m venv .torchref && "
            ".torchref/bin/pip install torch==2.13.0 numpy")
        return 1
    if not Path(a.peer).exists():
        say(f"The peer {a.peer} is missing (pass --peer PATH/peer_torch.py)")
        return 1

    load_before = load()
    say(f"load average before: {load_before} on {os.cpu_count()} CPUs")
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    workers: dict[str, Worker] = {}

    pin, env = [], {}
    if a.malloc == "tuned":  # what a user's `realsys` command runs under, given to both sides
        env["GLIBC_TUNABLES"] = with_malloc_tunables(os.environ.get("GLIBC_TUNABLES", ""))
    if a.cpus:
        pin = ["taskset", "-c", a.cpus]
        env["TORCHB_THREADS"] = str(len(os.sched_getaffinity(0) & cpu_list(a.cpus)))

    def worker(name: str) -> Worker:
        if name not in workers:
            if name == "peer":
                argv = [*pin, a.torch_python, a.peer, "--serve"]
            else:
                argv = [*pin, sys.executable, str(ROOT / "bench" / "jax_worker.py"), "--serve",
                        "--flags", name]
            workers[name] = Worker(name, argv, env)
            info = workers[name].ask(SETUP_TIMEOUT_S, op="info")
            infos[name] = info
            say(f"{name}: {info}")
        return workers[name]

    infos: dict[str, Any] = {}
    rows = []
    try:
        for wl in workloads:
            if a.jax_flags == "both":
                flag_sets = list(dict.fromkeys([usual_flags(wl), "training", "default"]))
            elif a.jax_flags == "auto":
                flag_sets = [usual_flags(wl)]
            else:
                flag_sets = [a.jax_flags]
            jax_sides = [Side(f"realsys[{f}]" if len(flag_sets) > 1 else "realsys",
                              worker(f), "jit") for f in flag_sets]
            for side, f in zip(jax_sides, flag_sets):
                side.mode = f if len(flag_sets) > 1 else "auto"
                side.flags = f
            peer_sides = [Side(f"peer {m}", worker("peer"), m) for m in modes]
            quiet = wait_quiet(a.quiet_load, a.quiet_wait) if a.quiet_load > 0 else None
            rows.append(bench_workload(wl, jax_sides, peer_sides, a.rounds, a.round_seconds,
                                       a.pause))
            if quiet is not None:
                rows[-1]["quiet_wait"] = quiet
            for side in jax_sides:  # report the flag setting actually used
                key = f"realsys_{side.mode}"
                if key in rows[-1]:
                    rows[-1][key]["xla_flags"] = side.flags
    except WorkerError as e:
        say(f"error: {e}")
        return 1
    finally:
        for w in workers.values():
            w.close()
    load_after = load()

    mismatched = [r["workload"] for r in rows if r.get("params_match") is False]
    result = {"started": started, "host": platform.node(), "cpus": os.cpu_count(),
              "load_before": load_before, "load_after": load_after, "rounds": a.rounds,
              "jax_flags": a.jax_flags, "malloc": a.malloc,
              "glibc_tunables": env.get("GLIBC_TUNABLES"), "cpus_pinned": a.cpus or None,
              "workers": infos, "workloads": rows}
    result["modes"] = modes
    print(json.dumps(result) if a.json else report(result))
    if mismatched:
        say(f"PARAMETER COUNTS DIFFER for {', '.join(mismatched)}: not the same network")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
