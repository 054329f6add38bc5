"""Greedy generation with the model being trained (transformers' generate), behind the rollout client's
interface (trainer.evaluate.RolloutLike), so the shared evaluator judges an SFT model exactly as it judges a
GRPO policy served by vLLM — without starting an inference engine next to the trainer on a small machine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rollout.types import FinishReason, PromptInput, Sample, SamplingConfig


class HFGenerator:
    """`generate(prompts, params)` for a model in this process; greedy only (held-out exams are fixed)."""

    def __init__(self, model: Any, tok: Any, batch_size: int = 32) -> None:
        self.model = model
        self.tok = tok
        self.batch_size = batch_size

    async def generate(
        self, prompts: Sequence[PromptInput], params: SamplingConfig | None = None, adapter: str | None = None
    ) -> list[Sample]:
        params = params or SamplingConfig(temperature=0.0)
        if params.temperature != 0.0 or params.n != 1:
            raise ValueError("HFGenerator generates greedily (temperature 0, n 1) for held-out evaluation")
        out: list[Sample] = []
        for start in range(0, len(prompts), self.batch_size):
            out.extend(self._batch(prompts, start, params))
        return out

    def _batch(self, prompts: Sequence[PromptInput], start: int, params: SamplingConfig) -> list[Sample]:
        import torch

        chunk = prompts[start : start + self.batch_size]
        ids = [self.tok.apply_chat_template(p.messages, add_generation_prompt=True, tokenize=True, return_dict=False)
               for p in chunk]  # fmt: skip
        width = max(len(x) for x in ids)
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.tok.eos_token_id
        # Left padding: every prompt ends where generation starts.
        input_ids = torch.tensor([[pad] * (width - len(x)) + list(x) for x in ids])
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids])
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                gen = self.model.generate(
                    input_ids=input_ids.to(self.model.device), attention_mask=mask.to(self.model.device),
                    max_new_tokens=params.max_tokens, do_sample=False, eos_token_id=self.tok.eos_token_id,
                    pad_token_id=pad,
                )  # fmt: skip
        finally:
            self.model.train(was_training)
        samples = []
        for i, (p, prompt_ids) in enumerate(zip(chunk, ids, strict=True)):
            new = gen[i, width:].tolist()
            finish: FinishReason = "length"
            if self.tok.eos_token_id in new:
                new = new[: new.index(self.tok.eos_token_id)]
                finish = "stop"
            text = self.tok.decode(new, skip_special_tokens=True)
            for s in params.stop:
                if s in text:
                    text, finish = text[: text.index(s)], "stop"
            samples.append(Sample(prompt_id=p.id, prompt_index=start + i, sample_index=0,
                                  prompt_token_ids=list(prompt_ids), token_ids=new, text=text, logprobs=[],
                                  finish_reason=finish, policy_version=0))  # fmt: skip
        return samples
