"""Rewards from several graders per sample, combined with weights (e.g. format 0.2 + correctness 1.0).

A grader that could not judge the output (INFRA_ERROR, INVALID_REQUEST) makes the whole reward None, never a
silent 0: a 0 would teach the policy that a correct answer was wrong whenever the sandbox hiccuped."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import Field

from graders.client import Catalog
from graders.types import GradeItem, GradeResult, GradeStatus
from rlvr.config import StrictModel
from trainer.data import DataError, Task

PROMPT_FIELD = "prompt"


class RewardSpec(StrictModel):
    """One grader contributing `weight × reward` to a sample's total reward."""

    grader: str
    """Registered grader name (math, python_tests, json_schema, regex, exact_match, or a plugin)."""
    weight: float = 1.0
    """Multiplier of this grader's reward in the total."""
    name: str | None = None
    """Label in metrics (defaults to the grader name); must be unique among a run's rewards."""
    fields: dict[str, Any] = Field(default_factory=dict)
    """Static grader fields (e.g. a regex `pattern`); a task's own fields of the same name take precedence."""

    @property
    def key(self) -> str:
        return self.name or self.grader


@dataclass
class RewardOutcome:
    """The combined reward of one sample and its parts."""

    reward: float | None
    """Weighted sum, or None when any grader gave no verdict."""
    per_grader: dict[str, float] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)
    infra_error: bool = False
    """Some grader hit an infrastructure failure (worth retrying)."""
    errors: dict[str, str] = field(default_factory=dict)
    """Messages of the graders that gave no verdict."""
    messages: dict[str, str] = field(default_factory=dict)
    """Each grader's message (why a verdict is what it is), for people reading samples."""


def check_specs(specs: Sequence[RewardSpec]) -> None:
    """At least one reward, and metric labels that do not collide."""
    if not specs:
        raise ValueError("rewards: at least one reward spec is required")
    keys = [s.key for s in specs]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise ValueError(f"rewards: duplicate reward names {dupes}; set `name` to tell them apart")


def check_task_fields(tasks: Iterable[Task], specs: Sequence[RewardSpec], catalog: Catalog) -> None:
    """Fail fast, before training, when the grader service lacks a grader or a task lacks a field the grader
    requires (as the service's ListGraders says); the error names the task's file:line and the field."""
    served = {g.name: g for g in catalog.graders}
    for spec in specs:
        if spec.grader not in served:
            raise DataError(f"grader {spec.grader!r} is not served by the grader service (it serves: "
                            f"{', '.join(sorted(served))})")  # fmt: skip
    for task in tasks:
        for spec in specs:
            for name in served[spec.grader].required_fields:
                if name not in task.fields and name not in spec.fields and name != PROMPT_FIELD:
                    raise DataError(f"{task.source or task.id}: field {name!r}: required by grader {spec.grader!r}")


async def check_task_golds(
    client: _Grader, tasks: Sequence[Task], specs: Sequence[RewardSpec], catalog: Catalog, batch: int = 128
) -> None:
    """Ask each non-sandboxed grader to judge an empty completion of every task: a task it refuses as an
    invalid request (a gold answer that does not parse, a malformed field) is a dataset error naming the
    task's file:line, found when the dataset is loaded rather than as dropped samples mid-run. (Sandboxed
    graders would run every task's program for this; their fields are checked by check_task_fields.)"""
    cheap = [s for s in specs if not next(g for g in catalog.graders if g.name == s.grader).sandboxed]
    pairs, seen = [], set()
    for task in tasks:
        for spec in cheap:  # tasks with the same fields (e.g. the same gold answer) are checked once
            key = (spec.grader, json.dumps({**spec.fields, **task.fields}, sort_keys=True, default=str))
            if key not in seen:
                seen.add(key)
                pairs.append((task, spec))
    for start in range(0, len(pairs), batch):
        chunk = pairs[start : start + batch]
        items = [grade_items(t, "", [s])[0] for t, s in chunk]
        for (task, spec), res in zip(chunk, await client.grade(items), strict=True):
            if res.status == GradeStatus.INVALID_REQUEST:
                raise DataError(f"{task.source or task.id}: grader {spec.grader!r} refuses the task: {res.message}")


def grade_items(task: Task, completion: str, specs: Sequence[RewardSpec], sample_id: str = "") -> list[GradeItem]:
    """One GradeItem per spec, in spec order; ids are `<sample_id or task id>:<reward name>`. Every item
    carries the task's prompt as the `prompt` field (graders that take it, like math, refuse an answer that
    only restates the question; others ignore it) unless the task has a field of that name."""
    base = sample_id or task.id
    prompt = {PROMPT_FIELD: "\n".join(m["content"] for m in task.messages)}
    return [
        GradeItem(grader=s.grader, completion=completion, fields={**prompt, **s.fields, **task.fields},
                  id=f"{base}:{s.key}")
        for s in specs
    ]


def combine(task: Task, results: Sequence[GradeResult], specs: Sequence[RewardSpec]) -> RewardOutcome:
    """Weighted sum of the results of `grade_items(task, ...)` (same order as specs)."""
    if len(results) != len(specs):
        raise ValueError(f"task {task.id}: {len(results)} grade results for {len(specs)} reward specs")
    out = RewardOutcome(reward=0.0)
    total = 0.0
    verdict = True
    for spec, res in zip(specs, results, strict=True):
        if res.grader != spec.grader:
            raise ValueError(f"task {task.id}: result from grader {res.grader!r} where {spec.grader!r} expected")
        out.statuses[spec.key] = res.status.label
        if res.message:
            out.messages[spec.key] = res.message
        if not res.status.is_verdict:
            verdict = False
            out.infra_error |= res.status == GradeStatus.INFRA_ERROR
            out.errors[spec.key] = res.message or res.status.label
            continue
        out.per_grader[spec.key] = res.reward
        total += spec.weight * res.reward
    out.reward = total if verdict else None
    return out


class _Grader(Protocol):
    async def grade(self, items: list[GradeItem]) -> list[GradeResult]: ...


async def score(
    client: _Grader, samples: Sequence[tuple[Task, str]], specs: Sequence[RewardSpec]
) -> list[RewardOutcome]:
    """Grade (task, completion) pairs in one request and combine each sample's results."""
    items: list[GradeItem] = []
    for i, (task, completion) in enumerate(samples):
        items.extend(grade_items(task, completion, specs, sample_id=f"{task.id}#{i}"))
    results = await client.grade(items)
    if len(results) != len(items):
        raise RuntimeError(f"grader returned {len(results)} results for {len(items)} items")
    n = len(specs)
    return [combine(task, results[i * n : (i + 1) * n], specs) for i, (task, _) in enumerate(samples)]
