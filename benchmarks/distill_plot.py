"""Held-out accuracy vs training time of distillation runs side by side (one line per results file of
benchmarks/distill_addition.py, the teacher's accuracy and 90% of it as horizontal lines).

    .venv/bin/python benchmarks/distill_plot.py OUT.png RESULT.json [RESULT.json ...]"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _label(r: dict[str, Any]) -> str:
    mode = "SFT on the dataset's answers (control)" if r["mode"] == "sequence" and r["completions"] == "dataset" \
        else f"{r['mode']} KD on {r['completions']} completions"  # fmt: skip
    return f"{mode}, {r.get('layer_select', 'block')} layers"


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    teacher = results[0]["teacher_accuracy"]
    ax.axhline(teacher, color="black", lw=1, label=f"teacher {teacher:.1%}")
    ax.axhline(0.9 * teacher, color="black", lw=1, ls="--", label="90% of the teacher")
    for r in results:
        pts = r["points"]
        ax.plot([p[1] / 60 for p in pts], [p[2] for p in pts], marker="o", label=_label(r))
    ax.set(xlabel="training minutes (evaluation excluded; 2 cores)", ylabel="held-out accuracy (last_integer)",
           title=f"11-layer student of the GRPO teacher, {results[0]['held_out']} held-out 2-digit additions",
           ylim=(0, max(1.05 * teacher, *(p[2] for r in results for p in r["points"])) + 0.05))  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    out, *srcs = sys.argv[1:]
    plot([json.loads(Path(s).read_text()) for s in srcs], Path(out))
