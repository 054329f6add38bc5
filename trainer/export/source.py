"""The model to export: an HF model directory, optionally with a LoRA adapter merged in (peft).

The merge runs in float32 and the result is cast back to the base's stored dtype, so the merged weights are
what `rlvr export --format hf` writes and what every GGUF check compares against."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class SourceError(ValueError):
    """The model or adapter directory is missing or unusable (names the path and file)."""


@dataclass
class Source:
    model: Any
    """A merged transformers model (no peft wrappers), in eval mode."""
    tokenizer: Any
    model_dir: Path
    adapter_dir: Path | None
    dtype: str

    @property
    def name(self) -> str:
        return self.adapter_dir.name if self.adapter_dir else self.model_dir.name


def _stored_dtype(model_dir: Path) -> str:
    cfg = json.loads((model_dir / "config.json").read_text())
    dtype = cfg.get("dtype") or cfg.get("torch_dtype") or "float32"
    if dtype not in ("float32", "bfloat16", "float16"):
        raise SourceError(f"{model_dir / 'config.json'}: dtype {dtype!r} is not float32/bfloat16/float16")
    return str(dtype)


def load_source(model_dir: Path, adapter_dir: Path | None = None) -> Source:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise SourceError(f"{model_dir}: not an HF model directory (no config.json)")
    if adapter_dir is not None and not (Path(adapter_dir) / "adapter_config.json").is_file():
        raise SourceError(f"{adapter_dir}: not a peft adapter directory (no adapter_config.json)")
    dtype = _stored_dtype(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tok_dir = model_dir
    if adapter_dir is not None:
        from peft import PeftModel

        adapter_dir = Path(adapter_dir)
        model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
        if (adapter_dir / "tokenizer.json").is_file():
            tok_dir = adapter_dir  # an adapter saved with its (possibly extended) tokenizer
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    model = model.to(getattr(torch, dtype)).eval()
    model.config.dtype = dtype
    return Source(model, tokenizer, model_dir, adapter_dir, dtype)
