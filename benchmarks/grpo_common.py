"""Shared parts of the GRPO race (benchmarks/grpo.py): hyperparameters, tasks and their data, the training
rule, the one strict scorer and the one evaluator (HF float32 greedy decoding of every checkpoint, both
sides), and the run-directory layout both sides write.

A run directory holds train.jsonl (the prompts in the order both sides take them), checkpoints/ and
checkpoints.jsonl: one line per saved adapter, {"t_s": seconds since the command started, "step", "adapter"}.
"""

from __future__ import annotations

import gc
import json
import os
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from trainer.data import DataConfig, Task  # noqa: E402

EVAL_SIZE = 200
CHECKPOINT_EVERY_S = 60.0


@dataclass
class HParams:
    """Shared by both sides (the TRL reference settings of the issue); both train in bf16 (frozen bf16 base,
    float32 LoRA adapter as peft keeps it)."""

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
    dtype: str = "bfloat16"


@dataclass
class TaskSpec:
    name: str
    data: DataConfig
    scorer: str
    """The strict scorer of held-out accuracy (a grader name of graders/builtin)."""


ARITH_CONFIG = {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2, "operators": ["+", "-"],
                "allow_parentheses": False, "allow_negation": False}  # fmt: skip
# fmt: off
TASKS = {
    "addition": TaskSpec("addition", DataConfig(source="addition", size=2000, eval_size=EVAL_SIZE, seed=0),
                         "last_integer"),
    "arith": TaskSpec(
        "reasoning_gym:basic_arithmetic",
        DataConfig(source="reasoning_gym", name="basic_arithmetic", size=2000, eval_size=EVAL_SIZE, seed=0,
                   template="{question} Reply with only the number.", rg_config=ARITH_CONFIG),
        "last_integer",  # as addition: both sides answer with an equation ("8 + 2 - 7 = 3"), never a bare number
    ),
}
# fmt: on


def task_data(name: str) -> tuple[list[Task], list[Task]]:
    """(2,000 training tasks, 200 held-out tasks) of a task; the held-out tasks never appear in training."""
    from trainer.data import build_tasks

    stream, held = build_tasks(TASKS[name].data)
    return with_patterns(stream.tasks), with_patterns(held)


def seeded_order(train: list[Task], seed: int) -> list[Task]:
    """The order both sides of seed `seed` take the prompts in (neither side reshuffles)."""
    order = list(train)
    random.Random(f"race:{seed}").shuffle(order)
    return order


# ------------------------------------------------------------------------------------------- grading


def last_number_pattern(answer: str) -> str:
    """fullmatch pattern: the completion's last integer is `answer` (not part of a longer number/sign)."""
    return rf"(?:.*[^0-9-])?{re.escape(answer.strip())}[^0-9]*"


def is_rewarded(completion: str, pattern: str) -> bool:
    """The training reward of both sides (rlvr: the `regex` grader with this pattern, which strips too)."""
    return re.fullmatch(pattern, completion.strip(), flags=re.S) is not None


def with_patterns(tasks: list[Task]) -> list[Task]:
    return [Task(t.id, t.messages, {**t.fields, "pattern": last_number_pattern(t.fields["answer"])}) for t in tasks]


def strict_correct(scorer: str, completion: str, task: Task) -> bool:
    """The held-out scorer: the grader service's own checkers, called in-process (no service, same code)."""
    if scorer == "last_integer":
        from graders.builtin.last_integer import last_integer

        return last_integer(completion, answer=task.fields["answer"]).reward == 1.0
    raise ValueError(f"unknown scorer {scorer!r}")


# ----------------------------------------------------------------------------------------- evaluator


def greedy_completions(model: Any, tok: Any, tasks: list[Task], max_tokens: int, batch: int = 100) -> list[str]:
    """HF greedy decoding, float32, left-padded batches: the same for every checkpoint of both sides."""
    import torch

    model.eval()
    tok.padding_side = "left"
    texts_out: list[str] = []
    for i in range(0, len(tasks), batch):
        chunk = tasks[i : i + batch]
        texts = [tok.apply_chat_template(t.messages, tokenize=False, add_generation_prompt=True) for t in chunk]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tok.pad_token_id,
                                 top_p=None, top_k=None, use_cache=True)  # fmt: skip
        texts_out += [tok.decode(ids, skip_special_tokens=True) for ids in out[:, enc["input_ids"].shape[1] :]]
    return texts_out


def base_model_and_tokenizer(dtype: str = "float32") -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlvr.models import prepare_base_model

    model_dir = prepare_base_model()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype))
    return model, AutoTokenizer.from_pretrained(model_dir)


def score(adapter: Path | None, held: list[Task], scorer: str, hp: HParams) -> dict[str, Any]:
    """Accuracy of the base model (adapter None) or a saved peft adapter, and its first 3 answers to read."""
    from peft import PeftModel

    model, tok = base_model_and_tokenizer()
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter))
    answers = greedy_completions(model, tok, held, hp.max_tokens)
    correct = [strict_correct(scorer, a, t) for a, t in zip(answers, held, strict=True)]
    del model
    gc.collect()
    rows = zip(held, answers, correct, strict=True)
    return {"acc": sum(correct) / len(held), "samples": [[t.messages[-1]["content"], a, c] for t, a, c in rows][:3]}


def lora_config(hp: HParams) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=hp.lora_r, lora_alpha=hp.lora_alpha, target_modules="all-linear", task_type="CAUSAL_LM", lora_dropout=0.0
    )


# ------------------------------------------------------------------------------------------ run files


def write_jsonl(tasks: list[Task], path: Path) -> Path:
    with path.open("w") as f:
        for t in tasks:
            f.write(json.dumps({"id": t.id, "messages": t.messages, **t.fields}) + "\n")
    return path


def read_tasks(path: Path) -> list[Task]:
    out = []
    for line in path.read_text().splitlines():
        d = json.loads(line)
        out.append(Task(d.pop("id"), d.pop("messages"), d))
    return out


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line being written while we read
    return out
