"""Three runners with one interface, so every check compares like with like: the HF model in memory
(the reference), the GGUF file read back by transformers' GGUF loader, and the GGUF file run by llama.cpp
(llama-cpp-python). All take and return token ids, so a tokenizer difference cannot hide a weight problem
(the tokenizers are compared separately, in verify.check_tokenizer)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np


class ReaderError(RuntimeError):
    """A reader could not load or run the exported file (names the file and the reader)."""


class Runner(Protocol):
    name: str

    def logits(self, ids: list[int]) -> np.ndarray: ...

    def greedy(self, ids: list[int], max_new: int, stop: set[int]) -> list[int]: ...


class HfRunner:
    """A transformers model, run in float32 on the CPU."""

    def __init__(self, model: Any, name: str = "hf") -> None:
        import torch

        self.name = name
        self.model = model.to(torch.float32).eval()

    def logits(self, ids: list[int]) -> np.ndarray:
        import torch

        with torch.no_grad():
            out = self.model(torch.tensor([ids])).logits[0]
        return out.float().numpy()

    def greedy(self, ids: list[int], max_new: int, stop: set[int]) -> list[int]:
        import torch

        with torch.no_grad():
            out = self.model.generate(
                torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long), do_sample=False,
                max_new_tokens=max_new, min_new_tokens=0 if stop else max_new, eos_token_id=sorted(stop) or None,
                pad_token_id=next(iter(stop), 0), top_p=None, top_k=None, temperature=None,
            )  # fmt: skip
        return [int(t) for t in out[0, len(ids) :]]


def load_transformers_gguf(path: Path) -> HfRunner:
    """The independent reader: transformers' GGUF loader (dequantizes to float32 and undoes the q/k order)."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    except Exception as e:  # the loader raises many types; the message is what the user needs
        raise ReaderError(f"{path}: transformers' GGUF loader failed: {type(e).__name__}: {e}") from None
    return HfRunner(model, "transformers-gguf")


class LlamaCppRunner:
    """llama.cpp via llama-cpp-python; all logits kept (logits_all) for teacher forcing, unless told otherwise
    (generation needs only the last position's: trainer/gguf_rollout.py)."""

    def __init__(self, path: Path, threads: int, n_ctx: int = 1024, logits_all: bool = True) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as e:
            raise ReaderError(f"llama-cpp-python is not installed ({e}); scripts/setup.sh builds it") from None
        self.name = "llama.cpp"
        try:
            self.llm = Llama(str(path), n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, n_threads=threads,
                             n_threads_batch=threads, logits_all=logits_all, verbose=False, seed=0)  # fmt: skip
        except (ValueError, RuntimeError) as e:
            raise ReaderError(f"{path}: llama.cpp could not load the file: {e}") from None

    def logits(self, ids: list[int]) -> np.ndarray:
        self.llm.reset()
        self.llm.eval(ids)
        return np.array(self.llm.scores[: len(ids)], dtype=np.float32)

    def greedy(self, ids: list[int], max_new: int, stop: set[int]) -> list[int]:
        # A plain argmax loop over llama.cpp's logits: greedy without any sampler-chain settings in between.
        self.llm.reset()
        self.llm.eval(ids)
        out: list[int] = []
        for _ in range(max_new):
            tok = int(np.argmax(self.llm.scores[self.llm.n_tokens - 1]))
            out.append(tok)
            if tok in stop:
                break
            self.llm.eval([tok])
        return out

    def tokenize(self, text: str) -> list[int]:
        return [int(t) for t in self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)]

    def detokenize(self, ids: list[int]) -> str:
        return bytes(self.llm.detokenize(ids, special=True)).decode("utf-8", errors="replace")


def tokens_per_s(runner: Runner, ids: list[int], n: int = 64) -> float:
    """Generation speed: n greedy tokens after the prompt, no early stop (prompt processing included once)."""
    start = time.perf_counter()
    out = runner.greedy(ids, n, set())
    return len(out) / (time.perf_counter() - start)
