"""A GGUF file as a rollout (trainer.evaluate.RolloutLike), run by llama.cpp (llama-cpp-python): what `rlvr eval`
and a pipeline's eval stage use for a `*.gguf` model, so the exported file is examined as shipped by the same
evaluator (trainer/evaluate.py) that examines an HF model served by vLLM.

As shipped means: the chat template is the file's own (GGUF metadata `tokenizer.chat_template`, which
trainer/export/vocab.py writes from the HF tokenizer), rendered by transformers' Jinja renderer with the file's
special tokens; prompts are tokenized by the file's tokenizer in llama.cpp, like the rollout engine does it
(rollout/engine.py: template with the generation prompt, no BOS added on top); a completion ends at one of
llama.cpp's end-of-generation tokens (what llama-cli and llama-server stop at), a stop string (cut from the text,
as vLLM does) or max_tokens.

Greedy decoding is an argmax over llama.cpp's logits, like the export checks' LlamaCppRunner (whose loader this
reuses). Sampling (pass@k) applies temperature, top-k and top-p to those logits in numpy, with a generator seeded
per (seed + sample index, prompt index), so an evaluation is reproducible. One sequence at a time: the exam is
small and llama.cpp's per-token cost on a CPU is what it is; the prompt is evaluated once for its K samples."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rollout.types import PromptInput, Sample, SamplingConfig

CHAT_TEMPLATE_KEY = "tokenizer.chat_template"
_SPECIAL_KEYS = {"bos_token": "bos_token_id", "eos_token": "eos_token_id", "unk_token": "unknown_token_id",
                 "pad_token": "padding_token_id"}  # fmt: skip
"""Template variables (as transformers passes its special_tokens_map) ← GGUF tokenizer.ggml.<key>."""


class GgufRolloutError(ValueError):
    """The GGUF file cannot serve the request (names the file and what is missing)."""


class GgufRollout:
    """generate() over one GGUF file; `threads` CPU threads, a context of `n_ctx` tokens (prompt + completion)."""

    def __init__(self, path: Path, threads: int = 2, n_ctx: int = 1024, seed: int = 0) -> None:
        import llama_cpp

        from trainer.export.readers import LlamaCppRunner

        self.path, self.seed = Path(path), seed
        # Only the last position's logits are needed to generate (logits_all would keep n_ctx x vocab floats).
        self.runner = LlamaCppRunner(self.path, threads, n_ctx=n_ctx, logits_all=False)
        self.llm = self.runner.llm
        self.n_ctx = n_ctx
        meta: dict[str, str] = self.llm.metadata
        template = meta.get(CHAT_TEMPLATE_KEY)
        if not template:
            raise GgufRolloutError(f"{self.path}: the file has no {CHAT_TEMPLATE_KEY} in its metadata, so chat "
                                   "prompts cannot be rendered as the model was trained; export it from a model "
                                   "whose tokenizer has a chat template (rlvr export writes it)")  # fmt: skip
        self.chat_template = template
        self.special_tokens = {var: self._token_text(int(meta[f"tokenizer.ggml.{key}"]))
                               for var, key in _SPECIAL_KEYS.items() if f"tokenizer.ggml.{key}" in meta}  # fmt: skip
        vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self.end_ids = frozenset(t for t in range(self.llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t))

    def _token_text(self, token: int) -> str:
        return bytes(self.llm.detokenize([token], special=True)).decode("utf-8", errors="replace")

    # ------------------------------------------------------------------ prompts

    def render(self, messages: list[dict[str, str]]) -> str:
        """The file's chat template over `messages`, with the assistant turn opened."""
        from transformers.utils.chat_template_utils import render_jinja_template

        # The special tokens go in as transformers' apply_chat_template passes its special_tokens_map.
        special: dict[str, Any] = dict(self.special_tokens)
        rendered = render_jinja_template([messages], chat_template=self.chat_template, add_generation_prompt=True,
                                         **special)  # fmt: skip
        return str(rendered[0][0])

    def prompt_ids(self, prompt: PromptInput) -> list[int]:
        if prompt.token_ids:
            return list(prompt.token_ids)
        if not prompt.messages:
            raise GgufRolloutError(f"prompt {prompt.id!r}: neither messages nor token_ids")
        text = self.render(prompt.messages).encode("utf-8")
        return [int(t) for t in self.llm.tokenize(text, add_bos=False, special=True)]

    # ------------------------------------------------------------------ generation

    async def generate(
        self, prompts: Sequence[PromptInput], params: SamplingConfig | None = None, adapter: str | None = None
    ) -> list[Sample]:
        """`params.n` completions of each prompt, in prompt order (llama.cpp runs in a worker thread)."""
        if adapter:
            raise GgufRolloutError(f"{self.path}: adapter {adapter!r}: a GGUF file is one model (an adapter is "
                                   "merged in at export)")  # fmt: skip
        params = params or SamplingConfig()
        if params.n < 1 or params.max_tokens < 1:
            raise GgufRolloutError(f"n and max_tokens must be >= 1 (got n={params.n}, max_tokens={params.max_tokens})")
        return await asyncio.to_thread(self._generate_all, list(prompts), params)

    def _generate_all(self, prompts: list[PromptInput], params: SamplingConfig) -> list[Sample]:
        out: list[Sample] = []
        for index, prompt in enumerate(prompts):
            ids = self.prompt_ids(prompt)
            if len(ids) >= self.n_ctx:
                raise GgufRolloutError(f"prompt {prompt.id!r}: {len(ids)} tokens do not fit the context of "
                                       f"{self.n_ctx} (rollout.max_model_len)")  # fmt: skip
            self.llm.reset()
            self.llm.eval(ids)
            first = self._last_logits()
            for i in range(params.n):
                rng = np.random.default_rng([(params.seed if params.seed is not None else self.seed) + i, index])
                self.llm.n_tokens = len(ids)  # back to the prompt: its KV cache is kept, the completion's dropped
                tokens, text, logprobs, reason = self._complete(first, params, rng, self.n_ctx - len(ids))
                out.append(Sample(prompt.id, index, i, ids, tokens, text, logprobs, reason, 0))
        return out

    def _last_logits(self) -> np.ndarray:
        import llama_cpp

        ptr = llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.llm.n_vocab(),)).astype(np.float32, copy=True)

    def _complete(self, logits: np.ndarray, params: SamplingConfig, rng: np.random.Generator,
                  room: int) -> tuple[list[int], str, list[float], Any]:  # fmt: skip
        tokens: list[int] = []
        logprobs: list[float] = []
        limit = min(params.max_tokens, room)
        for step in range(limit):
            token, logprob = pick_token(logits, params, rng)
            tokens.append(token)
            logprobs.append(logprob)
            if token in self.end_ids:
                return tokens, self._text(tokens), logprobs, "stop"
            text = self._text(tokens)
            cut = stop_at(text, params.stop)
            if cut is not None:
                return tokens, text[:cut], logprobs, "stop"
            if step + 1 < limit:
                self.llm.eval([token])
                logits = self._last_logits()
        return tokens, self._text(tokens), logprobs, "length"

    def _text(self, tokens: list[int]) -> str:
        # Special (control) tokens render as nothing, as vLLM's skip_special_tokens does.
        return bytes(self.llm.detokenize(tokens, special=False)).decode("utf-8", errors="replace")

    def close(self) -> None:
        self.llm.close()


