"""The TRL side of benchmarks/grpo.py: GRPOTrainer with in-process HF generation, stopped at the budget by a
callback that also evaluates every N steps off the clock."""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Any

from grpo_common import (
    Curve,
    HParams,
    base_model_and_tokenizer,
    hf_greedy_accuracy,
    is_correct,
    lora_config,
    raw_for,
)

from trainer.data import Task


class BudgetClock:
    """TrainerCallback body: stops TRL at the budget and evaluates every `eval_every` steps off the clock."""

    def __init__(self, curve: Curve, evaluate: Any, budget_s: float, eval_every: int) -> None:
        self.curve, self.evaluate, self.budget_s, self.eval_every = curve, evaluate, budget_s, eval_every
        self.t0 = 0.0
        self.eval_s = 0.0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.t0 = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        elapsed = time.perf_counter() - self.t0 - self.eval_s
        c = self.curve
        c.train_s, c.steps, c.tokens = elapsed, state.global_step, float(state.num_input_tokens_seen)
        done = elapsed >= self.budget_s
        if done or state.global_step % self.eval_every == 0:
            start = time.perf_counter()
            acc = self.evaluate(kw["model"])
            self.eval_s += time.perf_counter() - start
            c.points.append((elapsed, state.global_step, acc))
            print(f"  [trl] step {state.global_step:4d}  train {elapsed:7.1f}s  held-out {acc:.1%}", flush=True)
        control.should_training_stop = done


def trl_args(hp: HParams, out: Path) -> Any:
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=str(out / "trl"), use_vllm=False, use_cpu=True, bf16=False, seed=hp.seed,
        learning_rate=hp.lr, lr_scheduler_type="constant", warmup_steps=0, gradient_accumulation_steps=1,
        per_device_train_batch_size=hp.prompts_per_step * hp.samples_per_prompt,
        num_generations=hp.samples_per_prompt, max_completion_length=hp.max_tokens, temperature=hp.temperature,
        loss_type=hp.loss_type, epsilon=hp.epsilon_low, epsilon_high=hp.epsilon_high, beta=0.0,
        gradient_checkpointing=False,  # TRL's default is on; a 135M model does not need it (nor does rlvr)
        max_steps=100_000,  # the budget callback stops training
        logging_steps=10, save_strategy="no", report_to=[], disable_tqdm=True,
    )  # fmt: skip


def run_trl(train: list[Task], held: list[Task], hp: HParams, budget_s: float, eval_every: int, out: Path) -> Curve:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOTrainer

    model, tok = base_model_and_tokenizer()
    curve = Curve("trl")
    clock = BudgetClock(curve, lambda m: hf_greedy_accuracy(m, tok, held, hp.max_tokens), budget_s, eval_every)
    callback = type(
        "BudgetCallback", (TrainerCallback,), {"on_train_begin": clock.on_train_begin, "on_step_end": clock.on_step_end}
    )

    def reward(completions: list[Any], pattern: list[str], **_: Any) -> list[float | None]:
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [float(is_correct(t, p)) for t, p in zip(texts, pattern, strict=True)]

    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward,
        args=trl_args(hp, out),
        train_dataset=Dataset.from_list([{"prompt": t.messages, "pattern": t.fields["pattern"]} for t in train]),
        processing_class=tok,
        peft_config=lora_config(hp),
        callbacks=[callback()],
    )
    trainer.train()
    curve.raw_tokens_per_s = raw_for(trainer.model, curve, hp)
    del trainer, model
    gc.collect()
    return curve
