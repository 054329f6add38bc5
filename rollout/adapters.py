"""LoRA adapters pushed by the trainer: checking them against the base model and keeping them on disk.

Each pushed version is written as a normal peft directory (adapter_config.json + adapter_model.safetensors)
and gets a fresh integer id, because vLLM caches adapters by id: reusing an id would keep serving the old
tensors. The previous version of a name is retired after the new one is loaded."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rlvr.v1 import rollout_pb2 as pb
from rollout.weights import DTYPES, TensorSpec, WeightsError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
LORA_NAME_RE = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.(?P<ab>lora_[AB])(?:\.[A-Za-z0-9_]+)?\.weight$")


@dataclass
class Adapter:
    name: str
    lora_id: int
    path: Path | None  # None: merged into the served weights (lora_mode=merge)
    version: int
    request: Any = None  # the engine's handle (vLLM LoRARequest)


def check_adapter_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise WeightsError(f"adapter_name {name!r}: use 1-64 characters [A-Za-z0-9_.-], starting alphanumeric")
    return name


def parse_adapter_config(text: str, max_rank: int) -> dict[str, Any]:
    """The peft adapter_config.json from the stream header, with the checks vLLM would do later."""
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as e:
        raise WeightsError(f"adapter_config_json is not JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise WeightsError("adapter_config_json must be a JSON object")
    r = cfg.get("r")
    if not isinstance(r, int) or r < 1:
        raise WeightsError(f"adapter_config_json: r must be a positive integer, got {r!r}")
    if r > max_rank:
        raise WeightsError(f"adapter rank {r} exceeds the server's max_lora_rank {max_rank}")
    if not cfg.get("target_modules"):
        raise WeightsError("adapter_config_json: target_modules is missing")
    cfg.setdefault("peft_type", "LORA")
    if cfg["peft_type"] != "LORA":
        raise WeightsError(f"adapter_config_json: peft_type {cfg['peft_type']!r}, only LORA is served")
    return cfg


def pattern_value(module: str, patterns: Mapping[str, Any] | None, default: Any) -> Any:
    """peft's rank_pattern/alpha_pattern rule: a key applies when it matches the end of the module path."""
    for key, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def _rank_for(module: str, cfg: Mapping[str, Any]) -> int:
    return int(pattern_value(module, cfg.get("rank_pattern"), cfg["r"]))


def adapter_spec(
    c: pb.TensorChunk, cfg: Mapping[str, Any], base: Mapping[str, TensorSpec], max_rank: int
) -> TensorSpec:
    """Expected dtype/shape of one peft tensor: lora_A is (r, in), lora_B is (out, r) of the base Linear."""
    m = LORA_NAME_RE.match(c.name)
    if not m:
        raise WeightsError(f"{c.name}: not a peft LoRA tensor name (…<module>.lora_A.weight / lora_B.weight)")
    module, ab = m.group("module"), m.group("ab")
    target = base.get(module + ".weight")
    if target is None or len(target.shape) != 2:
        raise WeightsError(f"{c.name}: the base model has no Linear {module}")
    if c.dtype not in DTYPES:
        raise WeightsError(f"{c.name}: unknown dtype {c.dtype!r}; use one of {sorted(DTYPES)}")
    r = _rank_for(module, cfg)
    if r > max_rank:
        raise WeightsError(f"{c.name}: rank {r} exceeds the server's max_lora_rank {max_rank}")
    out_f, in_f = target.shape
    shape = (r, in_f) if ab == "lora_A" else (out_f, r)
    if tuple(c.shape) != shape:
        raise WeightsError(f"{c.name}: shape {list(c.shape)}, expected {list(shape)} for rank {r}")
    return TensorSpec(c.name, c.dtype, shape)


class AdapterStore:
    """Adapter versions on disk plus the id counter; the servicer decides when they go live."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.adapters: dict[str, Adapter] = {}
        self._next_id = 1

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def write(self, name: str, cfg: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> Path:
        """A fresh peft directory for this version (never overwrites one that may be in use)."""
        from safetensors.torch import save_file

        self.root.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=f"adapter-{name}-", dir=self.root))
        (path / "adapter_config.json").write_text(json.dumps(dict(cfg), indent=1))
        save_file(dict(tensors), str(path / "adapter_model.safetensors"), metadata={"format": "pt"})
        return path

    def replace(self, new: Adapter) -> Adapter | None:
        """Make `new` the served version of its name; returns the version it replaced."""
        old = self.adapters.get(new.name)
        self.adapters[new.name] = new
        return old

    @staticmethod
    def discard(path: Path | None) -> None:
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)

    def names(self) -> list[str]:
        return sorted(self.adapters)
