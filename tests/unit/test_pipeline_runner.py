"""The stage loop with fake stage kinds (the real GRPO stage runs in tests/integration/test_pipeline.py): outputs
flow through @references, a re-run skips finished stages, a failing stage stops the pipeline with its error and
keeps earlier outputs, and the manifest records every stage."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pipeline import stages
from pipeline.config import load_pipeline
from pipeline.manifest import PlanError, load_manifest
from pipeline.runner import PipelineRun, StageFailed

calls: list[tuple[str, str | None, bool]] = []


def _fake_run(ctx: stages.StageContext) -> stages.StageResult:
    calls.append((ctx.name, ctx.input_model, ctx.resume))
    if ctx.table.get("fail"):
        raise RuntimeError(f"{ctx.name} broke")
    out = ctx.stage_dir / "model.txt"
    out.write_text(f"{ctx.name} from {ctx.input_model}")
    return stages.StageResult(str(out), {"accuracy": 0.25})


@pytest.fixture(autouse=True)
def fake_kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    calls.clear()
    fake = stages.StageKind("sft", "json", lambda table, where: table, _fake_run, resumable=True)
    monkeypatch.setitem(stages.KINDS, "sft", fake)


def pipeline(tmp_path: Path, fail_b: bool = False) -> PipelineRun:
    path = tmp_path / "p.toml"
    fail = str(fail_b).lower()
    path.write_text(f'run_dir = "{tmp_path / "run"}"\n'
                    '[[stages]]\nname = "a"\nkind = "sft"\nmodel = "base"\n'
                    f'[[stages]]\nname = "b"\nkind = "sft"\nmodel = "@previous"\nconfig = {{ fail = {fail} }}\n'
                    '[[stages]]\nname = "c"\nkind = "sft"\nmodel = "@a"\n')  # fmt: skip
    return PipelineRun(load_pipeline(path), str(path))


def test_outputs_flow_and_rerun_skips(tmp_path: Path) -> None:
    pipeline(tmp_path).execute()
    run = tmp_path / "run"
    assert calls == [("a", "base", False), ("b", str(run / "a" / "model.txt"), False),
                     ("c", str(run / "a" / "model.txt"), False)]  # fmt: skip
    m = load_manifest(run)
    assert [e["status"] for e in m["stages"]] == ["done"] * 3
    assert m["stages"][1]["input_model"] == str(run / "a" / "model.txt")
    assert all(e["git_commit"] and e["started_at"] and e["ended_at"] for e in m["stages"])
    assert (run / "report.html").is_file()
    calls.clear()
    decisions = pipeline(tmp_path).execute()
    assert calls == [] and [d.action for d in decisions] == ["skip"] * 3


def test_a_failed_stage_stops_the_pipeline_and_keeps_earlier_outputs(tmp_path: Path) -> None:
    with pytest.raises(StageFailed, match="stage b failed: RuntimeError: b broke"):
        pipeline(tmp_path, fail_b=True).execute()
    run = tmp_path / "run"
    assert [c[0] for c in calls] == ["a", "b"]
    m = {e["name"]: e for e in json.loads((run / "manifest.json").read_text())["stages"]}
    assert m["a"]["status"] == "done" and (run / "a" / "model.txt").is_file()
    assert m["b"]["status"] == "failed" and m["b"]["error"] == "RuntimeError: b broke"
    assert m["c"]["status"] == "pending"
    assert "b broke" in (run / "report.html").read_text()
    with pytest.raises(PlanError, match="stage b is failed"):  # same config: continue (--resume) or restart it
        pipeline(tmp_path, fail_b=True).execute()


def test_fixed_stage_runs_afresh_and_resume_continues(tmp_path: Path) -> None:
    with pytest.raises(StageFailed):
        pipeline(tmp_path, fail_b=True).execute()
    calls.clear()
    decisions = pipeline(tmp_path).execute()  # b's config changed: it runs from scratch, a is kept
    assert [d.action for d in decisions] == ["skip", "run", "run"]
    assert [c[0] for c in calls] == ["b", "c"]


def test_resume_of_an_interrupted_stage(tmp_path: Path) -> None:
    run = pipeline(tmp_path)
    run.execute()
    m = load_manifest(tmp_path / "run")
    m["stages"][1]["status"] = "running"  # as kill -9 leaves it
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(m))
    calls.clear()
    with pytest.raises(PlanError, match="pass --resume"):
        pipeline(tmp_path).execute()
    m["stages"][1]["wall_s"] = 100.0  # what the heartbeat had recorded before the kill
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(m))
    decisions = pipeline(tmp_path).execute(resume=True)
    assert [d.action for d in decisions] == ["skip", "resume", "skip"]  # c reads @a, which was kept
    b = load_manifest(tmp_path / "run")["stages"][1]
    assert b["started_at"] == m["stages"][1]["started_at"] and len(b["resumed_at"]) == 1
    assert b["status"] == "done" and b["wall_s"] >= 100.0
    assert calls == [("b", str(tmp_path / "run" / "a" / "model.txt"), True)]
    assert calls[0] == ("b", str(tmp_path / "run" / "a" / "model.txt"), True)


def test_heartbeat_keeps_wall_time_current(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline import runner

    monkeypatch.setattr(runner, "HEARTBEAT_S", 0.05)
    seen: list[float] = []

    def slow(ctx: stages.StageContext) -> stages.StageResult:
        time.sleep(0.5)
        seen.append(load_manifest(tmp_path / "run")["stages"][0]["wall_s"])
        return _fake_run(ctx)

    monkeypatch.setitem(stages.KINDS, "sft", stages.StageKind("sft", "json", lambda t, w: t, slow))
    pipeline(tmp_path).execute()
    assert seen[0] > 0.1  # written by the heartbeat while the stage was still running


def test_only_and_from(tmp_path: Path) -> None:
    pipeline(tmp_path).execute()
    calls.clear()
    pipeline(tmp_path).execute(only="b")
    assert [c[0] for c in calls] == ["b"]
    calls.clear()
    pipeline(tmp_path).execute(from_stage="b")
    assert [c[0] for c in calls] == ["b", "c"]


def test_status_command_shows_the_manifest(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from rlvr.cli import app

    with pytest.raises(StageFailed):
        pipeline(tmp_path, fail_b=True).execute()
    out = CliRunner().invoke(app, ["pipeline", "status", str(tmp_path / "run")], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "done" in out.output and "failed" in out.output and "RuntimeError: b broke" in out.output
    assert "25.0%" in out.output
    missing = CliRunner().invoke(app, ["pipeline", "status", str(tmp_path)])
    assert missing.exit_code == 2
