"""Atomic, resumable training checkpoints.

Layout of `<root>/ckpt-<step:08d>/`: `model/` (full HF model) or `adapter/` (peft adapter only), each with the
tokenizer and its chat template when one is given (so `model/` is a complete HF model dir: a distillation
teacher, `rlvr models shrink` input or rollout-server model as is), `optimizer.pt`, `scheduler.pt`, `rng.pt`
(python/numpy/torch RNG states), `state.json` (step, policy version, data cursor, in-flight prompts, ...). A
checkpoint is written into a hidden temp directory, fsynced, then renamed into place, and only then does the
`latest` pointer (itself replaced atomically) move to it — a crash mid-save leaves the previous checkpoint as
latest and no half-written directory under a checkpoint name."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT_VERSION = 1
LATEST = "latest"
_NAME_RE = re.compile(r"^ckpt-(\d{8,})$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or does not match the model it is loaded into."""


@dataclass
class TrainState:
    """Everything besides tensors that a resumed run needs to continue exactly where it stopped."""

    step: int = 0
    policy_version: int = 0
    data_state: dict[str, Any] = field(default_factory=dict)
    inflight_tasks: list[dict[str, Any]] = field(default_factory=list)
    """Tasks (Task.to_dict()) whose rollouts were in flight: resubmitted first on resume."""
    rng_state: dict[str, Any] | None = None
    """Captured at save time when None; restored by load_checkpoint."""
    samples_seen: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def capture_rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _is_peft(model: Any) -> bool:
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def _fsync_tree(path: Path) -> None:
    for dirpath, _, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def checkpoint_name(step: int) -> str:
    return f"ckpt-{step:08d}"


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoints under root, oldest first (temp directories of interrupted saves are ignored)."""
    r = Path(root)
    if not r.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in r.iterdir() if p.is_dir() and (m := _NAME_RE.match(p.name))]
    return [p for _, p in sorted(found) if (p / "state.json").is_file()]


def _write_contents(tmp: Path, model: Any, tokenizer: Any, optimizer: Any, scheduler: Any, state: TrainState) -> None:
    kind = "adapter" if _is_peft(model) else "full"
    weights = tmp / ("adapter" if kind == "adapter" else "model")
    model.save_pretrained(weights, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(weights)
    if optimizer is not None:
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    if scheduler is not None:
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save(state.rng_state if state.rng_state is not None else capture_rng_state(), tmp / "rng.pt")
    meta = {k: v for k, v in asdict(state).items() if k != "rng_state"}
    meta.update(format_version=FORMAT_VERSION, model_kind=kind)
    # state.json is written last: list_checkpoints treats a directory without it as incomplete.
    (tmp / "state.json").write_text(json.dumps(meta, indent=1, sort_keys=True))


def _point_latest(root: Path, name: str) -> None:
    tmp = root / f".{LATEST}.tmp"
    with tmp.open("w") as f:
        f.write(name + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, root / LATEST)
    _fsync_dir(root)


def _prune(root: Path, keep_last: int, keep: Path) -> None:
    ckpts = list_checkpoints(root)
    for old in ckpts[: max(0, len(ckpts) - keep_last)]:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-ckpt-*"):
        shutil.rmtree(stale, ignore_errors=True)


def save_checkpoint(
    root: str | Path,
    step: int,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    state: TrainState,
    keep_last: int = 2,
    tokenizer: Any = None,
) -> Path:
    """Write checkpoint `step` atomically, point `latest` at it and prune to the newest `keep_last`. `tokenizer`
    (an HF tokenizer) is saved next to the weights so the model/adapter dir describes itself."""
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    r = Path(root)
    r.mkdir(parents=True, exist_ok=True)
    final = r / checkpoint_name(step)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=r))
    try:
        _write_contents(tmp, model, tokenizer, optimizer, scheduler, state)
        _fsync_tree(tmp)
        if final.exists():
            # Re-saving a step: move the old copy aside first (os.replace cannot replace a non-empty dir).
            aside = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-old-", dir=r))
            os.replace(final, aside / final.name)
        os.replace(tmp, final)
        _fsync_dir(r)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _point_latest(r, final.name)
    _prune(r, keep_last, final)
    return final


def latest_checkpoint(root: str | Path) -> Path | None:
    """The checkpoint `latest` points to, else the newest complete one, else None."""
    r = Path(root)
    pointer = r / LATEST
    if pointer.is_file():
        target = r / pointer.read_text().strip()
        if (target / "state.json").is_file():
            return target
    ckpts = list_checkpoints(r)
    return ckpts[-1] if ckpts else None


def _load_weights(path: Path, model: Any) -> None:
    from safetensors.torch import load_file

    if _is_peft(model):
        from peft import set_peft_model_state_dict

        files = sorted((path / "adapter").glob("*.safetensors"))
        if not files:
            raise CheckpointError(f"{path}: no adapter weights (was it saved from a full model?)")
        result: Any = set_peft_model_state_dict(model, load_file(str(files[0])))
        if result.unexpected_keys:
            raise CheckpointError(f"{path}: adapter keys do not match the model: {result.unexpected_keys[:5]}")
        return
    files = sorted((path / "model").glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{path}: no model weights (was it saved from a peft adapter?)")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    missing, unexpected = model.load_state_dict(state, strict=False)
    # save_pretrained omits tied weights (e.g. lm_head tied to the embeddings); anything else must match.
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    really_missing = [k for k in missing if k not in tied and "lm_head" not in k]
    if unexpected or really_missing:
        raise CheckpointError(f"{path}: weights do not match the model: {really_missing=} {unexpected=}")


def load_checkpoint(path: str | Path, model: Any, optimizer: Any = None, scheduler: Any = None) -> TrainState:
    """Restore model/adapter weights, optimizer, scheduler and RNG states; return the saved TrainState."""
    p = Path(path)
    if not (p / "state.json").is_file():
        raise CheckpointError(f"{p}: not a complete checkpoint (no state.json)")
    meta = json.loads((p / "state.json").read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{p}: checkpoint format {meta.get('format_version')}, expected {FORMAT_VERSION}")
    _load_weights(p, model)
    if optimizer is not None:
        if not (p / "optimizer.pt").is_file():
            raise CheckpointError(f"{p}: no optimizer state saved")
        optimizer.load_state_dict(torch.load(p / "optimizer.pt", map_location="cpu", weights_only=True))
    if scheduler is not None:
        if not (p / "scheduler.pt").is_file():
            raise CheckpointError(f"{p}: no scheduler state saved")
        scheduler.load_state_dict(torch.load(p / "scheduler.pt", weights_only=False))
    # Our own file holding numpy/python RNG tuples, which the weights-only unpickler rejects.
    rng = torch.load(p / "rng.pt", weights_only=False)
    restore_rng_state(rng)
    fields = {k: meta[k] for k in ("step", "policy_version", "data_state", "inflight_tasks", "samples_seen", "extra")}
    return TrainState(**fields, rng_state=rng)
