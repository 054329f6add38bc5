"""Worked-solution SFT data for reasoning-gym `chain_sum` (2-3 terms): steps, then `Answer: <n>`.

    python examples/data/make_arith_sft.py --size 2000 --out examples/data/arith_sft.jsonl

Prompts are the generator's questions with the same format instruction the SFT and GRPO configs give
(examples/sft_arith.toml, examples/grpo_arith.toml: data.template), so base, SFT and GRPO are measured on the
same prompt. The held-out tasks are the ones `data.source = "reasoning_gym"` carves out (seed + 1_000_003,
see trainer/data.py); any training question equal to one of them is skipped, and `rlvr data check --eval`
confirms it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path[0] = str(Path(__file__).resolve().parents[2])

NAME = "chain_sum"
RG_CONFIG: dict[str, Any] = {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2}
TEMPLATE = "{question}\nWork it out step by step, then end with a line of the form 'Answer: <number>'."
TRAIN_SEED = 2_000_000
"""Far from the GRPO run's training seeds (0...) and held-out seeds (1_000_003...)."""


def worked_solution(expression: str) -> tuple[str, int]:
    """Left-to-right steps of `a ± b ± c` and the final line."""
    tokens = expression.split()
    total = int(tokens[0])
    steps = []
    for op, num in zip(tokens[1::2], tokens[2::2], strict=True):
        new = total + int(num) if op == "+" else total - int(num)
        steps.append(f"{total} {op} {num} = {new}")
        total = new
    return "\n".join([*steps, f"Answer: {total}"]), total


def held_out_questions(eval_seed: int, eval_size: int) -> set[str]:
    import reasoning_gym

    return {e["question"] for e in reasoning_gym.create_dataset(NAME, seed=eval_seed, size=eval_size, **RG_CONFIG)}


def rows(size: int, seed: int, exclude: set[str]) -> list[dict[str, Any]]:
    import reasoning_gym

    out: list[dict[str, Any]] = []
    seen = set(exclude)
    for e in reasoning_gym.create_dataset(NAME, seed=seed, size=size, **RG_CONFIG):
        if e["question"] in seen:
            continue  # held-out question, or one already taken (a duplicate would be an SFT data-check error)
        seen.add(e["question"])
        solution, total = worked_solution(e["metadata"]["expression"])
        if str(total) != str(e["answer"]):
            raise AssertionError(f"worked solution {total} != reasoning-gym answer {e['answer']} for {e['question']}")
        out.append({"messages": [{"role": "user", "content": TEMPLATE.replace("{question}", e["question"])},
                                 {"role": "assistant", "content": solution}], "answer": str(e["answer"])})  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2000, help="questions generated (duplicates are skipped)")
    ap.add_argument("--seed", type=int, default=TRAIN_SEED)
    ap.add_argument("--eval-seed", type=int, default=1_000_003, help="data.seed + 1_000_003 of the configs")
    ap.add_argument("--eval-size", type=int, default=200, help="data.eval_size of the configs")
    ap.add_argument("--out", type=Path, default=Path("examples/data/arith_sft.jsonl"))
    ap.add_argument("--eval-out", type=Path, help="also write the held-out tasks with worked solutions here (SFT "
                    "rows: the held-out loss of `rlvr train sft` and the contamination check of the training file)")
    a = ap.parse_args()
    held = held_out_questions(a.eval_seed, a.eval_size)
    data = rows(a.size, a.seed, held)
    a.out.write_text("".join(json.dumps(r) + "\n" for r in data))
    print(f"{a.out}: {len(data)} rows ({a.size - len(data)} duplicates or held-out questions skipped)")
    if a.eval_out is not None:

        tasks = rows(a.eval_size, a.eval_seed, set())
        a.eval_out.write_text("".join(json.dumps(t) + "\n" for t in tasks))
        print(f"{a.eval_out}: {len(tasks)} held-out rows (distinct questions of the {a.eval_size} held-out tasks)")


if __name__ == "__main__":
    main()
