"""Where rlvr keeps what it downloads or builds once (models, sandbox state), and how a directory is written
atomically."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Root of rlvr's cache: $RLVR_CACHE, else $XDG_CACHE_HOME/rlvr, else ~/.cache/rlvr."""
    if env := os.environ.get("RLVR_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rlvr"


def models_dir() -> Path:
    return cache_dir() / "models"


@contextmanager
def atomic_dir(out: Path) -> Iterator[Path]:
    """A temp directory beside `out` to write into; renamed to `out` (replacing it) when the block succeeds,
    removed when it raises, so a crash never leaves a half-written directory under the final name."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
