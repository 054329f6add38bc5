"""What a training run (GRPO, distillation) reports: per-step and eval metrics to `<run_dir>/metrics.jsonl` and
TensorBoard, the prompt ids each step trained on to `<run_dir>/tasks.jsonl`, and progress on the terminal.

metrics.jsonl: one JSON object per line, `{"kind": "train"|"eval", "step": int, "elapsed_s": float, ...}`
where elapsed_s is wall time since training started (set-up excluded; it continues across resumes) and
training_s is elapsed_s without the held-out evaluations (the clock train.max_time_s reads). Eval
records carry `eval/accuracy` (by the independent scorer, trainer/evaluate.py) and the training rewards'
`eval/rewards/*`; eval_samples.jsonl holds every held-out answer with its verdict. On resume, records after
the checkpoint's step are removed first, so the files always describe one consistent history."""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from trainer.pipeline import Group, ScoredSample
from trainer.rewards import RewardSpec

log = logging.getLogger(__name__)
METRICS_FILE = "metrics.jsonl"
TASKS_FILE = "tasks.jsonl"
EVAL_FILE = "eval_samples.jsonl"


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def _std(xs: Sequence[float]) -> float:
    if len(xs) < 2:
        return 0.0
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def passed(s: ScoredSample) -> bool:
    """A sample passes when every grader says PASSED."""
    return bool(s.outcome.statuses) and all(v == "passed" for v in s.outcome.statuses.values())


def sample_metrics(samples: Sequence[ScoredSample], specs: Sequence[RewardSpec], prefix: str = "") -> dict[str, float]:
    """Reward mean/std overall and per grader, pass rate, status counts and completion lengths."""
    rewards = [s.reward for s in samples]
    out: dict[str, float] = {
        f"{prefix}reward_mean": _mean(rewards),
        f"{prefix}reward_std": _std(rewards),
        f"{prefix}pass_rate": _mean([float(passed(s)) for s in samples]),
        f"{prefix}samples": float(len(samples)),
    }
    for spec in specs:
        vals = [s.outcome.per_grader[spec.key] for s in samples if spec.key in s.outcome.per_grader]
        out[f"{prefix}reward/{spec.key}_mean"] = _mean(vals)
        out[f"{prefix}reward/{spec.key}_std"] = _std(vals)
        statuses = Counter(s.outcome.statuses.get(spec.key, "missing") for s in samples)
        for status, n in sorted(statuses.items()):
            out[f"{prefix}status/{spec.key}/{status}"] = float(n)
    lengths = [len(s.sample.token_ids) for s in samples]
    out[f"{prefix}completion/len_mean"] = _mean(lengths)
    out[f"{prefix}completion/len_max"] = float(max(lengths, default=0))
    out[f"{prefix}completion/truncated_frac"] = _mean([float(s.sample.finish_reason == "length") for s in samples])
    return out


def batch_metrics(groups: Sequence[Group], specs: Sequence[RewardSpec], version: int) -> dict[str, float]:
    """Per-step metrics of the groups the trainer used at `version`."""
    samples = [s for g in groups for s in g.samples]
    out = sample_metrics(samples, specs)
    staleness = [version - s.sample.policy_version for s in samples]
    out["staleness/mean"] = _mean(staleness)
    out["staleness/max"] = float(max(staleness, default=0))
    out["groups/zero_variance_frac"] = _mean([float(_std([s.reward for s in g.samples]) == 0.0) for g in groups])
    out["groups/dropped_samples"] = float(sum(g.dropped for g in groups))
    return out


