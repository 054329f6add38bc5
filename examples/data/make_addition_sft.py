"""SFT warm-up data for 2-digit addition: the `addition` source's training prompts, answered with the sum.

    python examples/data/make_addition_sft.py --size 1000 --out examples/data/addition_sft.jsonl \
        --eval-out examples/data/addition_sft_eval.jsonl

The prompts are exactly the ones `data.source = "addition"` builds ("What is a + b? Reply with only the number.",
trainer/data.py), so base, SFT, GRPO and the student are measured on the same question. The answer obeys the
instruction: the number alone. Rows come from the source's training split (data seed 0, after the first
`--eval-size` problems, which are the held-out exam of every demo stage); the held-out problems go to
--eval-out (the SFT held-out loss, and the contamination check `rlvr data check --eval` runs on the training
file)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path[0] = str(Path(__file__).resolve().parents[2])


def rows(tasks: list[Any]) -> list[dict[str, Any]]:
    return [{"messages": [*t.messages, {"role": "assistant", "content": t.fields["answer"]}],
             "answer": t.fields["answer"]} for t in tasks]  # fmt: skip


def main() -> None:
    from trainer.data import DataConfig, build_tasks

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1000, help="training rows (from the source's training split)")
    ap.add_argument("--seed", type=int, default=0, help="data.seed of the configs")
    ap.add_argument("--eval-size", type=int, default=200, help="data.eval_size of the configs (the exam)")
    ap.add_argument("--out", type=Path, default=Path("examples/data/addition_sft.jsonl"))
    ap.add_argument("--eval-out", type=Path, help="also write the held-out problems, answered, here")
    a = ap.parse_args()
    train, held_out = build_tasks(DataConfig(source="addition", size=a.size, eval_size=a.eval_size, seed=a.seed))
    data = rows(train.tasks[: a.size])
    a.out.write_text("".join(json.dumps(r) + "\n" for r in data))
    print(f"{a.out}: {len(data)} rows")
    if a.eval_out is not None:
        a.eval_out.write_text("".join(json.dumps(r) + "\n" for r in rows(held_out)))
        print(f"{a.eval_out}: {len(held_out)} held-out rows")


if __name__ == "__main__":
    main()
