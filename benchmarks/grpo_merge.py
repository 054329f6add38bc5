"""Merge parts of the GRPO race (benchmarks/grpo.py runs with --seed-list / --tasks) into one results file.

    .venv/bin/python benchmarks/grpo_merge.py benchmarks/results/grpo_race/*.json \
        [--out benchmarks/results/grpo_race.json]

The race takes about four quiet hours; run in parts, each part is a whole (task, seed) of every side, run back
to back on a quiet machine. Parts merge only when they were run alike: the same budget, checkpoint interval,
held-out size, sides and hyperparameters, and, per task, the same scorer and base-model score (the one
evaluator gave the same number, so the held-out set did not change between parts). A (task, side, seed) found
in two parts is an error, not a choice. Writes the merged JSON, its plot and prints the README's table."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from grpo_plot import publish
from grpo_table import DEFAULT

SHARED = ("budget_s", "checkpoint_every_s", "eval_size", "sides", "hparams")
PART_FIELDS = ("command", "date", "note", "machine", "load_average_start", "load_average_end")


class MergeError(ValueError):
    """Parts that were not run alike (names the file and the field)."""


def merge(parts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    if not parts:
        raise MergeError("no parts given")
    first_name, first = next(iter(parts.items()))
    merged: dict[str, Any] = {k: first[k] for k in SHARED}
    merged["tasks"], merged["parts"] = {}, []
    seen: dict[tuple[str, str, int], str] = {}
    for name, part in parts.items():
        for k in SHARED:
            if part.get(k) != first[k]:
                raise MergeError(f"{name}: field {k!r} is {part.get(k)!r}, but {first_name} has {first[k]!r}")
        merged["parts"].append({"file": name, **{k: part.get(k) for k in PART_FIELDS}})
        for task_name, task in part["tasks"].items():
            into = merged["tasks"].setdefault(task_name, {**task, "runs": {}, "base_from": name})
            for k in ("name", "scorer"):  # a scorer change can leave the base score as it was (0.0 under both)
                if task.get(k) != into.get(k):
                    raise MergeError(f"{name}: tasks.{task_name}.{k} is {task.get(k)!r}, but {into['base_from']} "
                                     f"has {into.get(k)!r}")  # fmt: skip
            if task["base_acc"] != into["base_acc"]:
                raise MergeError(f"{name}: tasks.{task_name}.base_acc is {task['base_acc']}, but {into['base_from']} "
                                 f"has {into['base_acc']} (the held-out set or the evaluator changed)")  # fmt: skip
            for side, runs in task["runs"].items():
                for run in runs:
                    key = (task_name, side, run["seed"])
                    if key in seen:
                        raise MergeError(f"{name}: {task_name}/{side}/seed {run['seed']} is also in {seen[key]}")
                    seen[key] = name
                    into["runs"].setdefault(side, []).append(run)
    for task in merged["tasks"].values():
        for runs in task["runs"].values():
            runs.sort(key=lambda r: r["seed"])
    merged["seeds"] = sorted({seed for _, _, seed in seen})
    merged["date"] = max(str(p.get("date")) for p in parts.values())
    merged["command"] = "benchmarks/grpo_merge.py " + " ".join(parts)
    return merged


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("parts", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=DEFAULT)
    a = ap.parse_args()
    try:
        merged = merge({str(p): json.loads(p.read_text()) for p in a.parts})
    except (MergeError, OSError, json.JSONDecodeError, KeyError) as e:
        sys.exit(f"grpo_merge: {e}")
    publish(merged, a.out)


if __name__ == "__main__":
    main()
