"""The README's GRPO race table, generated from the race's results JSON (benchmarks/grpo.py writes it).

    .venv/bin/python benchmarks/grpo_table.py [--results benchmarks/results/grpo_race.json] [--readme README.md]

With --readme the table replaces the README's block between the BEGIN/END markers below (a unit test checks
the committed README block equals this output for the committed JSON, so the two cannot drift apart).

Per task and TRL side: for each target X in {TRL's final, TRL's best, 80%, 90%}, each side's time-to-X
(the race-clock time of its first checkpoint scoring >= X; "> budget" if none does) as median [min-max]
over seeds, and the ratio of the medians, rlvr ÷ TRL (the goal is <= 0.5). TRL's final and best are the
medians over TRL's seeds of each run's last and best checkpoint. Also final accuracies (median [range])
and seconds per step. A sample of the final answers is in the JSON (final_samples) to read."""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path
from typing import Any

DEFAULT = Path(__file__).resolve().parent / "results" / "grpo_race.json"
TRL_SIDES = ("trl_vllm", "trl")
BEGIN = "<!-- grpo_table.py: generated from benchmarks/results/grpo_race.json, do not edit by hand -->"
END = "<!-- end of grpo_table.py output -->"


def time_to(points: list[list[float]], x: float) -> float:
    """First checkpoint time with accuracy >= x (inf: never within the budget)."""
    return next((t for t, _, acc in points if acc >= x - 1e-9), math.inf)


def final(points: list[list[float]]) -> float:
    return points[-1][2] if points else math.nan


def med_range(xs: list[float], fmt: str, budget: float) -> str:
    def show(v: float) -> str:
        return f"> {budget:.0f} s" if math.isinf(v) else fmt.format(v)

    if not xs:
        return "-"
    m = statistics.median(xs)
    return show(m) if len(xs) == 1 else f"{show(m)} [{show(min(xs))} – {show(max(xs))}]"


def seconds_per_step(points: list[list[float]]) -> float:
    """Training seconds per step between the first and last checkpoint (the set-up excluded)."""
    if len(points) < 3:
        return math.nan
    (t1, s1, _), (t2, s2, _) = points[1], points[-1]  # points[0] is the base model at t = 0
    return (t2 - t1) / (s2 - s1) if s2 > s1 else math.nan


def with_base(run: dict[str, Any], base: float) -> list[list[float]]:
    return [[0.0, 0, base], *run["points"]]


def task_rows(task: dict[str, Any], budget: float) -> list[str]:
    runs = {side: [with_base(r, task["base_acc"]) for r in rs if r["points"]] for side, rs in task["runs"].items()}
    rows = []
    for trl_side in [s for s in TRL_SIDES if runs.get(s)]:
        trl, ours = runs[trl_side], runs.get("rlvr", [])
        targets = {
            "TRL's final": statistics.median(final(p) for p in trl),
            "TRL's best": statistics.median(max(a for _, _, a in p[1:] or p) for p in trl),  # checkpoints only
            "80%": 0.8, "90%": 0.9,
        }  # fmt: skip
        for label, x in targets.items():
            t_trl = [time_to(p, x) for p in trl]
            t_ours = [time_to(p, x) for p in ours]
            m_trl, m_ours = statistics.median(t_trl), statistics.median(t_ours) if t_ours else math.nan
            ratio = m_ours / m_trl if 0 < m_trl < math.inf and math.isfinite(m_ours) else math.nan
            ratio_s = f"{ratio:.2f}" if math.isfinite(ratio) else ("n/a (TRL never)" if math.isinf(m_trl) else "-")
            rows.append(f"| {task['name']} | {trl_side} | {label} = {x:.1%} | {med_range(t_trl, '{:.0f} s', budget)} "
                        f"| {med_range(t_ours, '{:.0f} s', budget)} | {ratio_s} |")  # fmt: skip
    return rows


def accuracy_rows(task: dict[str, Any], budget: float) -> list[str]:
    rows = []
    for side, rs in task["runs"].items():
        points = [with_base(r, task["base_acc"]) for r in rs if r["points"]]
        finals = med_range([final(p) for p in points], "{:.1%}", budget)
        best = med_range([max(a for _, _, a in p) for p in points], "{:.1%}", budget)
        per_step = med_range([seconds_per_step(p) for p in points], "{:.2f}", budget)
        base = f"{task['base_acc']:.1%}"
        rows.append(f"| {task['name']} | {side} | {base} | {finals} | {best} | {per_step} | {len(points)} |")
    return rows


def overlap_line(task: dict[str, Any]) -> str | None:
    """Async overlap: rlvr's s/step with max_staleness 0 ÷ with staleness 1 (only when rlvr_sync was run)."""
    sync, asyn = task["runs"].get("rlvr_sync"), task["runs"].get("rlvr")
    if not sync or not asyn:
        return None
    s = statistics.median(r["median_step_s"] for r in sync)
    a = statistics.median(r["median_step_s"] for r in asyn)
    return f"- {task['name']}: async overlap = median step time sync {s:.2f} s ÷ async {a:.2f} s = {s / a:.2f}x"


def seed_count(results: dict[str, Any]) -> int:
    """Runs per side (the most any side of any task has): older results store a count, newer ones the seeds."""
    n = [len(rs) for t in results["tasks"].values() for rs in t["runs"].values()]
    return max(n, default=0)


def markdown(results: dict[str, Any]) -> str:
    budget = float(results["budget_s"])
    lines = [
        f"Race: {results['budget_s']:.0f} s per run from the command's start, {seed_count(results)} seed(s) per side, "
        f"median [min – max] over seeds; held-out accuracy by the task's strict scorer. ({results['date']}, "
        f"`{results['command']}`)",
        "",
        "| task | TRL side | target X | TRL time-to-X | rlvr time-to-X | ratio rlvr ÷ TRL |",
        "|---|---|---|---|---|---|",
    ]
    for task in results["tasks"].values():
        lines += task_rows(task, budget)
    lines += ["", "| task | side | base | final | best | s/step | seeds |", "|---|---|---|---|---|---|---|"]
    for task in results["tasks"].values():
        lines += accuracy_rows(task, budget)
    overlap = [line for t in results["tasks"].values() if (line := overlap_line(t))]
    if overlap:
        lines += ["", *overlap]
    return "\n".join(lines)


def _span(readme: str) -> tuple[int, int]:
    """Where the generated block lies (after BEGIN, before END); ValueError if the markers are missing."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README: the markers {BEGIN!r} ... {END!r} are missing or out of order")
    return start + len(BEGIN), end


def readme_block(readme: str) -> str:
    """The generated table in the README (between BEGIN and END)."""
    start, end = _span(readme)
    return readme[start:end].strip("\n")


def with_table(readme: str, table: str) -> str:
    """The README with its generated block replaced by table."""
    start, end = _span(readme)
    return f"{readme[:start]}\n{table}\n{readme[end:]}"


def main() -> None:
    import json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=DEFAULT)
    ap.add_argument("--readme", type=Path, help="write the table into this README's generated block")
    a = ap.parse_args()
    table = markdown(json.loads(a.results.read_text()))
    if a.readme:
        a.readme.write_text(with_table(a.readme.read_text(), table))
    print(table)


if __name__ == "__main__":
    main()
