"""Held-out accuracy vs training step of distillation runs side by side (one line per results file of
benchmarks/distill_addition.py, its training minutes in the legend; the teacher's accuracy and 90% of it as
horizontal lines). Steps, not minutes, on the x axis: the runs compared see the same batches of 16 problems per
step, and step is what every results file records (`points` with times only since the control's run).

    .venv/bin/python benchmarks/distill_plot.py OUT.png RESULT.json [RESULT.json ...]"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _label(r: dict[str, Any]) -> str:
    mode = "SFT on the dataset's answers (control)" if r["mode"] == "sequence" and r["completions"] == "dataset" \
        else f"{r['mode']} KD on {r['completions']} completions"  # fmt: skip
    return f"{mode}: {r['training_s'] / 60:.1f} min of training"


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    teacher = results[0]["teacher_accuracy"]
    ax.axhline(teacher, color="black", lw=1, label=f"teacher {teacher:.1%}")
    ax.axhline(0.9 * teacher, color="black", lw=1, ls="--", label="90% of the teacher")
    for r in results:
        by_step = sorted((int(k), v) for k, v in r["accuracy_by_step"].items())
        ax.plot([k for k, _ in by_step], [v for _, v in by_step], marker="o", label=_label(r))
    top = max(v for r in results for v in r["accuracy_by_step"].values())
    ax.set(xlabel="step (16 problems each; 2 cores)", ylabel="held-out accuracy (last_integer)",
           title=f"11-layer student of the GRPO teacher, {results[0]['held_out']} held-out 2-digit additions",
           ylim=(0, max(1.05 * teacher, top) + 0.05))  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    out, *srcs = sys.argv[1:]
    plot([json.loads(Path(s).read_text()) for s in srcs], Path(out))
