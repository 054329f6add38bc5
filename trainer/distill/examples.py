"""Distillation examples: a prompt and one assistant completion as token ids, and batches of them with the masks
of the positions the loss reads: the assistant tokens, and the prompt's own tokens (read only by a divergence with
kd.prompt_weight > 0).

The prompt is the chat template with the generation prompt (exactly what the rollout service feeds the model);
the completion is the reply's text tokenized on its own, followed by the end-of-turn token, i.e. the tokens a
model would generate after that prompt. So no template needs {% generation %} markers, and nothing is masked by
pad id (SmolLM2's pad token is its end-of-turn token, which the student must learn to emit)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from trainer.data import DataError, Task


@dataclass
class Example:
    id: str
    prompt_ids: list[int]
    completion_ids: list[int]


@dataclass
class Batch:
    input_ids: torch.Tensor
    """[B, L] right-padded prompt + completion ids."""
    attention_mask: torch.Tensor
    """[B, L] 1 on real tokens."""
    loss_mask: torch.Tensor
    """[B, L-1] 1 where logits at position p predict a completion token (p + 1)."""
    prompt_mask: torch.Tensor
    """[B, L-1] 1 where logits at position p predict a prompt token (p + 1): what kd.prompt_weight reads."""

    @property
    def tokens(self) -> int:
        return int(self.loss_mask.sum())


def split_task(task: Task) -> tuple[list[dict[str, str]], str]:
    """(prompt messages, completion text) of a dataset task: its final assistant turn, else its `answer` field."""
    if task.messages and task.messages[-1]["role"] == "assistant":
        if len(task.messages) < 2:
            raise DataError(f"{task.source or task.id}: field 'messages': an assistant turn needs a prompt before it")
        return task.messages[:-1], task.messages[-1]["content"]
    if "answer" in task.fields:
        return task.messages, str(task.fields["answer"])
    raise DataError(
        f"{task.source or task.id}: field 'messages' / 'answer': a distillation example needs a completion "
        "(a final assistant turn or an answer field), or set completions = \"teacher\""
    )


def end_of_turn_id(tok: Any) -> int:
    if tok.eos_token_id is None:
        raise DataError("the student's tokenizer has no eos token to end an assistant turn with")
    return int(tok.eos_token_id)


def encode(tok: Any, task_id: str, prompt: list[dict[str, str]], completion: str) -> Example:
    text = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    prompt_ids = list(tok(text, add_special_tokens=False)["input_ids"])
    completion_ids = [*tok(completion, add_special_tokens=False)["input_ids"], end_of_turn_id(tok)]
    return Example(task_id, prompt_ids, completion_ids)


def encode_task(tok: Any, task: Task) -> Example:
    prompt, completion = split_task(task)
    return encode(tok, task.id, prompt, completion)


def collate(examples: Sequence[Example], pad_id: int) -> Batch:
    """Right-pad; the attention mask hides the pads (whatever their id)."""
    rows = [e.prompt_ids + e.completion_ids for e in examples]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attn = torch.zeros(len(rows), width, dtype=torch.long)
    loss = torch.zeros(len(rows), max(width - 1, 1))
    prompt = torch.zeros_like(loss)
    for i, (e, r) in enumerate(zip(examples, rows, strict=True)):
        ids[i, : len(r)] = torch.tensor(r)
        attn[i, : len(r)] = 1
        start = len(e.prompt_ids) - 1  # logits at the last prompt token predict the first completion token
        loss[i, start : start + len(e.completion_ids)] = 1.0
        prompt[i, :start] = 1.0
    return Batch(ids, attn, loss, prompt)


def probe_batch(model_dir: Any, tasks: Sequence[Task]) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, loss_mask) of dataset tasks under a model's chat template: the probe that
    `rlvr models shrink --select greedy` chooses layers on (rlvr/layer_search.py)."""
    from rlvr.student import load_tokenizer

    if not tasks:
        raise DataError("the layer-selection probe needs at least one example")
    tok = load_tokenizer(model_dir, "--from")
    batch = collate([encode_task(tok, t) for t in tasks], tok.pad_token_id or 0)
    return batch.input_ids, batch.loss_mask
