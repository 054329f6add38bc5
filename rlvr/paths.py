"""Where rlvr keeps what it downloads or builds once (models, sandbox state)."""

from __future__ import annotations

import os
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
