"""Which stages a (re-)run skips, runs afresh or resumes, decided from the manifest alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.manifest import PlanError, load_manifest, plan, save_manifest

STAGES = [("sft", [], False), ("grpo", ["sft"], True), ("eval", ["grpo"], False)]
HASHES = {"sft": "h1", "grpo": "h2", "eval": "h3"}


def manifest(**status: str) -> dict[str, Any]:
    return {"stages": [{"name": n, "status": s, "config_hash": HASHES[n], "output": f"/out/{n}"}
                       for n, s in status.items()]}


def actions(m: dict[str, Any], *, missing: tuple[str, ...] = (), hashes: dict[str, str] | None = None,
            **flags: Any) -> list[str]:
    exists = lambda e: bool(e.get("output")) and e["name"] not in missing  # noqa: E731
    return [d.action for d in plan(STAGES, hashes or HASHES, m, exists=exists, **flags)]


def test_fresh_run_dir_runs_everything() -> None:
    assert actions({"stages": []}) == ["run", "run", "run"]


def test_finished_stages_with_the_same_config_are_skipped() -> None:
    assert actions(manifest(sft="done", grpo="done", eval="done")) == ["skip", "skip", "skip"]


def test_changed_config_reruns_the_stage_and_everything_reading_it() -> None:
    m = manifest(sft="done", grpo="done", eval="done")
    assert actions(m, hashes={**HASHES, "grpo": "changed"}) == ["skip", "run", "run"]


def test_missing_output_reruns_the_stage_and_its_readers() -> None:
    m = manifest(sft="done", grpo="done", eval="done")
    assert actions(m, missing=("sft",)) == ["run", "run", "run"]


def test_interrupted_stage_needs_resume_or_from() -> None:
    m = manifest(sft="done", grpo="running")
    with pytest.raises(PlanError, match="pass --resume to continue it, or --from grpo"):
        actions(m)
    assert actions(m, resume=True) == ["skip", "resume", "run"]
    assert actions(m, from_stage="grpo") == ["leave", "run", "run"]
    assert actions(m, from_stage="grpo", resume=True) == ["leave", "resume", "run"]


def test_failed_stage_that_cannot_resume_reruns_with_resume() -> None:
    m = manifest(sft="failed")
    assert actions(m, resume=True) == ["run", "run", "run"]


def test_interrupted_stage_with_a_changed_config_starts_afresh() -> None:
    m = manifest(sft="done", grpo="interrupted")
    assert actions(m, hashes={**HASHES, "grpo": "new"}) == ["skip", "run", "run"]


def test_only_runs_one_stage_whose_inputs_exist() -> None:
    m = manifest(sft="done", grpo="done", eval="done")
    assert actions(m, only="grpo") == ["leave", "run", "leave"]
    with pytest.raises(PlanError, match="reads @sft, which has no output"):
        actions({"stages": []}, only="grpo")


def test_from_reruns_the_rest() -> None:
    m = manifest(sft="done", grpo="done", eval="done")
    assert actions(m, from_stage="grpo") == ["leave", "run", "run"]
    with pytest.raises(PlanError, match="--from nope: no such stage"):
        actions(m, from_stage="nope")


def test_manifest_round_trip_and_corruption(tmp_path: Path) -> None:
    m = manifest(sft="done")
    save_manifest(tmp_path, m)
    assert load_manifest(tmp_path) == m
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(PlanError, match="not valid JSON"):
        load_manifest(tmp_path)
