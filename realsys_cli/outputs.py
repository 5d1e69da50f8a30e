"""What a command will write, checked before it does any work.

An --out picture or a --workdir that cannot be made is one line at once, not after a training or
an attack has run; and nothing is created by the check. `discard_if_nothing_saved` takes back a
workdir a failed run made but saved nothing in (a diverged first epoch), so that a failure
leaves no empty run behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from realsys_cli.errors import ConfigError, RealsysError

# What a run writes besides its checkpoints: a workdir holding only these has nothing to resume.
BOOKKEEPING = {"config.json", "status.json", "metrics.jsonl", ".lock"}


def check_creatable(path: str | os.PathLike, *, option: str, folder: bool = False) -> Path:
    """`path` exists as a file (as a folder, with `folder`), or can be made: the nearest
    existing folder above it is a writable folder. Raises a ConfigError naming `option`."""
    path = Path(path)
    if path.exists():
        if folder != path.is_dir():
            kind = "a file" if folder else "a folder"
            raise ConfigError(f"{option} {path} is {kind}; give another path")
        return path
    above = next(p for p in path.absolute().parents if p.exists())
    if not above.is_dir():
        raise ConfigError(f"cannot create {option} {path}: {above} is a file, not a folder; "
                          "give a path inside a folder")
    if not os.access(above, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot create {option} {path}: {above} is not writable; give a "
                          "path in a folder you can write")
    return path


def picture_suffixes() -> set[str]:
    """The file extensions Pillow can save a picture as (.png, .jpg, .gif, ...)."""
    from PIL import Image

    Image.init()
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE}


def check_picture(path: str | os.PathLike, *, option: str = "--out",
                  suffixes: set[str] | None = None) -> Path:
    """A picture file to write: an extension Pillow saves (or one of `suffixes`), and a place
    it can be made."""
    path = Path(path)
    allowed = suffixes or picture_suffixes()
    if path.suffix.lower() not in allowed:
        shown = ", ".join(s for s in (".png", ".gif", ".jpg") if s in allowed) or ", ".join(
            sorted(allowed))
        raise ConfigError(f"{option} {path}: cannot save a picture as "
                          f"{path.suffix or 'a file without an extension'}; end it in {shown}")
    return check_creatable(path, option=option)


# Pillow writes these with every frame of a movie (save_all): GIF, APNG, animated WebP.
MOVIE_SUFFIXES = {".gif", ".png", ".webp"}


def holds_nothing_saved(workdir: Path) -> bool:
    """True when every file under `workdir` is bookkeeping (no checkpoint, no picture, no
    judge): what a run leaves when it stopped before its first save."""
    return all(p.is_dir() or p.name in BOOKKEEPING or p.name.endswith(".tmp")
               for p in workdir.rglob("*"))


@contextlib.contextmanager
def discard_if_nothing_saved(workdir: str | os.PathLike) -> Iterator[None]:
    """Around a training: the folder this run creates (the workdir, or the first missing one
    above it, such as runs/) is removed again when the run fails with a RealsysError (diverged,
    bad data found late) before anything worth keeping was saved."""
    workdir = Path(workdir)
    missing = [p for p in (workdir, *workdir.parents) if not p.exists()]
    try:
        yield
    except RealsysError:
        if missing and missing[-1].is_dir() and holds_nothing_saved(missing[-1]):
            shutil.rmtree(missing[-1], ignore_errors=True)
        raise
