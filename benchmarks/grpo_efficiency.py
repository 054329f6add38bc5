"""rlvr trainer efficiency, bounded by 1 by construction: for each recorded step, the time of a plain
forward + backward + AdamW step (HF + peft + torch, nothing else) on the exact token tensors that step trained
on, divided by the trainer's busy time for that step (its whole `policy_update`: loss, clipping, optimizer and
bookkeeping included). The plain pass does a subset of the trainer's work on the same tensors, model layout
(bf16 base, float32 LoRA adapter) and thread count, so a ratio above 1 could only be timing noise.

    .venv/bin/python benchmarks/grpo_efficiency.py [--task addition] [--steps 12] [--out FILE.json]

Runs `rlvr train grpo` in-process with the race's config (grpo_rlvr.rlvr_config) for --steps steps, with
`trainer.grpo.policy_update` wrapped to time it and keep the tensors of its active (non-zero-advantage)
groups; then replays them plainly. The async overlap (step time with max_staleness 0 ÷ with 1) is the
race's `rlvr_sync` side (benchmarks/grpo.py --sides rlvr,rlvr_sync)."""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from grpo_common import HParams, lora_config, seeded_order, task_data, write_jsonl
from grpo_rlvr import rlvr_config

Recorded = list[tuple[list[int], list[list[int]], list[float]]]
"""One step: per active group (prompt ids, completion ids per sample, advantage per sample)."""


def record_steps(task: str, steps: int, work: Path) -> list[tuple[float, Recorded]]:
    """Train `steps` steps; returns (busy seconds of policy_update, its active groups' tensors) per step."""
    import trainer.grpo as grpo
    from trainer.config import load_grpo_config

    train, held = task_data(task)
    write_jsonl(seeded_order(train, 0), work / "train.jsonl")
    write_jsonl(held, work / "held.jsonl")
    (work / "rlvr.toml").write_text(rlvr_config(work, task, HParams(), 0, 1e9))
    cfg = load_grpo_config(work / "rlvr.toml", [f"train.steps={steps}", "checkpoint.every_s=1e9"])
    original = grpo.policy_update
    out: list[tuple[float, Recorded]] = []

    def timed(policy: Any, optimizer: Any, scheduler: Any, groups: list[Any], cfg: Any, stop: Any = None) -> Any:
        start = time.perf_counter()
        stats = original(policy, optimizer, scheduler, groups, cfg, stop)
        busy = time.perf_counter() - start
        tensors = [(list(g.samples[0].sample.prompt_token_ids), [list(s.sample.token_ids) for s in g.samples],
                    [s.reward for s in g.samples]) for g in groups]  # fmt: skip
        active = [(p, c, r) for p, c, r in tensors if len(set(r)) > 1]  # beta = 0: the trainer skips the rest
        if active:
            out.append((busy, active))
        return stats

    grpo.policy_update = timed  # type: ignore[assignment]
    try:
        grpo.run_grpo(cfg)
    finally:
        grpo.policy_update = original  # type: ignore[assignment]
    return out


def plain_step(model: Any, opt: Any, groups: Recorded) -> float:
    """Seconds of one plain forward + backward per group, then one AdamW step. Each group is run the cheapest
    plain way, as the trainer may (model.shared_prefix): the prompt once, its keys/values broadcast to the
    samples, logits only where completion tokens are scored; otherwise the plain pass would do more work
    than the trainer and the ratio could exceed 1 (a first version measured a median of 1.37)."""
    import torch
    from transformers import DynamicCache

    config = model.get_base_model().config
    start = time.perf_counter()
    for prompt, completions, rewards in groups:
        mean = sum(rewards) / len(rewards)
        adv = torch.tensor([r - mean for r in rewards])
        g, width = len(completions), max(len(c) for c in completions)
        ids = torch.tensor([c + [0] * (width - len(c)) for c in completions])
        mask = torch.tensor([[1] * len(c) + [0] * (width - len(c)) for c in completions], dtype=torch.float32)
        first = model(input_ids=torch.tensor([prompt]), use_cache=True, logits_to_keep=1)
        kv = [(la.keys.expand(g, -1, -1, -1), la.values.expand(g, -1, -1, -1)) for la in first.past_key_values.layers]
        rest = model(input_ids=ids, past_key_values=DynamicCache(ddp_cache_data=kv, config=config), use_cache=True)
        logits = torch.cat([first.logits[:, -1:].expand(g, -1, -1), rest.logits[:, :-1]], dim=1).float()
        logps = torch.log_softmax(logits, -1).gather(-1, ids[..., None]).squeeze(-1)
        (-(logps * adv[:, None] * mask).sum() / mask.sum()).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def replay(recorded: list[tuple[float, Recorded]], hp: HParams, reps: int = 3) -> list[dict[str, float]]:
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from rlvr.models import prepare_base_model

    torch.set_num_threads(1)  # the trainer's share (model.threads = 1 in the race config)
    base = AutoModelForCausalLM.from_pretrained(prepare_base_model(), dtype=getattr(torch, hp.dtype))
    model = get_peft_model(base, lora_config(hp))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.0)
    plain_step(model, opt, recorded[0][1])  # warm-up
    rows = []
    for busy, groups in recorded:
        plain = statistics.median(plain_step(model, opt, groups) for _ in range(reps))
        rows.append({"busy_s": busy, "plain_s": plain, "efficiency": plain / busy})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="addition")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        recorded = record_steps(a.task, a.steps, Path(tmp))
    if not recorded:
        raise SystemExit("no step had a group with non-zero advantages: nothing to replay")
    rows = replay(recorded[1:] or recorded, HParams())  # the first step also warms the trainer up
    eff = [r["efficiency"] for r in rows]
    result = {"task": a.task, "steps": rows, "median_efficiency": statistics.median(eff),
              "min": min(eff), "max": max(eff)}  # fmt: skip
    print(json.dumps(result, indent=1))
    if a.out:
        a.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
