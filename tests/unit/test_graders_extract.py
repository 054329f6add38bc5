"""Code and JSON extraction from completions; types; config (python_tests' own: test_python_tests_host.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from graders.config import GradersConfig, load
from graders.extract import extract_code, extract_json
from graders.sandbox.base import ExecLimits
from graders.types import (
    GradeItem,
    GradeResult,
    GradeStatus,
    Limits,
    TestDetail,
    item_from_pb,
    item_to_pb,
    result_from_pb,
    result_to_pb,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("completion", "expected"), [
    ("def f():\n    return 1\n", "def f():\n    return 1\n"),
    ("Here:\n```python\ndef f():\n    return 1\n```\nDone.", "def f():\n    return 1\n"),
    ("```py\nx = 1\n```\n```python\ndef g(): pass\n```\n```python\nprint(g())\n```", "def g(): pass\n"),
    ("```\ndef h(): pass\n```", "def h(): pass\n"),
    ("```python\ndef cut(): return 1\n", "def cut(): return 1\n"),  # truncated generation, no closing fence
    ("```bash\nls\n```\ndef bare(): pass", "```bash\nls\n```\ndef bare(): pass"),
])
def test_extract_code(completion: str, expected: str) -> None:
    assert extract_code(completion) == expected


def test_extract_json() -> None:
    assert extract_json('{"a": 1}') == ({"a": 1}, None)
    assert extract_json('Sure!\n```json\n{"a": [1, 2]}\n```') == ({"a": [1, 2]}, None)
    assert extract_json('The result is {"b": true} as requested.') == ({"b": True}, None)
    assert extract_json("no json here")[0] is None
    doc, why = extract_json('Sure: {"a": 1}', strict=True)
    assert doc is None and why is not None and "not a JSON document" in why


def test_status_and_proto_round_trip() -> None:
    assert GradeStatus.PASSED.is_verdict and GradeStatus.TIMEOUT.is_verdict
    assert not GradeStatus.INFRA_ERROR.is_verdict and not GradeStatus.INVALID_REQUEST.is_verdict
    item = GradeItem("math", "\\boxed{1}", {"answer": "1"}, "id7", Limits(timeout_s=2.0, memory_mb=64))
    back, err = item_from_pb(item_to_pb(item))
    assert err is None and back == item
    result = GradeResult("id7", "math", 1.0, GradeStatus.PASSED, [TestDetail("t", GradeStatus.FAILED, "m")],
                         "ok", 0.5, 3)
    assert result_from_pb(result_to_pb(result)) == result
    bad = item_to_pb(item)
    bad.fields_json = "[1, 2]"
    assert "JSON object" in (item_from_pb(bad)[1] or "")


def test_example_config_parses_and_limits_clamp() -> None:
    cfg = load(ROOT / "examples" / "graders.toml")
    assert isinstance(cfg, GradersConfig) and cfg.server.port == 50061 and cfg.sandbox.backend == "auto"
    limits = ExecLimits.resolve(Limits(timeout_s=999, memory_mb=0, cpus=0.5), cfg.limits)
    assert limits.timeout_s == cfg.limits.max_timeout_s and limits.memory_mb == cfg.limits.memory_mb
    assert limits.cpus == 0.5
    with pytest.raises(ValueError, match="tmeout_s"):
        load(None, ["limits.tmeout_s=3"])
