"""The report's plots: each `Panel` names the metric keys it draws (regular expressions over the keys of one
record kind); a stage gets every panel for which its metrics hold at least one series, so a stage kind that
logs other metrics (SFT, distillation) gets the panels that fit and no empty ones. To add a plot, add a Panel."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

WALL = "elapsed_s"


@dataclass(frozen=True)
class Series:
    """Which keys of which record kind; `band` draws a matched mean key with its std key as a ± band."""

    kind: str
    pattern: str
    band: tuple[str, str] | None = None
    """(suffix of the mean key, suffix of its std key), e.g. ("_mean", "_std")."""


@dataclass(frozen=True)
class Panel:
    slug: str
    title: str
    series: tuple[Series, ...]
    x: str = "step"
    ylabel: str = ""
    style: Literal["line", "stack"] = "line"


# eval/accuracy is the strict scorer's (trainer/evaluate.py); reward means and pass rates are the training rewards'.
_ACC = r"eval/(.*accuracy|pass@\d+|(rewards/)?(reward_mean|pass_rate))"
# fmt: off
PANELS: tuple[Panel, ...] = (
    Panel("loss", "Loss", (Series("train", r"(.*/)?(\w+_)?loss"),)),
    Panel("reward", "Reward (mean ± std over the step's samples)", (
        Series("train", r"reward_mean", band=("_mean", "_std")),
        Series("train", r"reward/.+_mean", band=("_mean", "_std")),
    )),
    Panel("heldout_step", "Held-out accuracy vs step", (Series("eval", _ACC),), ylabel="fraction / reward"),
    Panel("heldout_time", "Held-out accuracy vs wall time", (Series("eval", _ACC),), x=WALL,
          ylabel="fraction / reward"),
    Panel("kl", "KL", (Series("train", r"(.*/)?(\w+_)?kl"),)),
    Panel("length", "Completion length (tokens)", (
        Series("train", r"completion/len_(mean|max)"), Series("eval", r"eval/(rewards/)?completion/len_mean"),
    )),
    Panel("staleness", "Staleness and dropped samples", (
        Series("train", r"staleness/(mean|max)"), Series("train", r"groups/dropped_samples"),
        Series("train", r"pipeline/(stale_samples|unscorable_groups|requeued_outage)"),
        Series("eval", r"eval/(grader_dropped_samples|scorer_no_verdict|rewards/no_verdict)"),
    )),
    Panel("status_train", "Grader status counts (training samples)", (Series("train", r"status/.+"),),
          style="stack"),
    Panel("status_eval", "Grader status counts (held-out)", (Series("eval", r"eval/(rewards/)?status/.+"),),
          style="stack"),
    Panel("throughput", "Tokens/s (training and generation)", (Series("train", r"(.*/)?tokens_per_s"),)),
)
# fmt: on


@dataclass
class Line:
    label: str
    xs: list[float]
    ys: list[float]
    std: list[float] = field(default_factory=list)


def _num(v: Any) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else math.nan


def _keys(records: Sequence[dict[str, Any]], pattern: str) -> list[str]:
    rx = re.compile(pattern)
    seen: dict[str, None] = {}
    for r in records:
        for k, v in r.items():
            if rx.fullmatch(k) and isinstance(v, int | float | None) and not isinstance(v, bool):
                seen[k] = None
    return sorted(seen)


def _zero_nan(y: float) -> float:
    return 0.0 if math.isnan(y) else y


def panel_lines(panel: Panel, records: Sequence[dict[str, Any]]) -> list[Line]:
    """The series of a panel found in `records` (empty: the panel does not apply to this stage)."""
    lines: list[Line] = []
    for s in panel.series:
        recs = [r for r in records if r.get("kind") == s.kind and panel.x in r]
        for key in _keys(recs, s.pattern):
            std_key = key[: -len(s.band[0])] + s.band[1] if s.band and key.endswith(s.band[0]) else None
            rows = [r for r in recs if key in r]
            line = Line(f"{s.kind}: {key}", [_num(r[panel.x]) for r in rows], [_num(r[key]) for r in rows])
            if std_key is not None:
                line.std = [_num(r.get(std_key)) for r in rows]
            if any(math.isfinite(y) for y in line.ys):
                lines.append(line)
    return lines


def draw(panel: Panel, lines: Sequence[Line], path: Path) -> None:
    """One PNG per panel (matplotlib's object API with the Agg canvas: no pyplot global state)."""
    fig = Figure(figsize=(6.4, 3.4), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    if panel.style == "stack":
        # A status absent from a record had no samples there: counts are 0, on the union of the steps.
        xs = sorted({x for line in lines for x in line.xs})
        ys = [[_zero_nan(dict(zip(line.xs, line.ys, strict=True)).get(x, 0.0)) for x in xs] for line in lines]
        if len(xs) == 1:  # one evaluation so far: an area of zero width would show nothing
            bottom = 0.0
            for line, y in zip(lines, ys, strict=True):
                ax.bar(xs, y, bottom=bottom, label=line.label, alpha=0.8, width=0.6)
                bottom += y[0]
        else:
            ax.stackplot(xs, ys, labels=[line.label for line in lines], alpha=0.8)
    else:
        for line in lines:
            marker = "o" if len(line.xs) < 30 else None
            ax.plot(line.xs, line.ys, label=line.label, marker=marker, markersize=3)
            if line.std:
                lo = [y - s for y, s in zip(line.ys, line.std, strict=True)]
                hi = [y + s for y, s in zip(line.ys, line.std, strict=True)]
                ax.fill_between(line.xs, lo, hi, alpha=0.2)
    ax.set_title(panel.title, fontsize=10)
    ax.set_xlabel("wall time (s)" if panel.x == WALL else panel.x)
    if panel.x == "step":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if panel.ylabel:
        ax.set_ylabel(panel.ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")


def draw_bars(title: str, groups: dict[str, dict[str, float]], path: Path) -> None:
    """Grouped bars: one group per model, one bar per metric (an eval stage's accuracy and pass@k)."""
    fig = Figure(figsize=(6.4, 3.4), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    metrics = list(dict.fromkeys(k for g in groups.values() for k in g))
    width = 0.8 / max(len(metrics), 1)
    for j, metric in enumerate(metrics):
        xs = [i + j * width for i in range(len(groups))]
        ax.bar(xs, [_zero_nan(g.get(metric, math.nan)) for g in groups.values()], width=width, label=metric)
    ax.set_xticks([i + width * (len(metrics) - 1) / 2 for i in range(len(groups))], list(groups))
    ax.set_ylim(0, 1.05)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, loc="best")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
