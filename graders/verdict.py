"""Decide a python_tests grade OUTSIDE the sandbox from the harness's authenticated report.

Everything not positively reported counts as failure: a missing frame, a bad MAC, a gap in the sequence,
a missing end marker, or a check id that was never reported as passed."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from graders.asserts import PreparedTests
from graders.sandbox.base import RunResult
from graders.types import GradeStatus, Outcome, TestDetail


class ReportError(Exception):
    """The report channel carried something the harness did not sign."""


@dataclass
class Report:
    frames: list[list[str]] = field(default_factory=list)
    ended: bool = False


def parse_report(stdout: bytes, key: bytes) -> Report:
    report = Report()
    for raw in stdout.split(b"\n"):
        if not raw:
            continue
        parts = raw.decode("utf-8", "replace").split(" ")
        if len(parts) != 4 or parts[0] != "RLVR1":
            raise ReportError("unauthenticated data on the report channel")
        _, seq, body, tag = parts
        want = hmac.new(key, f"{seq}|{body}".encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, tag):
            raise ReportError("a report frame failed authentication")
        if seq != str(len(report.frames)) or report.ended:
            raise ReportError("report frames out of sequence")
        fields = body.split("|")
        report.frames.append(fields)
        if fields[0] == "end":
            report.ended = True
    return report


def _unhex(text: str) -> str:
    try:
        return bytes.fromhex(text).decode("utf-8", "replace")
    except ValueError:
        return text


def _tail(data: bytes, n: int = 600) -> str:
    text = data.decode("utf-8", "replace").strip()
    return text[-n:]


def _limit_outcome(run: RunResult, limit_s: float) -> Outcome | None:
    if run.timed_out:
        return Outcome(0.0, GradeStatus.TIMEOUT, [], f"wall-clock limit of {limit_s:g}s exceeded")
    if run.oom_killed:
        return Outcome(0.0, GradeStatus.MEMORY_LIMIT, [], "memory limit exceeded")
    if run.output_exceeded:
        return Outcome(0.0, GradeStatus.OUTPUT_LIMIT, [], "output limit exceeded")
    return None


def _unit_detail(tests: PreparedTests, index: int, frame: list[str]) -> TestDetail:
    name = tests.names[index]
    _, _, status, counts, message = (frame + [""] * 5)[:5]
    reported: dict[int, int] = {}
    for pair in filter(None, counts.split(",")):
        cid_text, _, n = pair.partition(":")
        reported[int(cid_text)] = int(n)
    text = _unhex(message)
    if status == "failed":
        cid = int(text.split()[1]) if text.startswith("assertion ") else -1
        return TestDetail(name, GradeStatus.FAILED, f"assertion at line {tests.lines.get(cid, '?')} failed")
    if status in ("forged", "tampered"):
        return TestDetail(name, GradeStatus.FAILED, f"rejected ({status}): {text}")
    if status == "error":
        return TestDetail(name, GradeStatus.FAILED, f"raised {text}")
    never = [c for c in tests.checks[index] if reported.get(c, 0) < 1]
    if status != "ok" or never:
        lines = ", ".join(str(tests.lines.get(c, "?")) for c in never)
        return TestDetail(name, GradeStatus.FAILED, f"assertion(s) at line {lines} never ran")
    return TestDetail(name, GradeStatus.PASSED, "")


def decide(run: RunResult, key: bytes, tests: PreparedTests, limit_s: float) -> Outcome:
    limited = _limit_outcome(run, limit_s)
    if limited is not None:
        return limited
    try:
        report = parse_report(run.stdout, key)
    except ReportError as e:
        return Outcome.failed(str(e))
    frames = report.frames
    if frames and frames[0][0] == "candidate" and frames[0][1] != "ok":
        message = _unhex(frames[0][2]) if len(frames[0]) > 2 else ""
        status = GradeStatus.RUNTIME_ERROR if frames[0][1] == "error" else GradeStatus.FAILED
        if message.startswith("MemoryError"):  # rlimit-based backends (bwrap) surface the limit this way
            status = GradeStatus.MEMORY_LIMIT
        return Outcome(0.0, status, [], f"program failed before the tests: {message}")
    units = [f for f in frames[1:] if f[0] == "unit"]
    expected = len(tests.sources)
    if not report.ended or len(units) != expected or frames[-1][1:] != [str(expected)]:
        if run.exit_code != 0:
            how = f"signal {run.signal}" if run.signal else f"exit code {run.exit_code}"
            return Outcome(0.0, GradeStatus.RUNTIME_ERROR, [],
                           f"program died ({how}) before all tests reported: {_tail(run.stderr)}")
        return Outcome.failed(f"the program ended before all tests reported ({len(units)}/{expected})")
    details = [_unit_detail(tests, i, f) for i, f in enumerate(units) if f[1] == str(i)]
    if len(details) != expected:
        return Outcome.failed("test reports out of order")
    passed = sum(d.status is GradeStatus.PASSED for d in details)
    if passed == expected:
        return Outcome.passed(f"{passed}/{expected} passed", details)
    hacked = any(d.message.startswith("rejected") for d in details)
    first = next(d for d in details if d.status is not GradeStatus.PASSED)
    reward = 0.0 if hacked else passed / expected
    if first.message.startswith("raised MemoryError"):
        return Outcome(reward, GradeStatus.MEMORY_LIMIT, details, f"{first.name}: {first.message}")
    return Outcome.failed(f"{passed}/{expected} passed; {first.name}: {first.message}", details, reward)
