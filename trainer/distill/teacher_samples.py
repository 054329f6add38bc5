"""Rejection sampling of the teacher: N samples per training prompt on the rollout service (serving the
teacher), graded by the grader service; a sample is kept only when every reward's grader says PASSED (no verified
sample, no training row).

Writes, under <run_dir>/teacher_samples/:
- verified.jsonl: chat rows `{"id", "messages": [..prompt, {"role": "assistant", ...}], "teacher_pass_count",
  "teacher_samples", <the task's grader fields>}` (the conversational format `rlvr data check` and TRL read);
- pass_counts.jsonl: one line per prompt `{"id", "passed", "samples", "kept"}`, zeros included;
- samples.jsonl: every sample `{"id", "text", "statuses", "finish"}`, to read what the teacher said;
- summary.json: totals and wall time. A `.complete` marker is written last: a resumed run reuses a complete
  set and never samples twice."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

from graders.client import GraderClient
from rollout.client import RolloutClient
from rollout.config import RolloutConfig
from rollout.types import PromptInput, Sample, SamplingConfig
from trainer.data import DataError, Task, load_jsonl
from trainer.distill.config import DistillConfig
from trainer.metrics import passed
from trainer.pipeline import GradeRetry, ScoredSample, grade_sample
from trainer.policy import resolve_model_path
from trainer.rewards import check_task_fields, check_task_golds
from trainer.services import Services

log = logging.getLogger(__name__)
SAMPLES_DIR = "teacher_samples"
VERIFIED = "verified.jsonl"
PASS_COUNTS = "pass_counts.jsonl"
ALL_SAMPLES = "samples.jsonl"
COMPLETE = ".complete"
# One request holds as many samples as the engine batches at once. Measured on chain_sum, one sample per prompt,
# the 2-core CPU engine: 64 prompts a request drew 2,852 in 279 s (10/s); 256 draw 3,795 in 239-285 s (13-16/s,
# the teacher_samples field of benchmarks/results/distill_arith_best_*.json).
CHUNK_SEQUENCES = RolloutConfig.model_fields["max_num_seqs"].default


def chunks(tasks: list[Task], n: int) -> list[tuple[int, list[Task]]]:
    """(offset, prompts) slices of `tasks`, in order, each asking for at most CHUNK_SEQUENCES samples (at least
    one prompt)."""
    size = max(1, CHUNK_SEQUENCES // n)
    return [(i, tasks[i : i + size]) for i in range(0, len(tasks), size)]


async def _sample_chunk(
    rollout: RolloutClient, grader: GraderClient, tasks: list[Task], cfg: DistillConfig, offset: int,
    retry: GradeRetry, counts: Counter[str],
) -> list[list[ScoredSample]]:  # fmt: skip
    s = cfg.teacher_samples
    params = SamplingConfig(n=s.n, temperature=s.temperature, max_tokens=s.max_tokens, stop=list(s.stop),
                            seed=None if s.seed is None else s.seed + offset)  # fmt: skip
    samples: list[Sample] = await rollout.generate([PromptInput(id=t.id, messages=t.messages) for t in tasks], params)
    outcomes = await asyncio.gather(
        *(grade_sample(grader, tasks[x.prompt_index], x.text, cfg.rewards, retry, counts) for x in samples)
    )
    per_prompt: list[list[ScoredSample]] = [[] for _ in tasks]
    for x, o in zip(samples, outcomes, strict=True):
        if o is not None:
            per_prompt[x.prompt_index].append(ScoredSample(x, o))
        else:
            counts["ungraded"] += 1
    return per_prompt


def _rows(task: Task, scored: list[ScoredSample], cfg: DistillConfig) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    good = [x for x in scored if passed(x) and x.sample.finish_reason != "length"]
    texts: list[str] = []
    for x in good:  # distinct texts, in sampling order
        if x.sample.text not in texts:
            texts.append(x.sample.text)
    kept = texts[: cfg.teacher_samples.keep_per_prompt]
    rows = [{"id": f"{task.id}#{j}", "messages": [*task.messages, {"role": "assistant", "content": text}],
             **task.fields, "teacher_pass_count": len(good), "teacher_samples": cfg.teacher_samples.n}
            for j, text in enumerate(kept)]  # fmt: skip
    return rows, {"id": task.id, "passed": len(good), "samples": cfg.teacher_samples.n, "kept": len(kept)}


async def _sample_all(cfg: DistillConfig, services: Services, tasks: list[Task], out: Path) -> dict[str, Any]:
    g = cfg.graders
    retry = GradeRetry(g.retries, g.backoff_s, g.timeout_s)
    rollout = RolloutClient(services.rollout_addresses, token=cfg.rollout.token, tls_ca=cfg.rollout.tls_ca,
                            timeout_s=cfg.rollout.request_timeout_s)  # fmt: skip
    assert services.grader_address is not None
    grader = GraderClient(services.grader_address, token=g.token, tls_ca=g.tls_ca, timeout_s=g.timeout_s)
    counts: Counter[str] = Counter()
    t0 = time.monotonic()
    totals = {"prompts": 0, "prompts_with_verified": 0, "samples": 0, "verified_samples": 0, "rows": 0}
    try:
        await rollout.wait_ready(cfg.rollout.start_timeout_s)
        await grader.wait_ready(g.start_timeout_s)
        # What the graders need, as the grader service says: a bad task fails here, naming its file:line.
        catalog = await grader.list_graders()
        check_task_fields(tasks, cfg.rewards, catalog)
        await check_task_golds(grader, tasks, cfg.rewards, catalog)
        with (out / VERIFIED).open("w") as vf, (out / PASS_COUNTS).open("w") as pf, (out / ALL_SAMPLES).open("w") as af:
            for i, chunk in chunks(tasks, cfg.teacher_samples.n):
                for task, scored in zip(chunk, await _sample_chunk(rollout, grader, chunk, cfg, i, retry, counts),
                                        strict=True):  # fmt: skip
                    rows, stat = _rows(task, scored, cfg)
                    af.writelines(json.dumps({"id": task.id, "text": x.sample.text, "statuses": x.outcome.statuses,
                                              "finish": x.sample.finish_reason}) + "\n" for x in scored)  # fmt: skip
                    vf.writelines(json.dumps(r) + "\n" for r in rows)
                    pf.write(json.dumps(stat) + "\n")
                    totals["prompts"] += 1
                    totals["prompts_with_verified"] += int(stat["passed"] > 0)
                    totals["samples"] += stat["samples"]
                    totals["verified_samples"] += stat["passed"]
                    totals["rows"] += len(rows)
                log.info("teacher samples: %d/%d prompts, %d verified rows so far", totals["prompts"], len(tasks),
                         totals["rows"])  # fmt: skip
    finally:
        await rollout.close()
        await grader.close()
    return {**totals, "ungraded_samples": counts["ungraded"], "wall_s": round(time.monotonic() - t0, 1)}


def sample_teacher(cfg: DistillConfig, run_dir: Path, tasks: list[Task], held_out: list[Task]) -> Path:
    """verified.jsonl of the teacher's samples on `tasks` (reused when a complete set is already there); the
    teacher's held-out accuracy is measured on the same services when the run asks for it."""
    out = run_dir / SAMPLES_DIR
    if (out / COMPLETE).is_file():
        log.info("reusing the teacher's verified samples in %s", out)
        return out / VERIFIED
    out.mkdir(parents=True, exist_ok=True)
    (out / COMPLETE).unlink(missing_ok=True)
    teacher_dir = resolve_model_path(cfg.teacher.path)
    with Services(cfg.services_config(str(teacher_dir)), teacher_dir, run_dir / "logs") as services:
        summary = asyncio.run(_sample_all(cfg, services, tasks, out))
        if cfg.eval.accuracy and cfg.eval.teacher:
            from trainer.distill.accuracy import teacher_accuracy

            teacher_accuracy(cfg, run_dir, held_out, services)
    summary["teacher"] = str(teacher_dir)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    if summary["rows"] == 0:
        raise DataError(f"{out / VERIFIED}: the teacher produced no verified sample for any of {len(tasks)} prompts "
                        "(check the teacher, the rewards and teacher_samples.max_tokens / stop)")  # fmt: skip
    (out / COMPLETE).write_text("ok\n")
    log.info("teacher samples: %s", summary)
    return out / VERIFIED


def verified_tasks(path: Path) -> list[Task]:
    """The verified rows as tasks whose last turn is the teacher's completion."""
    from trainer.data import DataConfig

    return load_jsonl(path, DataConfig(source="jsonl", path=str(path)))