def stop_at(text: str, stops: Sequence[str]) -> int | None:
    """Where the earliest stop string begins in `text` (None: no stop string in it)."""
    found = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(found) if found else None


def pick_token(logits: np.ndarray, params: SamplingConfig, rng: np.random.Generator) -> tuple[int, float]:
    """The next token and its log-probability under the distribution it was drawn from: argmax at temperature 0
    (log-softmax of the raw logits), else temperature, then top-k, then top-p (the smallest set of most likely
    tokens whose mass reaches top_p), renormalised."""
    x = logits.astype(np.float64)
    if params.temperature == 0:
        token = int(np.argmax(x))
        return token, float(x[token] - _logsumexp(x))
    x = x / params.temperature
    if params.top_k > 0 and params.top_k < x.size:
        kth = np.partition(x, -params.top_k)[-params.top_k]
        x = np.where(x >= kth, x, -np.inf)
    probs = np.exp(x - x.max())
    probs /= probs.sum()
    if params.top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        mass = np.cumsum(probs[order])
        keep = order[: int(np.searchsorted(mass, params.top_p)) + 1]
        kept = np.zeros_like(probs)
        kept[keep] = probs[keep]
        probs = kept / kept.sum()
    token = int(rng.choice(probs.size, p=probs))
    return token, math.log(probs[token])


def _logsumexp(x: np.ndarray) -> float:
    m = float(x.max())
    return m + math.log(float(np.exp(x - m).sum()))
