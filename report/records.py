"""What a report reads from a run dir: the stages (a pipeline's manifest, or the run dir as its only stage) and
each stage's metrics records, read so that a run still writing (or killed mid-line) is no error."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"
MANIFEST_FILE = "manifest.json"


@dataclass
class StageView:
    """One stage as the report shows it."""

    name: str
    kind: str
    dir: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    entry: dict[str, Any] = field(default_factory=dict)
    """The stage's manifest entry (empty for a lone run dir)."""

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("kind") == kind]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Complete JSON-object lines of a file; a line being written (or cut by kill -9) is left out."""
    if not path.is_file():
        return []
    out: list[dict[str, Any]] = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def read_manifest(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None  # being replaced right now; the caller shows what the stage dirs hold
    return data if isinstance(data, dict) else None


def _guess_kind(stage_dir: Path) -> str:
    cfg = stage_dir / "config.json"
    if cfg.is_file():
        try:
            data = json.loads(cfg.read_text())
        except json.JSONDecodeError:
            return "run"
        if isinstance(data, dict) and "sampling" in data and "rewards" in data:
            return "grpo"
    return "run"


def load_stages(run_dir: Path) -> tuple[list[StageView], dict[str, Any] | None]:
    """(stages in order, the pipeline manifest or None for a single stage's run dir)."""
    manifest = read_manifest(run_dir)
    if manifest is None:
        view = StageView(run_dir.name, _guess_kind(run_dir), run_dir, read_jsonl(run_dir / METRICS_FILE))
        return [view], None
    stages = []
    for entry in manifest.get("stages", []):
        stage_dir = run_dir / str(entry.get("dir", entry.get("name", "")))
        metrics = stage_dir / METRICS_FILE
        stages.append(StageView(str(entry.get("name")), str(entry.get("kind", "?")), stage_dir,
                                read_jsonl(metrics), entry))  # fmt: skip
    return stages, manifest
