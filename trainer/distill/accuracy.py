"""The student (or teacher) on the rollout service: held-out accuracy by the task's strict scorer through the
shared evaluator (trainer/evaluate.py: greedy answers judged by the grader service), and the student's own samples
for on-policy distillation. The training loop is synchronous; each call runs its own event loop with fresh
clients, pushing the student's current weights first when they changed."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import torch

from graders.client import GraderClient
from rollout.client import RolloutClient
from rollout.types import PromptInput, Sample, SamplingConfig
from trainer.data import Task
from trainer.distill.config import DistillConfig
from trainer.evaluate import EvalReport, evaluate
from trainer.metrics import EVAL_FILE
from trainer.pipeline import GradeRetry
from trainer.policy import resolve_model_path
from trainer.services import Services

TEACHER_EVAL = "teacher_eval.json"


class AccuracyProbe:
    """Held-out accuracy of (and samples from) whatever the given services' rollout server serves."""

    def __init__(self, cfg: DistillConfig, services: Services, held_out: list[Task]) -> None:
        self.cfg, self.services = cfg, services
        self.tasks = held_out
        g = cfg.graders
        self.retry = GradeRetry(g.retries, g.backoff_s, g.timeout_s)
        self.sampling = SamplingConfig(n=1, temperature=0.0, max_tokens=cfg.eval.max_tokens, stop=list(cfg.eval.stop))
        self.version = 0
        self.ready = False

    def _clients(self) -> tuple[RolloutClient, GraderClient]:
        c = self.cfg
        rollout = RolloutClient(self.services.rollout_addresses, token=c.rollout.token, tls_ca=c.rollout.tls_ca,
                                timeout_s=c.rollout.request_timeout_s)  # fmt: skip
        assert self.services.grader_address is not None
        grader = GraderClient(self.services.grader_address, token=c.graders.token, tls_ca=c.graders.tls_ca,
                              timeout_s=c.graders.timeout_s)  # fmt: skip
        return rollout, grader

    async def _sync(self, rollout: RolloutClient, weights: dict[str, torch.Tensor] | None, version: int) -> None:
        if not self.ready:
            assert self.services.grader_address is not None
            await rollout.wait_ready(self.cfg.rollout.start_timeout_s)
            self.ready = True
        if weights is not None and version != self.version:
            got = await rollout.update_weights(weights, version)
            if got != version:
                raise RuntimeError(f"rollout service reports version {got} after pushing {version}")
            self.version = version

    async def _measure(self, weights: dict[str, torch.Tensor] | None, version: int) -> EvalReport:
        rollout, grader = self._clients()
        try:
            await self._sync(rollout, weights, version)
            await grader.wait_ready(self.cfg.graders.start_timeout_s)
            return await evaluate(self.tasks, rollout, grader, self.cfg.scorer, self.sampling, retry=self.retry)
        finally:
            await rollout.close()
            await grader.close()

    def measure(self, weights: dict[str, torch.Tensor] | None = None, version: int = 0) -> EvalReport:
        """Accuracy of the served model; `weights` (an HF state dict) are pushed first as `version`."""
        return asyncio.run(self._measure(weights, version))

    async def _sample(self, tasks: list[Task], params: SamplingConfig, weights: dict[str, torch.Tensor] | None,
                      version: int) -> list[Sample]:  # fmt: skip
        rollout, grader = self._clients()
        try:
            await self._sync(rollout, weights, version)
            return await rollout.generate([PromptInput(id=t.id, messages=t.messages) for t in tasks], params)
        finally:
            await rollout.close()
            await grader.close()

    def sample(self, tasks: list[Task], params: SamplingConfig, weights: dict[str, torch.Tensor] | None = None,
               version: int = 0) -> list[Sample]:  # fmt: skip
        """Samples of the served model (on-policy distillation), after pushing `weights` as `version`."""
        return asyncio.run(self._sample(tasks, params, weights, version))


def record(report: EvalReport, run_dir: Path, step: int, prefix: str = "eval/") -> dict[str, float]:
    """The report's metrics, and every answer appended to <run_dir>/eval_samples.jsonl."""
    report.write_jsonl(run_dir / EVAL_FILE, step)
    return report.metrics(prefix)


def teacher_accuracy(cfg: DistillConfig, run_dir: Path, held_out: list[Task],
                     services: Services | None = None) -> dict[str, Any]:  # fmt: skip
    """The teacher's held-out accuracy, measured once per run dir (a resumed run reads teacher_eval.json), on the
    given services (already serving the teacher) or on embedded ones started for it."""
    path = run_dir / TEACHER_EVAL
    if path.is_file():
        return dict(json.loads(path.read_text()))
    teacher_dir = resolve_model_path(cfg.teacher.path)
    t0 = time.monotonic()
    if services is not None:
        report = AccuracyProbe(cfg, services, held_out).measure()
    else:
        with Services(cfg.services_config(str(teacher_dir)), teacher_dir, run_dir / "logs" / "teacher") as started:
            report = AccuracyProbe(cfg, started, held_out).measure()
    out: dict[str, Any] = {**report.metrics("teacher/"), "teacher/eval_s": time.monotonic() - t0,
                           "teacher/path": str(teacher_dir),
                           "examples": report.examples(cfg.eval.examples)}  # fmt: skip
    report.write_jsonl(run_dir / "teacher_eval_samples.jsonl", 0)
    path.write_text(json.dumps(out, indent=1) + "\n")
    return out
