"""Held-out generation evaluation of an SFT run: greedy answers to held-out tasks (generate.py), judged
through the grader service by the shared evaluator (trainer.evaluate): eval/accuracy by the task's strict
scorer (eval.scorer, e.g. reasoning_gym's own score_answer) and eval/format_rate by a regex grader
(eval.format_pattern) — never by a training reward. The grader service is the one given in [graders], or
one started here as a child process on loopback and stopped at the end."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from trainer.sft.config import SFTConfig

log = logging.getLogger(__name__)
EVAL_FILE = "eval_samples.jsonl"


class GenerationEval:
    """Call with (model, step) for the eval metrics; close() stops an embedded grader server."""

    def __init__(self, cfg: SFTConfig, run_dir: Path, tok: Any) -> None:
        from trainer.data import build_tasks

        assert cfg.eval.tasks is not None and cfg.eval.scorer is not None
        self.cfg = cfg
        self.run_dir = run_dir
        self.tok = tok
        _, held_out = build_tasks(cfg.eval.tasks)
        self.tasks = held_out[: cfg.eval.size] if cfg.eval.size else held_out
        if not self.tasks:
            raise ValueError("eval.tasks: the source has no held-out tasks (set eval.tasks.eval_size)")
        self.address = cfg.graders.address
        self._proc: Any = None

    def start(self) -> None:
        if self.address is not None:
            return
        from trainer.service_pool import active_pool

        pool = active_pool()
        if pool is not None:  # a pipeline stage: the run's shared grader server
            assert self.cfg.eval.scorer is not None
            used = [self.cfg.eval.scorer.grader] + (["regex"] if self.cfg.eval.format_pattern else [])
            self.address = pool.grader_address(self.cfg.graders, used)
            return
        from rlvr.procs import ServiceProcess
        from trainer.services import grader_args

        g = self.cfg.graders
        sandbox = g.sandbox or ("auto" if self.cfg.eval.scorer and self.cfg.eval.scorer.grader == "python_tests"
                                else "none")  # fmt: skip
        args = ["graders.server", *grader_args(g, sandbox)]
        (self.run_dir / "logs").mkdir(exist_ok=True)
        self._proc = ServiceProcess("trainer.services", args, "graders", log_path=self.run_dir / "logs" / "graders.log")
        log.info("starting embedded grader server (log: %s)", self._proc.log_path)
        self.address = self._proc.start(timeout_s=g.start_timeout_s)

    def __call__(self, model: Any, step: int) -> dict[str, float]:
        t0 = time.monotonic()
        self.start()  # outside the event loop: a pooled start asks the grader service (ListGraders) itself
        metrics = asyncio.run(self._run(model, step))
        metrics["time/eval_s"] = time.monotonic() - t0
        return metrics

    async def _run(self, model: Any, step: int) -> dict[str, float]:
        from graders.client import GraderClient
        from rollout.types import SamplingConfig
        from trainer.evaluate import evaluate
        from trainer.pipeline import GradeRetry
        from trainer.rewards import RewardSpec
        from trainer.sft.generate import HFGenerator

        e, g = self.cfg.eval, self.cfg.graders
        assert e.scorer is not None and self.address is not None
        fmt = [RewardSpec(grader="regex", name="format", fields={"pattern": e.format_pattern, "flags": "s"})
               if e.format_pattern else None]  # fmt: skip
        rewards = [f for f in fmt if f is not None]
        sampling = SamplingConfig(n=1, temperature=0.0, max_tokens=e.max_tokens)
        retry = GradeRetry(g.retries, g.backoff_s, g.timeout_s)
        generator = HFGenerator(model, self.tok, e.batch_size)
        async with GraderClient(self.address, token=g.token, tls_ca=g.tls_ca, timeout_s=g.timeout_s) as grader:
            report = await evaluate(self.tasks, generator, grader, e.scorer, sampling, rewards=rewards, retry=retry)
        metrics = report.metrics()
        if rewards:
            metrics["eval/format_rate"] = metrics.get("eval/rewards/pass_rate", float("nan"))
        report.write_jsonl(self.run_dir / EVAL_FILE, step)
        if e.examples:
            log.info("held-out examples at step %d (prompt → answer → verdict by %s):\n%s", step, report.scorer,
                     report.examples(e.examples))  # fmt: skip
        return metrics

    def close(self) -> None:
        if self._proc is not None:
            self._proc.stop(timeout_s=20)
            self._proc = None
