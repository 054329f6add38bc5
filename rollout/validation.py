"""Checks on Generate requests, so bad input gets INVALID_ARGUMENT with a clear message instead of an
engine error (or, worse, a silently clamped value). Proto defaults follow rollout.proto: n 0 -> 1,
top_p 0 -> 1.0, top_k 0/-1 -> off, max_tokens 0 -> 16."""

from __future__ import annotations

import math
from collections.abc import Callable

from rlvr.v1 import rollout_pb2 as pb
from rollout.types import SamplingConfig

MAX_STOP_STRINGS = 16
CHAT_ROLES = ("system", "user", "assistant", "tool")


class RequestError(ValueError):
    """The request is malformed: INVALID_ARGUMENT."""


SEED_UNSUPPORTED = (
    "seed: per-request seeds are not supported by this server's engine (vLLM's CPU build fails its whole engine "
    "on a seeded request whose prompt is prefilled in chunks: 'CPU Generator does not use offset'); omit the seed"
)


def sampling_from_proto(p: pb.SamplingParams, max_samples: int, num_prompts: int, *, seeds: bool) -> SamplingConfig:
    """The request's sampling settings; `seeds` says whether the engine can take a per-request seed."""
    n = p.n or 1
    temperature, top_p = float(p.temperature), float(p.top_p) if p.top_p else 1.0
    if not math.isfinite(temperature) or temperature < 0:
        raise RequestError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if not math.isfinite(top_p) or not 0 < top_p <= 1:
        raise RequestError(f"top_p must be in (0, 1], got {top_p}")
    if p.top_k < -1:
        raise RequestError(f"top_k must be -1 or 0 (off) or >= 1, got {p.top_k}")
    if n * num_prompts > max_samples:
        raise RequestError(f"{num_prompts} prompts x n={n} exceeds the server's {max_samples} samples per request")
    if len(p.stop) > MAX_STOP_STRINGS or any(not s for s in p.stop):
        raise RequestError(f"stop: at most {MAX_STOP_STRINGS} non-empty strings")
    if p.HasField("seed") and not seeds:
        raise RequestError(SEED_UNSUPPORTED)
    return SamplingConfig(
        n=n,
        temperature=temperature,
        top_p=top_p,
        top_k=p.top_k if p.top_k > 0 else -1,
        max_tokens=p.max_tokens or 16,
        stop=list(p.stop),
        seed=p.seed if p.HasField("seed") else None,
    )


def prompt_token_ids(
    prompt: pb.Prompt,
    index: int,
    chat: Callable[[list[dict[str, str]]], list[int]],
    vocab_size: int,
    max_model_len: int,
) -> list[int]:
    """The prompt's token ids: the chat template applied to messages, or the given ids as they are."""
    where = f"prompt {index} ({prompt.id!r})" if prompt.id else f"prompt {index}"
    if prompt.messages:
        for m in prompt.messages:
            if m.role not in CHAT_ROLES:
                raise RequestError(f"{where}: role {m.role!r} is not one of {', '.join(CHAT_ROLES)}")
        ids = chat([{"role": m.role, "content": m.content} for m in prompt.messages])
    else:
        ids = list(prompt.token_ids)
    if not ids:
        raise RequestError(f"{where}: empty prompt (give messages or token_ids)")
    bad = next((t for t in ids if t >= vocab_size), None)
    if bad is not None:
        raise RequestError(f"{where}: token id {bad} is outside the vocabulary (size {vocab_size})")
    if len(ids) >= max_model_len:
        raise RequestError(
            f"{where}: {len(ids)} prompt tokens leave no room to generate within max_model_len {max_model_len}"
        )
    return ids
