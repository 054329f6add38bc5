"""The HF format: merged weights as bf16 safetensors beside the tokenizer and chat template, loadable with
AutoModelForCausalLM / AutoTokenizer (and vLLM)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlvr.paths import atomic_dir


def write_hf(model: Any, tok: Any, out: Path) -> Path:
    """Save `model` in bfloat16 and `tok` to directory `out`, atomically (no half-written directory)."""
    import torch

    with atomic_dir(Path(out)) as tmp:
        model = model.to(torch.bfloat16)
        model.config.dtype = "bfloat16"
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
    return Path(out)
