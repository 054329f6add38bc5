"""Shared parts of benchmarks/grpo.py: hyperparameters, tasks, the one scoring rule, the one evaluator (HF
float32 greedy decoding, used for both sides), and the raw forward+backward ceiling."""

from __future__ import annotations

import gc
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from trainer.data import DataConfig, Task  # noqa: E402


@dataclass
class HParams:
    """Shared by both sides (the TRL reference settings of the issue)."""

    lora_r: int = 16
    lora_alpha: int = 32
    lr: float = 2e-4
    prompts_per_step: int = 2
    samples_per_prompt: int = 8
    max_tokens: int = 24
    temperature: float = 1.0
    loss_type: str = "dapo"
    epsilon_low: float = 0.2
    epsilon_high: float = 0.28
    seed: int = 0


@dataclass
class TaskSpec:
    name: str
    data: DataConfig


ARITH_CONFIG = {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2, "operators": ["+", "-"],
                "allow_parentheses": False, "allow_negation": False}  # fmt: skip
# fmt: off
TASKS = {
    "addition": TaskSpec("addition", DataConfig(source="addition", size=2000, eval_size=100, seed=0)),
    "arith": TaskSpec(
        "reasoning_gym:basic_arithmetic",
        DataConfig(source="reasoning_gym", name="basic_arithmetic", size=2000, eval_size=100, seed=0,
                   template="{question} Reply with only the number.", rg_config=ARITH_CONFIG),
    ),
}
# fmt: on


@dataclass
class Curve:
    """One side's run on one task."""

    side: str
    points: list[tuple[float, int, float]] = field(default_factory=list)
    """(training seconds, step, held-out accuracy)."""
    train_s: float = 0.0
    steps: int = 0
    tokens: float = 0.0
    """Prompt + completion tokens trained on, counted per sample (TRL's num_input_tokens_seen)."""
    raw_tokens_per_s: float = 0.0
    """Raw fwd+bwd tokens/s of the same batch on the trainer's own threads."""
    raw_machine_tokens_per_s: float = 0.0
    """The same on all of the machine's threads."""
    error: str = ""

    @property
    def final_acc(self) -> float:
        return self.points[-1][2] if self.points else float("nan")

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.train_s if self.train_s else float("nan")

    def time_to(self, acc: float) -> float | None:
        return next((t for t, _, a in self.points if a >= acc - 1e-9), None)


# ------------------------------------------------------------------------------------------- grading


def last_number_pattern(answer: str) -> str:
    """fullmatch pattern: the completion's last integer is `answer` (not part of a longer number/sign)."""
    return rf"(?:.*[^0-9-])?{re.escape(answer.strip())}[^0-9]*"


def is_correct(completion: str, pattern: str) -> bool:
    return re.fullmatch(pattern, completion.strip(), flags=re.S) is not None  # the regex grader strips too


def with_patterns(tasks: list[Task]) -> list[Task]:
    return [Task(t.id, t.messages, {**t.fields, "pattern": last_number_pattern(t.fields["answer"])}) for t in tasks]


# ----------------------------------------------------------------------------------------- evaluator


def hf_greedy_accuracy(model: Any, tok: Any, tasks: list[Task], max_tokens: int, batch: int = 100) -> float:
    """The benchmark's single evaluator: HF greedy decoding in float32, same prompts and rule for both sides."""
    import torch

    was_training = model.training
    model.eval()
    tok.padding_side = "left"
    correct = 0
    for i in range(0, len(tasks), batch):
        chunk = tasks[i : i + batch]
        texts = [tok.apply_chat_template(t.messages, tokenize=False, add_generation_prompt=True) for t in chunk]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(
                **enc, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tok.pad_token_id, top_p=None,
                use_cache=True,  # TRL turns the cache off in the config while it trains
            )
        for t, ids in zip(chunk, out[:, enc["input_ids"].shape[1] :], strict=True):
            correct += is_correct(tok.decode(ids, skip_special_tokens=True), t.fields["pattern"])
    model.train(was_training)
    return correct / len(tasks)


def base_model_and_tokenizer() -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlvr.models import prepare_base_model

    model_dir = prepare_base_model()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return model, AutoTokenizer.from_pretrained(model_dir)


def base_accuracy(held: list[Task], hp: HParams) -> float:
    model, tok = base_model_and_tokenizer()
    acc = hf_greedy_accuracy(model, tok, held, hp.max_tokens)
    del model
    gc.collect()
    return acc


def adapter_accuracy(adapter_dir: Path, held: list[Task], hp: HParams) -> float:
    """A saved peft adapter on the float32 base model, through the same evaluator."""
    from peft import PeftModel

    base, tok = base_model_and_tokenizer()
    model = PeftModel.from_pretrained(base, str(adapter_dir))
    acc = hf_greedy_accuracy(model, tok, held, hp.max_tokens)
    del model, base
    gc.collect()
    return acc


def mean_prompt_tokens(tasks: list[Task]) -> float:
    from transformers import AutoTokenizer

    from rlvr.models import prepare_base_model

    tok = AutoTokenizer.from_pretrained(prepare_base_model())
    sample = tasks[:200]
    texts = [tok.apply_chat_template(t.messages, tokenize=False, add_generation_prompt=True) for t in sample]
    return sum(len(tok(x, add_special_tokens=False)["input_ids"]) for x in texts) / len(sample)


# ----------------------------------------------------------------------------------- raw ceiling


def lora_config(hp: HParams) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=hp.lora_r, lora_alpha=hp.lora_alpha, target_modules="all-linear", task_type="CAUSAL_LM", lora_dropout=0.0
    )


def raw_train_tokens_per_s(model: Any, seq_len: int, batch: int, reps: int = 3) -> float:
    """Forward + backward + optimizer step on a [batch, seq_len] batch: the trainer's ceiling."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=0.0)
    ids = torch.randint(100, 1000, (batch, seq_len))
    model.train()
    times = []
    for _ in range(reps + 1):
        start = time.perf_counter()
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids))
        logps = torch.log_softmax(out.logits[:, :-1].float(), -1).gather(-1, ids[:, 1:, None])
        logps.mean().backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - start)
    return batch * seq_len / sorted(times[1:])[len(times[1:]) // 2]


def raw_for(model: Any, curve: Curve, hp: HParams) -> float:
    """Raw fwd+bwd tokens/s of a batch shaped like the run's average training batch."""
    batch = hp.prompts_per_step * hp.samples_per_prompt
    seq_len = max(8, round(curve.tokens / max(curve.steps, 1) / batch))
    return raw_train_tokens_per_s(model, seq_len, batch)
