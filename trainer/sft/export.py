"""The final model directory of an SFT run: a plain HF model (full fine-tune, or LoRA / QLoRA merged into the
unquantized base) that `rlvr train grpo model.path=...` loads directly, or the peft adapter kept as is
(output.merge_lora = false; peft's AutoPeftModelForCausalLM loads it). Written to a temp directory and renamed
into place, so a crash never leaves a half-written model under the final name."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from rlvr.paths import atomic_dir
from trainer.sft.config import SFTConfig


def export_model(model: Any, tok: Any, cfg: SFTConfig, base_path: Path, out: Path) -> Path:
    from trainer.policy import compute_dtype

    with atomic_dir(out) as tmp:
        if cfg.model.finetune == "full" or not cfg.output.merge_lora:
            model.save_pretrained(tmp, safe_serialization=True)
        else:
            from peft import PeftModel
            from transformers import AutoModelForCausalLM

            # Merge into a freshly loaded unquantized base: the same path for LoRA and QLoRA (whose training
            # base is 4-bit and cannot hold the merged weights).
            adapter = Path(tempfile.mkdtemp(prefix=".adapter-", dir=out.parent))
            try:
                model.save_pretrained(adapter, safe_serialization=True)
                base = AutoModelForCausalLM.from_pretrained(str(base_path), dtype=compute_dtype(cfg.model))
                merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
                merged.save_pretrained(tmp, safe_serialization=True)
            finally:
                shutil.rmtree(adapter, ignore_errors=True)
        tok.save_pretrained(tmp)
    return out
