"""`rlvr grade`: grade a JSONL file of requests and write a JSONL file of results (same order, atomically).

Each input line is an object with `grader`, `completion` and that grader's fields (`answer`; `tests`,
`entry_point`; `schema`; ...); `id` and `limits` are optional. The output line is the input object plus
`reward`, `status`, `details`, `message` and `duration_s`."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graders.types import GradeItem, GradeResult, GradeStatus, Limits, result_to_json

RESERVED = ("grader", "completion", "id", "limits")


class InputError(ValueError):
    """A malformed input line; the message names the file and the line number."""


@dataclass
class Row:
    line_no: int
    data: dict[str, Any]
    item: GradeItem | None = None
    error: str | None = None


def _limits(value: Any) -> Limits:
    if not isinstance(value, dict):
        raise ValueError("'limits' must be an object")
    unknown = set(value) - {"timeout_s", "memory_mb", "output_bytes", "cpus"}
    if unknown:
        raise ValueError(f"unknown limits key(s): {', '.join(sorted(unknown))}")
    return Limits(**value)


def parse_line(text: str) -> tuple[dict[str, Any], GradeItem]:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    for key in ("grader", "completion"):
        if not isinstance(data.get(key), str):
            raise ValueError(f"field {key!r} is missing or not a string")
    fields = {k: v for k, v in data.items() if k not in RESERVED}
    limits = _limits(data["limits"]) if "limits" in data else None
    return data, GradeItem(data["grader"], data["completion"], fields, str(data.get("id", "")), limits)


def read_rows(path: Path, keep_going: bool) -> list[Row]:
    """Parse every line first, so a bad file fails before any grading; blank lines are skipped."""
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                data, item = parse_line(text)
                rows.append(Row(n, data, item))
            except (ValueError, TypeError) as e:
                message = f"{path}:{n}: {e}"
                if not keep_going:
                    raise InputError(message) from None
                rows.append(Row(n, {"line": n}, None, message))
    return rows


def output_line(row: Row, result: GradeResult | None) -> dict[str, Any]:
    if result is None:
        return {**row.data, "reward": 0.0, "status": GradeStatus.INVALID_REQUEST.label, "details": [],
                "message": row.error or "not graded", "duration_s": 0.0}
    return {**row.data, **result_to_json(result)}


def write_atomic(path: Path, lines: list[dict[str, Any]]) -> None:
    """Write to a temp file in the same directory, fsync, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for line in lines:
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


async def grade_rows(
    rows: list[Row], address: str, token: str | None, tls_ca: Path | None, chunk: int,
    on_result: Callable[[GradeResult], None] | None = None,
) -> dict[int, GradeResult]:
    """Results keyed by row position; items are sent in chunks so huge files stream."""
    from graders.client import GraderClient

    todo = [(i, r.item) for i, r in enumerate(rows) if r.item is not None]
    out: dict[int, GradeResult] = {}
    async with GraderClient(address, token=token, tls_ca=tls_ca) as client:
        await client.wait_ready(120)
        for start in range(0, len(todo), chunk):
            part = todo[start:start + chunk]
            async for result in client.grade_stream([item for _, item in part if item is not None]):
                out[part[result.index][0]] = result
                if on_result is not None:
                    on_result(result)
    return out
