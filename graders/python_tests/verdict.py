"""Decide a python_tests grade on the host from the sandbox run and the judge's result.

The judge's result comes from a process that never ran program code and that the program cannot signal,
trace or re-limit (another uid), over a pipe the program does not hold; so it is read as is. A missing or
malformed result means the judge or its runner died: `SandboxLost`, which the grader answers by grading the
program again on a fresh container, and with RUNTIME_ERROR when that happens twice."""

from __future__ import annotations

import json
from typing import Any

from graders.python_tests.prepare import PreparedTests
from graders.sandbox.base import RunResult, SandboxLost
from graders.types import GradeStatus, Outcome, TestDetail

_STOPPED = {"timeout": GradeStatus.TIMEOUT, "died": GradeStatus.RUNTIME_ERROR}


def _limit_outcome(run: RunResult, limit_s: float) -> Outcome | None:
    if run.timed_out:
        return Outcome(0.0, GradeStatus.TIMEOUT, [], f"wall-clock limit of {limit_s:g}s exceeded")
    if run.oom_killed:
        return Outcome(0.0, GradeStatus.MEMORY_LIMIT, [], "memory limit exceeded")
    if run.output_exceeded:
        return Outcome(0.0, GradeStatus.OUTPUT_LIMIT, [], "output limit exceeded")
    return None


def _result(run: RunResult) -> dict[str, Any]:
    if not run.judge_output:
        raise SandboxLost("the judge gave no result (its runner died)")
    try:
        result = json.loads(run.judge_output)
        if not isinstance(result, dict) or not isinstance(result["load"], dict) or not isinstance(result["units"],
                                                                                                    list):
            raise ValueError("not a judge result")
    except (ValueError, KeyError) as e:
        raise SandboxLost(f"the judge's result is malformed: {e}") from e
    return result


def _tail(data: bytes, n: int = 400) -> str:
    return data.decode("utf-8", "replace").strip()[-n:]


def _load_outcome(load: dict[str, Any], run: RunResult, limit_s: float) -> Outcome:
    status, msg = load.get("status"), str(load.get("msg", ""))
    if status == "error":
        kind = GradeStatus.MEMORY_LIMIT if msg.startswith("MemoryError") else GradeStatus.RUNTIME_ERROR
        return Outcome(0.0, kind, [], f"program failed before the tests: {msg}")
    if status == "died":
        return Outcome(0.0, GradeStatus.RUNTIME_ERROR, [], f"program died before the tests: {_tail(run.stderr)}")
    if status == "timeout":
        return Outcome(0.0, GradeStatus.TIMEOUT, [], f"wall-clock limit of {limit_s:g}s exceeded")
    if status == "invalid":
        return Outcome.invalid(msg)
    return Outcome.failed(msg or "the program could not be loaded")


def decide(run: RunResult, tests: PreparedTests, limit_s: float) -> Outcome:
    limited = _limit_outcome(run, limit_s)
    if limited is not None:
        return limited
    result = _result(run)
    if result["load"].get("status") != "ok":
        return _load_outcome(result["load"], run, limit_s)
    units = result["units"]
    if len(units) != len(tests.sources):
        raise SandboxLost(f"the judge reported {len(units)} of {len(tests.sources)} test units")
    details = []
    for name, unit in zip(tests.names, units, strict=True):
        status = unit.get("status")
        msg = str(unit.get("msg", ""))
        if status == "invalid":
            return Outcome.invalid(f"{name}: {msg}")
        if status in _STOPPED:
            kind = _STOPPED[status]
            text = f"wall-clock limit of {limit_s:g}s exceeded" if status == "timeout" else msg
            return Outcome(0.0, kind, [], f"{name}: {text} {_tail(run.stderr, 200)}".strip())
        details.append(TestDetail(name, GradeStatus.PASSED if status == "passed" else GradeStatus.FAILED, msg))
    passed = sum(d.status is GradeStatus.PASSED for d in details)
    expected = len(details)
    if passed == expected:
        return Outcome.passed(f"{passed}/{expected} passed", details)
    first = next(d for d in details if d.status is not GradeStatus.PASSED)
    if first.message.startswith("raised MemoryError"):
        return Outcome(passed / expected, GradeStatus.MEMORY_LIMIT, details, f"{first.name}: {first.message}")
    return Outcome.failed(f"{passed}/{expected} passed; {first.name}: {first.message}", details, passed / expected)
