"""Held-out accuracy vs training step of distillation runs side by side (one line per results file of
benchmarks/distill_addition.py, its training minutes in the legend; the teacher's accuracy and 90% of it as
horizontal lines). Steps on the x axis by default: the runs compared see the same batches of 16 problems per step,
and step is what every results file records; benchmarks/distill_modes.py plots its rows against minutes.

    .venv/bin/python benchmarks/distill_plot.py OUT.png RESULT.json [RESULT.json ...] [--minutes]
    (distill_addition_modes.png: --minutes with the on_policy, sequence, logits and control files)"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _label(r: dict[str, Any], by: str) -> str:
    mode = "SFT on the dataset's answers (control)" if r["mode"] == "sequence" and r["completions"] == "dataset" \
        else "on_policy KD on the student's samples" if r["mode"] == "on_policy" \
        else f"{r['mode']} KD on {r['completions']} completions"  # fmt: skip
    if r.get("stage") not in (None, r["mode"], "control"):  # several runs of one mode: name the stage (the seed)
        mode = f"{r['stage']}, {mode}"
    if by == "minutes":
        return f"{mode}: {r['wall_s'] / 60:.1f} min stage wall"
    return f"{mode}: {r['training_s'] / 60:.1f} min of training"


def _points(r: dict[str, Any], by: str) -> list[tuple[float, float]]:
    if by == "minutes":  # benchmarks/distill_modes.py's files: seconds since the training loop began, per eval
        return sorted((r["elapsed_s_by_step"][k] / 60, v) for k, v in r["accuracy_by_step"].items())
    return sorted((int(k), v) for k, v in r["accuracy_by_step"].items())


def plot(results: list[dict[str, Any]], path: Path, by: str = "step") -> None:
    """by = "step" (batches of 16 problems) or "minutes" (of the training loop, with a line at the 30-minute
    budget)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    teacher = results[0]["teacher_accuracy"]
    ax.axhline(teacher, color="black", lw=1, label=f"teacher {teacher:.1%}")
    ax.axhline(0.9 * teacher, color="black", lw=1, ls="--", label="90% of the teacher")
    for r in results:
        pts = _points(r, by)
        ax.plot([x for x, _ in pts], [v for _, v in pts], marker="o", label=_label(r, by))
    if by == "minutes":
        ax.axvline(30, color="grey", lw=1, ls=":")
    xlabel = "minutes of the training loop (evaluations in; start-up, teacher samples out; 2 cores)" \
        if by == "minutes" else "step (16 problems each; 2 cores)"  # fmt: skip
    top = max(v for r in results for v in r["accuracy_by_step"].values())
    ax.set(xlabel=xlabel, ylabel="held-out accuracy (strict scorer)",
           title=f"11-layer students of the GRPO teacher, {results[0]['held_out']} held-out problems",
           ylim=(0, max(1.05 * teacher, top) + 0.05))  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    args = sys.argv[1:]
    by = "minutes" if "--minutes" in args else "step"
    out, *srcs = [a for a in args if a != "--minutes"]
    plot([json.loads(Path(s).read_text()) for s in srcs], Path(out), by)
