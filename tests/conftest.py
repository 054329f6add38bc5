"""Shared fixtures. Tests under tests/unit are marked `unit`, under tests/integration `integration`."""

from __future__ import annotations

import os
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


@pytest.fixture(scope="session")
def base_model_dir() -> Path:
    from rlvr.models import prepare_base_model

    return prepare_base_model()


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    from rlvr.models import prepare_tiny_model

    return prepare_tiny_model()