class RunLog:
    """Writes metrics.jsonl, tasks.jsonl and TensorBoard events; shows progress."""

    def __init__(
        self, run_dir: Path, *, total_steps: int, start_step: int, elapsed_offset: float, tensorboard: bool,
        progress: str, eval_offset: float = 0.0, max_time_s: float | None = None, label: str = "GRPO",
        summary: Callable[[Mapping[str, float]], str] | None = None, show: bool = True,
    ) -> None:  # fmt: skip
        self.run_dir = run_dir
        self.total_steps = total_steps
        self.max_time_s = max_time_s
        self.start_step = start_step
        self.elapsed_offset = elapsed_offset
        self.eval_s = eval_offset
        """Seconds spent in held-out evaluation so far (elapsed_s minus this = training time)."""
        self.t0 = time.monotonic()
        self._training0 = self.training_s  # training time before this process's first step (resumed runs)
        self.metrics_path = run_dir / METRICS_FILE
        self.tasks_path = run_dir / TASKS_FILE
        self._metrics = self.metrics_path.open("a")
        self._tasks = self.tasks_path.open("a")
        self._tb: Any = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(run_dir / "tensorboard"))
        mode = progress
        if mode == "auto":
            mode = "rich" if sys.stderr.isatty() else "plain"
        self._summary = summary
        """Progress text of a train record (None: GRPO's reward / pass rate / length line)."""
        self._progress = _RichProgress(total_steps, start_step, self, label, summary) if mode == "rich" else None
        self._plain = mode == "plain"
        self.last_eval: dict[str, float] = {}
        self.show = show
        """False: only write files (a stage with its own progress display, e.g. SFT under TRL)."""

    def restart_clock(self) -> None:
        """Training starts now (set-up is over)."""
        self.t0 = time.monotonic()
        self._training0 = self.training_s

    def fraction_done(self, step: int) -> float:
        """How far the run is: by steps, or by the time budget if that is further along."""
        frac = step / max(self.total_steps, 1)
        if self.max_time_s is not None:
            frac = max(frac, self.training_s / self.max_time_s)
        return min(1.0, frac)

    def eta_s(self, step: int) -> float:
        """Seconds of training left: the remaining steps at this process's pace so far, or what is left of the
        time budget (train.max_time_s) if that ends the run first."""
        spent = self.training_s - self._training0
        done = step - self.start_step
        by_steps = spent / done * (self.total_steps - step) if done > 0 else math.inf
        if self.max_time_s is None:
            return by_steps
        return max(0.0, min(by_steps, self.max_time_s - self.training_s))

    @property
    def elapsed_s(self) -> float:
        return self.elapsed_offset + time.monotonic() - self.t0

    @property
    def training_s(self) -> float:
        return self.elapsed_s - self.eval_s

    def write(self, kind: str, step: int, metrics: Mapping[str, float]) -> dict[str, Any]:
        if kind == "eval":
            self.eval_s += float(metrics.get("time/eval_s", 0.0))
        record: dict[str, Any] = {"kind": kind, "step": step, "elapsed_s": round(self.elapsed_s, 3),
                                  "training_s": round(self.training_s, 3)}
        record.update({k: _jsonable(v) for k, v in metrics.items()})
        self._metrics.write(json.dumps(record) + "\n")
        self._metrics.flush()
        if self._tb is not None:
            for k, v in metrics.items():
                if isinstance(v, int | float) and math.isfinite(v):
                    self._tb.add_scalar(k if "/" in k else f"{kind}/{k}", v, step)
            self._tb.flush()
        if kind == "eval":
            self.last_eval = dict(metrics)
        if self.show:
            self._show(kind, step, metrics)
        return record

    def write_tasks(self, step: int, groups: Sequence[Group], trained_on: int) -> None:
        """The prompt ids a step trained on (resume tests check no prompt is repeated or skipped), the policy
        versions of their samples, and the version the step trained at (staleness = trained_on - version)."""
        rec = {
            "step": step,
            "task_ids": [g.task.id for g in groups],
            "versions": [sorted({s.sample.policy_version for s in g.samples}) for g in groups],
            "trained_on": trained_on,
        }
        self._tasks.write(json.dumps(rec) + "\n")
        self._tasks.flush()

    def write_ids(self, step: int, ids: Sequence[str]) -> None:
        """The example ids a step trained on (for stages without rollout groups, e.g. distillation)."""
        self._tasks.write(json.dumps({"step": step, "task_ids": list(ids)}) + "\n")
        self._tasks.flush()

    def note(self, text: str) -> None:
        """A message for the person watching (pauses, resyncs, where the run is)."""
        if self._progress is not None:
            self._progress.console.print(text)
        else:
            print(text, file=sys.stderr, flush=True)

    def _show(self, kind: str, step: int, m: Mapping[str, float]) -> None:
        if kind == "eval" and self._summary is not None:
            self.note(f"[eval] step {step}: {self._summary(m)}")
            return
        if kind == "eval":
            self.note(
                f"[eval] step {step}: accuracy {m.get('eval/accuracy', float('nan')):.3f} "
                f"({int(m.get('eval/correct', 0))}/{int(m.get('eval/samples', 0))} held-out, strict scorer)  "
                f"rewards: mean {m.get('eval/rewards/reward_mean', float('nan')):.3f}"
            )
            return
        if self._progress is not None:
            self._progress.update(step, m)
        elif self._plain:
            if self._summary is not None:
                self.note(f"step {step}/{self.total_steps}  {self._summary(m)}  {m.get('time/step_s', 0):.1f}s/step  "
                          f"eta {_clock(self.eta_s(step))}")  # fmt: skip
                return
            self.note(
                f"step {step}/{self.total_steps}  reward {m.get('reward_mean', float('nan')):.3f}  "
                f"pass {m.get('pass_rate', float('nan')):.3f}  len {m.get('completion/len_mean', 0):.1f}  "
                f"stale {m.get('staleness/mean', 0):.2f}  {m.get('time/step_s', 0):.1f}s/step  "
                f"eta {_clock(self.eta_s(step))}"
            )

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        if self._tb is not None:
            self._tb.close()
        self._metrics.close()
        self._tasks.close()


