"""Shared fixtures. Tests under tests/unit are marked `unit`, under tests/integration `integration`, under
tests/gpu `gpu` (a CUDA device: `make gpu-test`; `make test` does not select them)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

# vLLM on CPU: a small KV cache, and thread counts set deliberately since tests share 2 cores.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TESTS = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath))
        if TESTS / "unit" in path.parents:
            item.add_marker(pytest.mark.unit)
        elif TESTS / "integration" in path.parents:
            item.add_marker(pytest.mark.integration)
        elif TESTS / "gpu" in path.parents:
            item.add_marker(pytest.mark.gpu)


@pytest.fixture(scope="session")
def base_model_dir() -> Path:
    from rlvr.models import prepare_base_model

    return prepare_base_model()


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    from rlvr.models import prepare_tiny_model

    return prepare_tiny_model()


@pytest.fixture(scope="session")
def small_llama(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Callable[..., Path]:
    """Factory: a random Llama with the tiny model's tokenizer, `layers` decoder layers, written to a fresh dir.
    `scale` multiplies the layers' matrices (larger weights make the layers differ clearly in what they do)."""

    def make(layers: int = 6, seed: int = 0, scale: float = 1.0) -> Path:
        import torch
        from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

        out = tmp_path_factory.mktemp(f"llama{layers}")
        tok = AutoTokenizer.from_pretrained(tiny_model_dir)
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                          num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)  # fmt: skip
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
        with torch.no_grad():
            for p in model.model.layers.parameters():
                if p.dim() == 2:
                    p.mul_(scale)
        model.save_pretrained(out)
        tok.save_pretrained(out)
        return out

    return make
