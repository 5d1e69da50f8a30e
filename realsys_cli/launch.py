"""The `realsys` executable: glibc's malloc set up for XLA's per-step buffers, then the CLI.

Why: XLA:CPU allocates each step's working memory with malloc. On glibc, a block over the mmap
threshold is mmap'd when it is allocated and unmapped when it is freed, so every step faults its
pages in again, 4 KiB at a time. A SimVP training step of predict-frames took about 60,000 minor
page faults, and 30% of its CPU time went to the kernel. Three glibc tunables stop that:

  * glibc.malloc.hugetlb=1: the mmap'd and heap memory is madvised for transparent huge pages,
    2 MiB a fault (this works where /sys/kernel/mm/transparent_hugepage/enabled is "madvise",
    the usual setting);
  * glibc.malloc.mmap_threshold=32 MiB (glibc's largest): blocks under it come from the heap,
    which is reused from step to step;
  * glibc.malloc.trim_threshold=1 GiB: freed heap memory is kept for the next step instead of
    being handed back to the kernel.

The measurements are in docs/speed.md, "Page faults". glibc reads its tunables only when a
process starts, so this launcher puts them in GLIBC_TUNABLES and executes the same command line
once more, before anything heavy is imported. A user's own GLIBC_TUNABLES settings win, and
REALSYS_MALLOC_DEFAULTS=1 turns all of this off. Other C libraries (macOS, musl) are left alone.
"""

from __future__ import annotations

import os
import platform
import sys

MALLOC_TUNABLES = (
    "glibc.malloc.hugetlb=1",
    "glibc.malloc.mmap_threshold=33554432",
    "glibc.malloc.trim_threshold=1073741824",
)
_RELAUNCHED = "_REALSYS_MALLOC_RELAUNCHED"  # set once per launch: never re-executed twice


def with_malloc_tunables(glibc_tunables: str) -> str:
    """A GLIBC_TUNABLES value with MALLOC_TUNABLES added; one set already (by name) keeps its
    value."""
    current = [t for t in glibc_tunables.split(":") if t]
    named = {t.split("=")[0] for t in current}
    return ":".join([*current, *(t for t in MALLOC_TUNABLES if t.split("=")[0] not in named)])


def tuned_environment(environ: dict[str, str]) -> dict[str, str] | None:
    """`environ` with MALLOC_TUNABLES added to GLIBC_TUNABLES; None if nothing should change."""
    if environ.get("REALSYS_MALLOC_DEFAULTS", "") not in ("", "0") or environ.get(_RELAUNCHED):
        return None
    current = environ.get("GLIBC_TUNABLES", "")
    tuned = with_malloc_tunables(current)
    if tuned == ":".join(t for t in current.split(":") if t):
        return None  # all set already
    return dict(environ, GLIBC_TUNABLES=tuned, **{_RELAUNCHED: "1"})


def relaunch_with_tuned_malloc() -> None:
    """Execute this process's own command line again with the tunables; returns if it cannot."""
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return
    env = tuned_environment(dict(os.environ))
    argv = list(getattr(sys, "orig_argv", []))
    if env is None or not argv or not sys.executable:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, *argv[1:]], env)
    except OSError:
        return  # run untuned rather than not at all


def main() -> None:
    relaunch_with_tuned_malloc()
    from realsys_cli.cli import main as cli_main

    cli_main()