class _RichProgress:
    # The bar shows RunLog.fraction_done and the ETA RunLog.eta_s: rich's own columns would count train.steps
    # only, and show hours for a run that a 10-minute train.max_time_s ends.
    RESOLUTION = 1000

    def __init__(self, total: int, start: int, runlog: RunLog, label: str = "GRPO",
                 summary: Callable[[Mapping[str, float]], str] | None = None) -> None:  # fmt: skip
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True)
        self.runlog = runlog
        self.progress = Progress(
            TextColumn(f"[bold]{label}"), BarColumn(), TextColumn("step {task.fields[step]}/" + str(total)),
            TimeElapsedColumn(), TextColumn("eta {task.fields[eta]}  {task.fields[info]}"), console=self.console,
        )  # fmt: skip
        self.task = self.progress.add_task("train", total=self.RESOLUTION, completed=0, step=start, eta="-:--:--",
                                           info="")  # fmt: skip
        self.progress.start()
        self.summary = summary

    def update(self, step: int, m: Mapping[str, float]) -> None:
        info = f"reward {m.get('reward_mean', float('nan')):.3f} pass {m.get('pass_rate', float('nan')):.2f}"
        if self.summary is not None:
            info = self.summary(m)
        self.progress.update(self.task, completed=self.RESOLUTION * self.runlog.fraction_done(step), step=step,
                             eta=_clock(self.runlog.eta_s(step)), info=info)  # fmt: skip

    def stop(self) -> None:
        self.progress.stop()


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "-:--:--"
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def truncate_history(run_dir: Path, step: int) -> None:
    """Drop records after `step` (they belong to work a resumed run redoes)."""
    for name in (METRICS_FILE, TASKS_FILE, EVAL_FILE):
        path = run_dir / name
        if not path.is_file():
            continue
        kept = []
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by kill -9
            if int(rec.get("step", 0)) <= step:
                kept.append(line)
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(k + "\n" for k in kept))
        tmp.replace(path)


def read_records(path: Path) -> list[dict[str, Any]]:
    """Parsed lines of a metrics.jsonl / tasks.jsonl file."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
