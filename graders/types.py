"""Python-side grading types and their conversion to and from the grader.proto messages (only here)."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any

from rlvr.v1 import grader_pb2 as pb


class GradeStatus(enum.IntEnum):
    """Mirrors rlvr.v1.GradeStatus; the numeric values are the proto's."""

    PASSED = 1
    FAILED = 2
    TIMEOUT = 3
    MEMORY_LIMIT = 4
    OUTPUT_LIMIT = 5
    RUNTIME_ERROR = 6
    INFRA_ERROR = 7
    INVALID_REQUEST = 8

    @property
    def is_verdict(self) -> bool:
        """True when the status judges the model's output; infra and request errors must not become reward 0."""
        return self not in (GradeStatus.INFRA_ERROR, GradeStatus.INVALID_REQUEST)

    @property
    def label(self) -> str:
        """Lowercase name used in JSONL output, e.g. "passed"."""
        return self.name.lower()

    @classmethod
    def from_label(cls, text: str) -> GradeStatus:
        return cls[text.upper()]


@dataclass(frozen=True)
class Limits:
    """Per-item resource limits; 0 means "server default". The server clamps them to its maximums."""

    timeout_s: float = 0.0
    memory_mb: int = 0
    output_bytes: int = 0
    cpus: float = 0.0


@dataclass(frozen=True)
class TestDetail:
    """Outcome of one test (or one assertion) of a graded item."""

    __test__ = False  # not a pytest class

    name: str
    status: GradeStatus
    message: str = ""


@dataclass
class GradeItem:
    """One completion to grade with the task fields the grader needs."""

    grader: str
    completion: str
    fields: dict[str, Any] = field(default_factory=dict)
    id: str = ""
    limits: Limits | None = None


@dataclass
class GradeResult:
    """The typed result of grading one item."""

    id: str
    grader: str
    reward: float
    status: GradeStatus
    details: list[TestDetail] = field(default_factory=list)
    message: str = ""
    duration_s: float = 0.0
    index: int = 0


@dataclass
class Outcome:
    """What a grader function returns; the engine adds id, index and duration."""

    reward: float
    status: GradeStatus
    details: list[TestDetail] = field(default_factory=list)
    message: str = ""

    @classmethod
    def passed(cls, message: str = "", details: list[TestDetail] | None = None) -> Outcome:
        return cls(1.0, GradeStatus.PASSED, details or [], message)

    @classmethod
    def failed(cls, message: str = "", details: list[TestDetail] | None = None, reward: float = 0.0) -> Outcome:
        return cls(reward, GradeStatus.FAILED, details or [], message)

    @classmethod
    def invalid(cls, message: str) -> Outcome:
        return cls(0.0, GradeStatus.INVALID_REQUEST, [], message)

    @classmethod
    def infra(cls, message: str) -> Outcome:
        return cls(0.0, GradeStatus.INFRA_ERROR, [], message)


def _status_from_pb(value: int) -> GradeStatus:
    try:
        return GradeStatus(value)
    except ValueError:
        return GradeStatus.INFRA_ERROR  # UNSPECIFIED or a newer server's status: never a verdict


def limits_to_pb(limits: Limits | None) -> pb.Limits | None:
    if limits is None:
        return None
    return pb.Limits(
        timeout_s=limits.timeout_s, memory_mb=limits.memory_mb, output_bytes=limits.output_bytes, cpus=limits.cpus
    )


def limits_from_pb(msg: pb.Limits) -> Limits:
    return Limits(timeout_s=msg.timeout_s, memory_mb=msg.memory_mb, output_bytes=msg.output_bytes, cpus=msg.cpus)


def item_to_pb(item: GradeItem) -> pb.GradeItem:
    msg = pb.GradeItem(
        id=item.id, grader=item.grader, completion=item.completion, fields_json=json.dumps(item.fields)
    )
    lim = limits_to_pb(item.limits)
    if lim is not None:
        msg.limits.CopyFrom(lim)
    return msg


def item_from_pb(msg: pb.GradeItem) -> tuple[GradeItem, str | None]:
    """The item and, when fields_json is not a JSON object, a message saying why (the caller's bug)."""
    error = None
    fields: dict[str, Any] = {}
    if msg.fields_json.strip():
        try:
            parsed = json.loads(msg.fields_json)
        except json.JSONDecodeError as e:
            error = f"fields_json is not valid JSON: {e}"
        else:
            if isinstance(parsed, dict):
                fields = parsed
            else:
                error = f"fields_json must be a JSON object, got {type(parsed).__name__}"
    limits = limits_from_pb(msg.limits) if msg.HasField("limits") else None
    return GradeItem(msg.grader, msg.completion, fields, msg.id, limits), error


def result_to_pb(result: GradeResult) -> pb.GradeResult:
    return pb.GradeResult(
        id=result.id,
        grader=result.grader,
        reward=result.reward,
        status=int(result.status),  # type: ignore[arg-type]
        details=[pb.TestResult(name=d.name, status=int(d.status), message=d.message)  # type: ignore[arg-type]
                 for d in result.details],
        message=result.message,
        duration_s=result.duration_s,
        index=result.index,
    )


def result_from_pb(msg: pb.GradeResult) -> GradeResult:
    return GradeResult(
        id=msg.id,
        grader=msg.grader,
        reward=msg.reward,
        status=_status_from_pb(msg.status),
        details=[TestDetail(d.name, _status_from_pb(d.status), d.message) for d in msg.details],
        message=msg.message,
        duration_s=msg.duration_s,
        index=msg.index,
    )


def result_to_json(result: GradeResult) -> dict[str, Any]:
    """The fields the JSONL output adds to an input line."""
    return {
        "reward": result.reward,
        "status": result.status.label,
        "details": [{"name": d.name, "status": d.status.label, "message": d.message} for d in result.details],
        "message": result.message,
        "duration_s": round(result.duration_s, 6),
    }
