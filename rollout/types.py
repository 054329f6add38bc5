"""Plain dataclasses of the rollout API (what the trainer sees), with their proto conversions.

The trainer works with these, never with protobuf messages, so the wire format can evolve behind them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from rlvr.v1 import rollout_pb2 as pb

FinishReason = Literal["stop", "length", "abort"]

_FINISH_FROM_PB: dict[int, FinishReason] = {
    pb.FINISH_REASON_STOP: "stop",
    pb.FINISH_REASON_LENGTH: "length",
    pb.FINISH_REASON_ABORT: "abort",
}
_FINISH_TO_PB: dict[str, int] = {v: k for k, v in _FINISH_FROM_PB.items()}


def finish_reason_to_pb(reason: str | None) -> int:
    """vLLM's finish reasons ("stop", "length", "abort") to the proto enum; anything else is ABORT."""
    return _FINISH_TO_PB.get(reason or "abort", int(pb.FINISH_REASON_ABORT))


@dataclass(frozen=True)
class SamplingConfig:
    """Sampling parameters of one Generate call (vLLM semantics)."""

    n: int = 1
    """Samples per prompt."""
    temperature: float = 1.0
    """Softmax temperature; 0 is greedy."""
    top_p: float = 1.0
    """Nucleus sampling mass, in (0, 1]."""
    top_k: int = -1
    """Keep only the k most likely tokens; -1 (or 0) disables."""
    max_tokens: int = 256
    """Completion length limit in tokens."""
    stop: list[str] = field(default_factory=list)
    """Stop strings (not included in the returned text)."""
    seed: int | None = None
    """Per-request seed for reproducible sampling (sample i of a prompt uses seed + i). Refused with
    INVALID_ARGUMENT by a server on vLLM's CPU build, where a seeded request can crash the engine."""

    def to_proto(self) -> pb.SamplingParams:
        # Negative/zero values are sent as-is where the server must reject them (clear errors beat silent
        # clamping); uint32 fields cannot carry negatives, so those are rejected here with the same wording.
        if self.n < 0 or self.max_tokens < 0:
            raise ValueError(f"n and max_tokens must be >= 0 (got n={self.n}, max_tokens={self.max_tokens})")
        msg = pb.SamplingParams(
            n=self.n,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            max_tokens=self.max_tokens,
            stop=list(self.stop),
        )
        if self.seed is not None:
            msg.seed = self.seed
        return msg


@dataclass(frozen=True)
class PromptInput:
    """One prompt: chat messages (the server applies the chat template) or ready token ids."""

    id: str
    messages: list[dict[str, str]] | None = None
    token_ids: list[int] | None = None

    def to_proto(self) -> pb.Prompt:
        msgs = [pb.ChatMessage(role=m["role"], content=m["content"]) for m in (self.messages or [])]
        return pb.Prompt(id=self.id, messages=msgs, token_ids=list(self.token_ids or []))


@dataclass
class Sample:
    """One completion and everything the trainer needs to score and learn from it."""

    prompt_id: str
    prompt_index: int
    sample_index: int
    prompt_token_ids: list[int]
    token_ids: list[int]
    text: str
    logprobs: list[float]
    """Log-probability of each sampled token under the sampling distribution (after temperature/top-k/p)."""
    finish_reason: FinishReason
    policy_version: int
    """Weights version that produced every token of this sample."""

    @classmethod
    def from_proto(cls, s: pb.Sample) -> Sample:
        return cls(
            prompt_id=s.prompt_id,
            prompt_index=s.prompt_index,
            sample_index=s.sample_index,
            prompt_token_ids=list(s.prompt_token_ids),
            token_ids=list(s.token_ids),
            text=s.text,
            logprobs=list(s.logprobs),
            finish_reason=_FINISH_FROM_PB.get(s.finish_reason, "abort"),
            policy_version=s.policy_version,
        )

    def to_proto(self) -> pb.Sample:
        return pb.Sample(
            prompt_id=self.prompt_id,
            prompt_index=self.prompt_index,
            sample_index=self.sample_index,
            prompt_token_ids=self.prompt_token_ids,
            token_ids=self.token_ids,
            text=self.text,
            logprobs=self.logprobs,
            finish_reason=finish_reason_to_pb(self.finish_reason),  # type: ignore[arg-type]
            policy_version=self.policy_version,
        )


@dataclass(frozen=True)
class ServerInfo:
    """What one rollout replica reports about itself (GetInfo)."""

    address: str
    model: str
    engine: str
    max_model_len: int
    policy_version: int
    adapters: list[str]
    dtype: str
    running_requests: int
    server_id: str
    local_dir: str = ""
    """Where a co-located client may hand over full weights as a file (empty: streaming only)."""
    local_dir_id: str = ""
    """local_dir's identity as the server sees it (rollout.weights.local_dir_id)."""

    @classmethod
    def from_proto(cls, address: str, m: pb.InfoResponse) -> ServerInfo:
        return cls(
            address=address,
            model=m.model,
            engine=m.engine,
            max_model_len=m.max_model_len,
            policy_version=m.policy_version,
            adapters=list(m.adapters),
            dtype=m.dtype,
            running_requests=m.running_requests,
            server_id=m.server_id,
            local_dir=m.local_dir,
            local_dir_id=m.local_dir_id,
        )


@dataclass(frozen=True)
class WeightsResult:
    """Outcome of one weight or adapter push to one replica."""

    address: str
    policy_version: int
    num_tensors: int
    num_bytes: int
    duration_s: float

    @classmethod
    def from_proto(cls, address: str, m: pb.WeightsResponse) -> WeightsResult:
        return cls(address, m.policy_version, m.num_tensors, m.num_bytes, m.duration_s)


def as_prompt(p: PromptInput | dict[str, Any] | list[int] | str, index: int) -> PromptInput:
    """Accept the common shorthands: a PromptInput, a dict, a token id list, or a user message string."""
    if isinstance(p, PromptInput):
        return p
    if isinstance(p, str):
        return PromptInput(id=str(index), messages=[{"role": "user", "content": p}])
    if isinstance(p, list):
        return PromptInput(id=str(index), token_ids=[int(t) for t in p])
    return PromptInput(id=str(p.get("id", index)), messages=p.get("messages"), token_ids=p.get("token_ids"))
