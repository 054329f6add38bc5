"""The TRL side of the GRPO race: one run of TRL's GRPOTrainer as its own process, on the race clock.

    .venv/bin/python benchmarks/grpo_trl.py RUN_DIR --t0 UNIX --budget-s 900 --seed 0 [--vllm] [--threads 2]

Trains on RUN_DIR/train.jsonl in file order (shuffle_dataset=False), bf16 like rlvr (bf16 base weights,
bf16 autocast, float32 LoRA adapter), LoRA and GRPO settings of grpo_common.HParams. Generation: HF `generate`
in-process, or with --vllm TRL's vLLM integration in colocate mode. The clock starts at --t0 (the harness'
time just before it started this process: imports and model load count); an adapter is saved every 60 s of
training and training stops at --budget-s on that clock. Held-out scoring happens later, in the harness."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from grpo_common import (
    CHECKPOINT_EVERY_S,
    HParams,
    base_model_and_tokenizer,
    is_rewarded,
    lora_config,
    read_tasks,
)


class RaceClock:
    """TrainerCallback body: saves the adapter every `every_s` (race: 60) seconds of training and stops training
    at the budget, both on the race clock (seconds since --t0)."""

    def __init__(self, run_dir: Path, t0: float, budget_s: float, every_s: float) -> None:
        self.run_dir, self.t0, self.budget_s, self.every_s = run_dir, t0, budget_s, every_s
        self.last_save = 0.0
        self.log = (run_dir / "checkpoints.jsonl").open("a")

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.last_save = time.time()

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        now = time.time()
        t = now - self.t0
        if now - self.last_save >= self.every_s:
            adapter = self.run_dir / "checkpoints" / f"step-{state.global_step:06d}"
            kw["model"].save_pretrained(str(adapter))
            self.log.write(json.dumps({"t_s": t, "step": state.global_step, "adapter": str(adapter)}) + "\n")
            self.log.flush()
            self.last_save = time.time()
            print(f"[trl] {t:6.1f}s step {state.global_step:4d}: checkpoint", flush=True)
        control.should_training_stop = time.time() - self.t0 >= self.budget_s


def trl_args(hp: HParams, out: Path, seed: int, vllm: bool) -> Any:
    from trl import GRPOConfig

    extra: dict[str, Any] = {}
    if vllm:
        extra = {"vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.3, "vllm_max_model_length": 512,
                 "vllm_enable_sleep_mode": False}  # fmt: skip
    return GRPOConfig(
        output_dir=str(out / "trl"), use_vllm=vllm, use_cpu=True, bf16=True, seed=seed,
        learning_rate=hp.lr, lr_scheduler_type="constant", warmup_steps=0, gradient_accumulation_steps=1,
        per_device_train_batch_size=hp.prompts_per_step * hp.samples_per_prompt,
        num_generations=hp.samples_per_prompt, max_completion_length=hp.max_tokens, temperature=hp.temperature,
        loss_type=hp.loss_type, epsilon=hp.epsilon_low, epsilon_high=hp.epsilon_high, beta=0.0,
        shuffle_dataset=False,  # the harness wrote the prompts in the race's order
        gradient_checkpointing=False,  # TRL's default is on; a 135M model does not need it (nor does rlvr)
        max_steps=100_000,  # the race clock stops training
        logging_steps=10, save_strategy="no", report_to=[], disable_tqdm=True, **extra,
    )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--t0", type=float, default=None, help="race clock origin (unix time); default: now")
    ap.add_argument("--budget-s", type=float, default=900)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (TRL gets the whole machine)")
    ap.add_argument("--checkpoint-every-s", type=float, default=CHECKPOINT_EVERY_S)
    ap.add_argument("--vllm", action="store_true", help="TRL's vLLM integration, colocate mode")
    a = ap.parse_args()
    t0 = a.t0 if a.t0 is not None else time.time()
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOTrainer

    torch.set_num_threads(a.threads)
    hp = HParams()
    model, tok = base_model_and_tokenizer(hp.dtype)
    train = read_tasks(a.run_dir / "train.jsonl")
    clock = RaceClock(a.run_dir, t0, a.budget_s, a.checkpoint_every_s)
    callback = type("RaceCallback", (TrainerCallback,),
                    {"on_train_begin": clock.on_train_begin, "on_step_end": clock.on_step_end})  # fmt: skip

    def reward(completions: list[Any], pattern: list[str], **_: Any) -> list[float | None]:
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [float(is_rewarded(t, p)) for t, p in zip(texts, pattern, strict=True)]

    trainer = GRPOTrainer(
        model=model, reward_funcs=reward, args=trl_args(hp, a.run_dir, a.seed, a.vllm),
        train_dataset=Dataset.from_list([{"prompt": t.messages, "pattern": t.fields["pattern"]} for t in train]),
        processing_class=tok, peft_config=lora_config(hp), callbacks=[callback()],
    )  # fmt: skip
    print(f"[trl] {time.time() - t0:6.1f}s set-up done; training", flush=True)
    trainer.train()
    steps = trainer.state.global_step
    (a.run_dir / "summary.json").write_text(json.dumps({"steps": steps, "end_s": time.time() - t0}))


if __name__ == "__main__":
    main()
