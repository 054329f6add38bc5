"""The HF format: merged weights as bf16 safetensors beside the tokenizer and chat template, loadable with
AutoModelForCausalLM / AutoTokenizer (and vLLM)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def write_hf(model: Any, tok: Any, out: Path) -> Path:
    """Save `model` in bfloat16 and `tok` to directory `out`, atomically (no half-written directory)."""
    import torch

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        model = model.to(torch.bfloat16)
        model.config.dtype = "bfloat16"
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
