"""A short SFT of SmolLM2-135M-Instruct on the arithmetic example's worked solutions measurably raises format
adherence on held-out tasks, judged through the real grader service (regex grader + reasoning-gym's strict
scorer), and the trained model ends its answers with <|im_end|> (its pad token: masking labels by pad id
would have taught it never to stop)."""

from __future__ import annotations

import asyncio
import json
import tomllib
from pathlib import Path

import pytest

from trainer.sft.config import SFTConfig
from trainer.sft.run import run_sft

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(1800)  # ~2-3 min on an idle 2-core machine; the budget is for a shared, loaded one
def test_short_sft_raises_format_adherence_and_teaches_stopping(tmp_path: Path, base_model_dir: Path) -> None:
    rows = (ROOT / "examples/data/arith_sft.jsonl").read_text().splitlines()[:160]
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(rows) + "\n")
    example = tomllib.loads((ROOT / "examples/sft_arith.toml").read_text())
    tasks = dict(example["eval"]["tasks"], eval_size=16)
    cfg = SFTConfig.model_validate({
        "run_dir": str(tmp_path / "run"), "model": {"path": "base", "finetune": "full", "threads": 1},
        "data": {"path": str(train), "max_len": 256},
        "train": {"steps": 8, "batch_size": 8}, "optim": {"lr": 1e-4, "warmup_steps": 2},
        "eval": {"every": 0, "batch_size": 16, "max_tokens": 40, "examples": 2, "tasks": tasks,
                 "format_pattern": example["eval"]["format_pattern"]},
        "logging": {"tensorboard": False},
    })  # fmt: skip
    summary = run_sft(cfg)
    assert summary.first_format_rate is not None and summary.last_format_rate is not None
    assert summary.last_format_rate >= summary.first_format_rate + 0.3, summary
    assert summary.last_format_rate >= 0.6, summary
    samples = [json.loads(x) for x in (tmp_path / "run" / "eval_samples.jsonl").read_text().splitlines()]
    assert {s["step"] for s in samples} == {0, 8} and all(s["scorer"] == "reasoning_gym" for s in samples)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rollout.types import PromptInput, SamplingConfig
    from trainer.sft.generate import HFGenerator

    model = AutoModelForCausalLM.from_pretrained(str(summary.model_dir))
    tok = AutoTokenizer.from_pretrained(str(summary.model_dir))
    prompts = [PromptInput(id=str(i), messages=[{"role": "user", "content": json.loads(r)["messages"][0]["content"]}])
               for i, r in enumerate(rows[:6])]  # fmt: skip
    out = asyncio.run(HFGenerator(model, tok).generate(prompts, SamplingConfig(temperature=0.0, max_tokens=48)))
    stopped = [s.finish_reason == "stop" for s in out]
    assert sum(stopped) >= 5, [s.text for s in out]  # it ends its answers with <|im_end|> (EOS = pad)
