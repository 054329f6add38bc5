"""Per-step metrics, the metrics.jsonl / tasks.jsonl contract, TensorBoard output and resume truncation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rollout.types import Sample
from trainer.data import Task
from trainer.metrics import RunLog, batch_metrics, read_records, sample_metrics, truncate_history
from trainer.pipeline import Group, ScoredSample
from trainer.rewards import RewardOutcome, RewardSpec

SPECS = [RewardSpec(grader="math", name="correct"), RewardSpec(grader="regex", name="format", weight=0.5)]


def scored(correct: float, fmt: float, version: int, length: int = 3, finish: str = "stop") -> ScoredSample:
    s = Sample("t", 0, 0, [1, 2], list(range(length)), "x", [-1.0] * length, finish, version)  # type: ignore[arg-type]
    statuses = {"correct": "passed" if correct else "failed", "format": "passed" if fmt else "failed"}
    outcome = RewardOutcome(reward=correct + 0.5 * fmt, per_grader={"correct": correct, "format": fmt},
                            statuses=statuses)  # fmt: skip
    return ScoredSample(s, outcome)


def test_sample_metrics() -> None:
    samples = [scored(1, 1, 0), scored(0, 1, 0, length=5, finish="length"), scored(0, 0, 0), scored(1, 0, 0)]
    m = sample_metrics(samples, SPECS)
    assert m["reward_mean"] == pytest.approx((1.5 + 0.5 + 0 + 1) / 4)
    assert m["pass_rate"] == 0.25  # every grader must pass
    assert m["reward/correct_mean"] == 0.5 and m["reward/format_mean"] == 0.5
    assert m["status/correct/passed"] == 2 and m["status/format/failed"] == 2
    assert m["completion/len_max"] == 5 and m["completion/truncated_frac"] == 0.25
    assert sample_metrics(samples, SPECS, prefix="eval/")["eval/pass_rate"] == 0.25


def test_batch_metrics_staleness_and_variance() -> None:
    task = Task("t", [{"role": "user", "content": "q"}])
    groups = [
        Group(task, 2, [scored(1, 1, 3), scored(0, 1, 2)]),
        Group(task, 3, [scored(1, 1, 3), scored(1, 1, 3)], dropped=1),
    ]
    m = batch_metrics(groups, SPECS, version=3)
    assert m["staleness/max"] == 1 and m["staleness/mean"] == 0.25
    assert m["groups/zero_variance_frac"] == 0.5 and m["groups/dropped_samples"] == 1


def test_runlog_files_and_truncation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = RunLog(tmp_path, total_steps=3, start_step=0, elapsed_offset=10.0, tensorboard=True, progress="plain")
    task = Task("t1", [{"role": "user", "content": "q"}])
    log.write("eval", 0, {"eval/reward_mean": 0.2, "eval/pass_rate": 0.1})
    for step in (1, 2, 3):
        log.write_tasks(step, [Group(task, 2, [scored(1, 1, step - 1), scored(0, 0, step - 1)])], step - 1)
        log.write("train", step, {"reward_mean": 0.5, "time/step_s": 1.0, "weird": float("nan")})
    log.close()
    recs = read_records(tmp_path / "metrics.jsonl")
    assert [(r["kind"], r["step"]) for r in recs] == [("eval", 0), ("train", 1), ("train", 2), ("train", 3)]
    assert all(r["elapsed_s"] >= 10.0 for r in recs)  # continues the resumed run's clock
    assert recs[0]["eval/pass_rate"] == 0.1 and recs[1]["weird"] is None  # strict JSON, no NaN
    tasks = read_records(tmp_path / "tasks.jsonl")
    assert tasks[0] == {"step": 1, "task_ids": ["t1"], "versions": [[0]], "trained_on": 0}
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    err = capsys.readouterr().err
    assert "step 3/3" in err and "[eval] step 0" in err
    # A resumed run from the step-1 checkpoint drops what came after (and a line cut by kill -9).
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write('{"kind": "train", "st')
    truncate_history(tmp_path, 1)
    assert [r["step"] for r in read_records(tmp_path / "metrics.jsonl")] == [0, 1]
    assert [r["step"] for r in read_records(tmp_path / "tasks.jsonl")] == [1]
    json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])


def test_training_clock_excludes_evaluation(tmp_path: Path) -> None:
    """training_s (what train.max_time_s reads) = elapsed minus evaluation time, resumed offsets included."""
    log = RunLog(tmp_path, total_steps=2, start_step=0, elapsed_offset=100.0, tensorboard=False, progress="off",
                 eval_offset=30.0)  # fmt: skip
    rec = log.write("eval", 0, {"eval/pass_rate": 0.5, "time/eval_s": 20.0})
    assert log.eval_s == 50.0
    assert rec["elapsed_s"] >= 100.0 and abs(rec["elapsed_s"] - rec["training_s"] - 50.0) < 1e-2
    rec = log.write("train", 1, {"reward_mean": 0.5})
    assert abs(rec["elapsed_s"] - rec["training_s"] - 50.0) < 1e-2
    log.close()


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_eta_ends_where_the_run_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """10 s per step with 10,000 steps left is ~28 h, but a 600 s train.max_time_s ends the run in 590 s: the ETA
    and the bar follow whichever ends it first (resumed training time counts against the budget)."""
    clock = _Clock()
    monkeypatch.setattr("trainer.metrics.time.monotonic", clock)
    for d in "abc":
        (tmp_path / d).mkdir()
    budget = RunLog(tmp_path / "a", total_steps=10_001, start_step=0, elapsed_offset=0.0, tensorboard=False,
                    progress="plain", max_time_s=600.0)  # fmt: skip
    steps = RunLog(tmp_path / "b", total_steps=10_001, start_step=0, elapsed_offset=0.0, tensorboard=False,
                   progress="off")  # fmt: skip
    resumed = RunLog(tmp_path / "c", total_steps=20, start_step=10, elapsed_offset=500.0, tensorboard=False,
                     progress="off", max_time_s=600.0)  # fmt: skip
    for log in (budget, steps, resumed):
        log.restart_clock()
    clock.now += 10.0
    assert budget.eta_s(1) == pytest.approx(590.0)
    assert budget.fraction_done(1) == pytest.approx(10 / 600)
    assert steps.eta_s(1) == pytest.approx(100_000.0)
    assert steps.fraction_done(1) == pytest.approx(1 / 10_001)
    assert resumed.eta_s(11) == pytest.approx(90.0)  # 9 steps × 10 s, or 600 - 510 s of budget: both 90
    budget.write("train", 1, {"reward_mean": 0.5, "time/step_s": 10.0})
    assert "eta 0:09:50" in capsys.readouterr().err
    for log in (budget, steps, resumed):
        log.close()
