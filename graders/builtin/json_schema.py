"""`json_schema`: the completion (or its fenced JSON) is a JSON document valid under the task's schema."""

from __future__ import annotations

from typing import Any

import jsonschema
from jsonschema.exceptions import SchemaError

from graders.extract import extract_json
from graders.registry import grader
from graders.types import GradeStatus, Outcome, TestDetail

GOLD: list[dict[str, Any]] = [
    {
        "completion": '```json\n{"name": "Ada", "age": 36}\n```',
        "schema": {"type": "object", "required": ["name", "age"],
                   "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}}},
    },
    {"completion": "[1, 2, 3]", "schema": {"type": "array", "items": {"type": "integer"}}, "strict": True},
]


@grader("json_schema", gold=GOLD)
def json_schema(completion: str, *, schema: dict[str, Any] | bool, strict: bool = False) -> Outcome:
    """The completion's JSON (whole text, fenced ```json block, or first JSON value) validates against `schema`."""
    try:
        validator_cls = jsonschema.validators.validator_for(schema)
        validator_cls.check_schema(schema)
    except SchemaError as e:
        return Outcome.invalid(f"schema is not a valid JSON Schema: {e.message}")
    doc, why = extract_json(completion, strict=strict)
    if why is not None:
        return Outcome.failed(why)
    errors = sorted(validator_cls(schema).iter_errors(doc), key=lambda e: list(e.absolute_path))
    if not errors:
        return Outcome.passed()
    details = [
        TestDetail("/" + "/".join(str(p) for p in e.absolute_path), GradeStatus.FAILED, e.message[:300])
        for e in errors[:20]
    ]
    return Outcome.failed(f"{len(errors)} schema violation(s); first: {errors[0].message[:200]}", details)
