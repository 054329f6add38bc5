"""Accuracy vs wall time of every run of the GRPO race (one panel per task, one line per run), from the
results JSON of benchmarks/grpo.py. `python benchmarks/grpo_plot.py RESULTS.json` writes RESULTS.png."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from grpo_table import markdown, seed_count

COLORS = {"trl": "tab:blue", "trl_vllm": "tab:purple", "rlvr": "tab:red", "rlvr_sync": "tab:orange"}


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(results["tasks"].values())
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for side, runs in task["runs"].items():
            for i, run in enumerate(runs):
                pts = [[0.0, 0, task["base_acc"]], *run["points"]]
                ax.plot([p[0] for p in pts], [p[2] for p in pts], marker=".", color=COLORS.get(side, "gray"),
                        alpha=0.8, label=side if i == 0 else None)  # fmt: skip
        ax.set(title=f"{task['name']} (scorer {task['scorer']})", xlabel="wall seconds since the command started",
               ylabel="held-out accuracy", xlim=(0, results["budget_s"]), ylim=(0, 1))  # fmt: skip
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"GRPO race, {seed_count(results)} seed(s) per side, every run shown")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def publish(results: dict[str, Any], out: Path) -> None:
    """The race's outputs: the JSON, its plot beside it, and the README's table on stdout."""
    out.write_text(json.dumps(results, indent=1))
    plot(results, out.with_suffix(".png"))
    print(markdown(results))
    print(f"\nresults: {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    src = Path(sys.argv[1])
    plot(json.loads(src.read_text()), src.with_suffix(".png"))
