"""`report.html` from a run dir: the pipeline table, each stage's plots (report/plots.py) and a sample table of
held-out answers, through the Jinja2 template report/templates/report.html.j2. The PNGs are written beside the
report (`report_files/`) and inlined as data URIs, so the HTML alone is the whole report (no network)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from report.plots import PANELS, draw, draw_bars, panel_lines
from report.records import StageView, load_stages, read_jsonl

REPORT_FILE = "report.html"
PNG_DIR = "report_files"
ITEM_FILES = ("eval_samples.jsonl", "*/eval_samples.jsonl", "*/*/eval_samples.jsonl", "*items.jsonl", "*/*items.jsonl")
"""Per-prompt evaluation rows ({"task_id" | "id", "prompt", "completion", "verdict" | "status", ...}: the
evaluator's eval_samples.jsonl) looked for in each stage dir and up to two levels below it."""
ACCURACY_KEYS = ("eval/accuracy", "eval/strict_accuracy", "accuracy", "eval/pass_rate")
MAX_SAMPLES = 8


@dataclass
class Plot:
    title: str
    file: str
    data_uri: str


@dataclass
class StageSection:
    name: str
    kind: str
    status: str
    plots: list[Plot] = field(default_factory=list)
    note: str = ""
    progress: str = ""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def _fmt_s(seconds: Any) -> str:
    if not isinstance(seconds, int | float) or not math.isfinite(seconds):
        return "–"
    m, s = divmod(round(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def _fmt_bytes(n: Any) -> str:
    if not isinstance(n, int | float) or n <= 0:
        return "–"
    return f"{n / 2**20:.1f} MiB"


def _total_steps(stage: StageView) -> int | None:
    cfg = stage.dir / "config.json"
    try:
        steps = json.loads(cfg.read_text()).get("train", {}).get("steps")
    except (OSError, ValueError, AttributeError):
        return None
    return steps if isinstance(steps, int) else None


def progress(stage: StageView) -> str:
    """Where a stage's training is: step N of M, wall time, a linear ETA while it runs, the last accuracy."""
    train = stage.of_kind("train")
    if not train:
        return ""
    last, total = train[-1], _total_steps(stage)
    step, elapsed = int(last.get("step", 0)), float(last.get("elapsed_s") or 0.0)
    text = f"step {step}" + (f" of {total}" if total else "") + f", {_fmt_s(elapsed)} wall time"
    if total and step < total and step > 0 and stage.entry.get("status") != "done":
        text += f", about {_fmt_s(elapsed / step * (total - step))} to go"
    acc = last_accuracy(stage)
    return text + ("" if acc is None else f"; last held-out accuracy {acc:.1%}")


def last_accuracy(stage: StageView) -> float | None:
    """The stage's held-out accuracy: its result in the manifest, else its last eval record."""
    result = stage.entry.get("result") or {}
    if isinstance(result.get("accuracy"), int | float):
        return float(result["accuracy"])
    for rec in reversed(stage.of_kind("eval")):
        for key in ACCURACY_KEYS:
            if isinstance(rec.get(key), int | float):
                return float(rec[key])
    return None


def _plot(title: str, out_dir: Path, rel: str) -> Plot:
    return Plot(title, rel, "data:image/png;base64," + base64.b64encode((out_dir / rel).read_bytes()).decode())


def _stage_plots(stage: StageView, out_dir: Path) -> list[Plot]:
    plots = []
    for panel in PANELS:
        lines = panel_lines(panel, stage.records)
        if not lines:
            continue
        rel = f"{PNG_DIR}/{_slug(stage.name)}-{panel.slug}.png"
        draw(panel, lines, out_dir / rel)
        plots.append(_plot(panel.title, out_dir, rel))
    models = (stage.entry.get("result") or {}).get("models") or {}
    if stage.kind == "eval" and models:
        groups = {str(m.get("label", path)): {k: float(v) for k, v in m.items() if k == "accuracy" or
                                              k.startswith("pass@")} for path, m in models.items()}  # fmt: skip
        rel = f"{PNG_DIR}/{_slug(stage.name)}-models.png"
        draw_bars("Held-out accuracy (greedy, strict scorer) and pass@k by model", groups, out_dir / rel)
        plots.append(_plot("Held-out accuracy by model", out_dir, rel))
    return plots


def exam_results(stages: list[StageView]) -> dict[str, dict[str, Any]]:
    """{model path: metrics} from the eval stages' results (the shared held-out exam)."""
    out: dict[str, dict[str, Any]] = {}
    for s in stages:
        models = (s.entry.get("result") or {}).get("models") or {}
        out.update({str(k): v for k, v in models.items() if isinstance(v, dict)})
    return out


def _row(stage: str, kind: str, entry: dict[str, Any], acc: float | None, result: dict[str, Any]) -> dict[str, str]:
    speed = result.get("tokens_per_s")
    return {
        "stage": stage, "kind": kind, "status": str(entry.get("status", "?")),
        "input": str(entry.get("input_model") or "–"), "output": str(entry.get("output") or "–"),
        "accuracy": "–" if acc is None or acc != acc else f"{acc:.1%}",
        "size": _fmt_bytes(result.get("size_bytes")),
        "speed": f"{speed:.1f} tok/s" if isinstance(speed, int | float) else "–",
        "wall": _fmt_s(entry.get("wall_s")), "error": str(entry.get("error") or ""),
    }  # fmt: skip


def pipeline_rows(stages: list[StageView]) -> list[dict[str, str]]:
    """One row per stage for the pipeline table (report and `rlvr pipeline status`). A model an eval stage
    examined shows that exam's accuracy (the same tasks for every model); models the eval stage read that no
    stage produced (e.g. the base model) get a row of their own first."""
    exam = exam_results(stages)
    outputs = {str(s.entry.get("output")) for s in stages if s.entry.get("output")}
    rows = [_row(f"{m.get('label', path)} (input)", "model", {"status": "–", "output": path}, m.get("accuracy"), {})
            for path, m in exam.items() if path not in outputs]  # fmt: skip
    for s in stages:
        result = s.entry.get("result") or {}
        examined = exam.get(str(s.entry.get("output")))
        acc = examined.get("accuracy") if examined else None if s.kind == "eval" else last_accuracy(s)
        rows.append(_row(s.name, s.kind, s.entry, acc, result))
    return rows


def _verdict(rec: dict[str, Any]) -> str:
    for key in ("verdict", "status"):
        if isinstance(rec.get(key), str):
            return rec[key]
    if isinstance(rec.get("passed"), bool):
        return "passed" if rec["passed"] else "failed"
    return "?"


def _final_rows(path: Path) -> list[dict[str, Any]]:
    """A file's rows with a completion; of a file appended at every evaluation, the last evaluation's."""
    rows = [r for r in read_jsonl(path) if "completion" in r]
    steps = [r["step"] for r in rows if isinstance(r.get("step"), int)]
    return [r for r in rows if r.get("step") == max(steps)] if steps else rows


def sample_table(stages: list[StageView], limit: int = MAX_SAMPLES) -> tuple[list[str], list[dict[str, Any]]]:
    """(model columns, rows): the first `limit` held-out prompts with each evaluated model's answer and verdict,
    from the evaluator's per-item JSONL files (one column per file; an eval stage's files when there is one,
    else each training stage's last held-out evaluation)."""
    columns: list[str] = []
    by_prompt: dict[str, dict[str, Any]] = {}
    # An eval stage examines every model on the same tasks: when there is one, its rows are the table.
    exams = [s for s in stages if s.kind == "eval" and any(s.dir.glob(ITEM_FILES[1]))]
    for s in exams or stages:
        order = [str(m.get("label")) for m in ((s.entry.get("result") or {}).get("models") or {}).values()]
        files = sorted({p for pattern in ITEM_FILES for p in s.dir.glob(pattern)},
                       key=lambda p: (order.index(p.parent.name) if p.parent.name in order else len(order), str(p)))
        for path in files:
            rel = path.parent.relative_to(s.dir)
            col = s.name if rel == Path(".") else f"{s.name}/{rel}"
            items = _final_rows(path)
            if not items or col in columns:
                continue
            columns.append(col)
            for rec in items:
                key = str(rec.get("task_id", rec.get("id", rec.get("prompt", ""))))
                row = by_prompt.setdefault(key, {"id": key, "prompt": _prompt_text(rec), "cells": {}})
                row["cells"][col] = {"answer": str(rec["completion"]), "verdict": _verdict(rec)}
    return columns, list(by_prompt.values())[:limit]


def _prompt_text(rec: dict[str, Any]) -> str:
    prompt = rec.get("prompt", "")
    if isinstance(prompt, list):  # chat messages: show the last user turn
        users = [m.get("content", "") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        return str(users[-1] if users else prompt)
    return str(prompt)


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("report", "templates"), autoescape=True, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )  # fmt: skip


def render_report(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write `report.html` and its PNGs into `out_dir` (default: the run dir); returns the HTML path. Reads only
    complete records, so it can run while the run is still writing."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run directory")
    out = Path(out_dir) if out_dir is not None else run_dir
    out.mkdir(parents=True, exist_ok=True)
    stages, manifest = load_stages(run_dir)
    sections = []
    for s in stages:
        plots = _stage_plots(s, out)
        note = "" if plots else "no metrics recorded yet" if not s.records else "no plottable metrics"
        sections.append(StageSection(s.name, s.kind, str(s.entry.get("status", "")), plots, note, progress(s)))
    columns, samples = sample_table(stages)
    html = _environment().get_template("report.html.j2").render(
        title=(manifest or {}).get("name") or run_dir.name, run_dir=str(run_dir.resolve()),
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"), manifest=manifest,
        pipeline_rows=pipeline_rows(stages) if manifest is not None else [], sections=sections,
        sample_columns=columns, samples=samples,
    )  # fmt: skip
    path = out / REPORT_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(html)
    tmp.replace(path)  # a reader (or browser) never sees half a report
    return path
