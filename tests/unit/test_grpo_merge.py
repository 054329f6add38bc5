"""The GRPO race run in parts (benchmarks/grpo_merge.py): parts run alike merge into one race; parts that were
not (another budget, scorer or base score, a seed run twice) are refused with the file and field named."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest

# appended, not inserted: benchmarks/graders.py must not shadow the graders package for later tests
sys.path.append(str(Path(__file__).resolve().parents[2] / "benchmarks"))
from grpo_merge import MergeError, merge
from grpo_table import markdown


def part(seed: int, rlvr_acc: float, trl_acc: float) -> dict[str, Any]:
    def run(acc: float) -> dict[str, Any]:
        return {"seed": seed, "points": [[60.0, 10, acc / 2], [120.0, 20, acc]], "final_samples": [],
                "median_step_s": 3.0}  # fmt: skip

    return {"command": f"grpo.py --seed-list {seed}", "date": f"2026-12-0{seed + 1} 10:00:00", "note": "",
            "machine": "x", "budget_s": 900.0, "checkpoint_every_s": 60.0, "eval_size": 200,
            "sides": ["trl", "rlvr"], "hparams": {"lr": 2e-4}, "seeds": [seed],
            "tasks": {"addition": {"name": "2-digit addition", "scorer": "last_integer", "base_acc": 0.22,
                                   "base_samples": [],
                                   "runs": {"trl": [run(trl_acc)], "rlvr": [run(rlvr_acc)]}}}}  # fmt: skip


def test_parts_run_alike_merge_into_one_race_with_every_seed() -> None:
    merged = merge({"p1.json": part(1, 0.8, 0.6), "p0.json": part(0, 0.9, 0.5)})
    runs = merged["tasks"]["addition"]["runs"]
    assert [r["seed"] for r in runs["rlvr"]] == [0, 1] and [r["seed"] for r in runs["trl"]] == [0, 1]
    assert merged["seeds"] == [0, 1] and merged["date"] == "2026-12-02 10:00:00"
    assert [p["file"] for p in merged["parts"]] == ["p1.json", "p0.json"]
    table = markdown(merged)
    assert "2 seed(s) per side" in table
    # medians over the two seeds: rlvr's final 85.0% [80.0% – 90.0%]
    assert "| 2-digit addition | rlvr | 22.0% | 85.0% [80.0% – 90.0%]" in table


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p.update(budget_s=600.0), "p1.json: field 'budget_s' is 600.0, but p0.json has 900.0"),
        (lambda p: p["hparams"].update(lr=1e-4), "p1.json: field 'hparams'"),
        (lambda p: p["tasks"]["addition"].update(base_acc=0.25), "tasks.addition.base_acc is 0.25, but p0.json"),
        (lambda p: p["tasks"]["addition"].update(scorer="reasoning_gym"),
         "tasks.addition.scorer is 'reasoning_gym', but p0.json has 'last_integer'"),
        (lambda p: p["tasks"]["addition"]["runs"]["rlvr"][0].update(seed=0), "addition/rlvr/seed 0 is also in p0"),
    ],
    ids=["budget", "hparams", "base score", "scorer", "seed twice"],
)
def test_parts_not_run_alike_are_refused_naming_file_and_field(change: Any, message: str) -> None:
    other = copy.deepcopy(part(1, 0.8, 0.6))
    change(other)
    with pytest.raises(MergeError, match=message.replace("(", r"\(").replace(".", r"\.")):
        merge({"p0.json": part(0, 0.9, 0.5), "p1.json": other})
