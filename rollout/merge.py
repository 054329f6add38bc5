"""LoRA served merged into the base weights (`lora_mode = "merge"`).

vLLM-CPU runs LoRA layers through generic torch ops: with a rank-16 all-linear adapter on SmolLM2-135M,
generation ran 2.7x slower than with the same adapter merged (benchmarks/rollout.py). In merge mode the
adapter still travels alone (LoadAdapter), but the server folds it into its copy of the base weights,
W = W0 + scale * B @ A (in float32, then the engine dtype), and swaps the result in with the same in-place
reload as a full update. The price: one adapter at a time, and no base-model generation while an adapter
is merged."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from rollout.adapters import LORA_NAME_RE, pattern_value
from rollout.weights import DTYPES, WeightsError, write_safetensors


def lora_scale(module: str, cfg: Mapping[str, Any], rank: int) -> float:
    """peft's scaling: lora_alpha / r (or / sqrt(r) with rsLoRA), alpha_pattern matched like rank_pattern."""
    alpha = float(pattern_value(module, cfg.get("alpha_pattern"), cfg.get("lora_alpha", 8)))
    return alpha / math.sqrt(rank) if cfg.get("use_rslora") else alpha / rank


def check_mergeable(cfg: Mapping[str, Any]) -> None:
    """Adapter variants whose merge is not W0 + scale * B @ A are refused rather than served wrongly."""
    for key in ("use_dora", "fan_in_fan_out"):
        if cfg.get(key):
            raise WeightsError(f"adapter_config_json: {key}=true cannot be served with lora_mode=merge")
    if cfg.get("modules_to_save"):
        raise WeightsError("adapter_config_json: modules_to_save cannot be served with lora_mode=merge")


def lora_pairs(tensors: Mapping[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{base weight name: (A, B)} from peft tensor names (names and shapes were checked on arrival)."""
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for name, t in tensors.items():
        m = LORA_NAME_RE.match(name)
        if m is None:
            raise WeightsError(f"{name}: not a peft LoRA tensor name")
        parts.setdefault(m.group("module"), {})[m.group("ab")] = t
    out = {}
    for module, ab in parts.items():
        if set(ab) != {"lora_A", "lora_B"}:
            raise WeightsError(f"{module}: every lora_A needs its lora_B (and vice versa)")
        out[module + ".weight"] = (ab["lora_A"], ab["lora_B"])
    return out


class AdapterMerger:
    """The base weights the adapters are merged into: the served checkpoint, or the last full update."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self._base: dict[str, torch.Tensor] | None = None

    def base(self) -> dict[str, torch.Tensor]:
        if self._base is None:  # loaded on first use: servers that never merge do not hold a copy
            from safetensors.torch import load_file

            base: dict[str, torch.Tensor] = {}
            for f in sorted(self.model_dir.glob("*.safetensors")):
                base.update(load_file(str(f)))
            self._base = base
        return self._base

    def set_base(self, weights_file: Path) -> None:
        """A full update replaced the weights: later merges start from these."""
        from safetensors.torch import load_file

        self._base = load_file(str(weights_file))

    def write_merged(self, path: Path, cfg: Mapping[str, Any], tensors: Mapping[str, torch.Tensor], dtype: str) -> int:
        """Write base + merged adapter as one safetensors file in the engine dtype; returns its size in bytes."""
        check_mergeable(cfg)
        base = self.base()
        pairs = lora_pairs(tensors)
        missing = sorted(set(pairs) - set(base))
        if missing:
            raise WeightsError(f"the served weights have no {missing[0]} to merge into")
        target = DTYPES[dtype]
        out: dict[str, torch.Tensor] = {}
        for name, w in base.items():
            if name in pairs:
                a, b = pairs[name]
                delta = b.to(torch.float32) @ a.to(torch.float32)
                scale = lora_scale(name.removesuffix(".weight"), cfg, a.shape[0])
                w = w.to(torch.float32).add_(delta, alpha=scale)
            out[name] = w.to(target)
        return write_safetensors(path, out)
