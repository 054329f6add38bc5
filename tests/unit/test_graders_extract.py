"""Code and JSON extraction from completions; assert rewriting; verdict parsing; types; config."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest

from graders.asserts import TestsError, prepare
from graders.config import GradersConfig, load
from graders.extract import extract_code, extract_json
from graders.sandbox.base import ExecLimits, RunResult
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
from graders.verdict import decide

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


def test_prepare_numbers_asserts_and_appends_check() -> None:
    tests = prepare("import math\ndef check(candidate):\n    assert candidate(1) == 2\n    assert candidate(2) == 3\n",
                    "inc")
    assert tests.checks == [[0, 1]] and tests.imports == ["math"]
    assert "__rlvr_assert__(0" in tests.sources[0] and tests.sources[0].rstrip().endswith("check(inc)")
    assert "assert " not in tests.sources[0]
    multi = prepare(["assert f(1) == 1", "assert f(2) == 2\nassert f(3) == 3"])
    assert multi.checks == [[0], [1, 2]] and multi.names == ["test[0]", "test[1]"]
    bare = prepare("assert candidate(1) == 2", "f")
    assert bare.sources[0].startswith("candidate = f")


@pytest.mark.parametrize(("tests", "entry", "match"), [
    ("def check(c):\n    return True\n", None, "no assert"),
    ("assert (", None, "not valid Python"),
    ([], None, "empty list"),
    ("assert f(1)", "not an identifier", "identifier"),
])
def test_prepare_rejects_unusable_tests(tests: str | list[str], entry: str | None, match: str) -> None:
    with pytest.raises(TestsError, match=match):
        prepare(tests, entry)


def _frame(key: bytes, seq: int, body: str) -> str:
    tag = hmac.new(key, f"{seq}|{body}".encode(), hashlib.sha256).hexdigest()
    return f"RLVR1 {seq} {body} {tag}\n"


def _run(stdout: str, code: int | None = 0) -> RunResult:
    return RunResult(exit_code=code, stdout=stdout.encode(), stderr=b"", duration_s=0.1)


def test_verdict_requires_complete_authenticated_report() -> None:
    key, tests = b"k" * 32, prepare(["assert f(1) == 1", "assert f(2) == 2"])
    good = [_frame(key, 0, "candidate|ok|"), _frame(key, 1, "unit|0|ok|0:1|"), _frame(key, 2, "unit|1|ok|1:1|"),
            _frame(key, 3, "end|2")]
    assert decide(_run("".join(good)), key, tests, 10).status is GradeStatus.PASSED
    # missing end marker, even with exit code 0
    assert decide(_run("".join(good[:3])), key, tests, 10).status is GradeStatus.FAILED
    # a check id never reported as passed
    unreported = [good[0], _frame(key, 1, "unit|0|ok||"), good[2], good[3]]
    out = decide(_run("".join(unreported)), key, tests, 10)
    assert out.status is GradeStatus.FAILED and out.reward == 0.5 and "never ran" in out.details[0].message
    # forged frame (wrong key), duplicated/reordered frames, printed fake marker
    forged = [good[0], _frame(b"x" * 32, 1, "unit|0|ok|0:1|"), good[2], good[3]]
    assert decide(_run("".join(forged)), key, tests, 10).status is GradeStatus.FAILED
    assert decide(_run("".join(good[:2] + good[:2] + good[2:])), key, tests, 10).status is GradeStatus.FAILED
    assert decide(_run("ALL TESTS PASSED\n" + "".join(good)), key, tests, 10).status is GradeStatus.FAILED
    # died before the end: runtime error, not a pass
    assert decide(_run("".join(good[:2]), code=1), key, tests, 10).status is GradeStatus.RUNTIME_ERROR
    # a forged unit zeroes the reward
    hacked = [good[0], _frame(key, 1, "unit|0|forged||" + b"not plain".hex()), good[2], good[3]]
    assert decide(_run("".join(hacked)), key, tests, 10).reward == 0.0


def test_verdict_limits() -> None:
    key, tests = b"k" * 32, prepare("assert f(1) == 1")
    cases = [(RunResult(None, b"", b"", 1.0, timed_out=True), GradeStatus.TIMEOUT),
             (RunResult(None, b"", b"", 1.0, signal=9, oom_killed=True), GradeStatus.MEMORY_LIMIT),
             (RunResult(None, b"", b"", 1.0, output_exceeded=True), GradeStatus.OUTPUT_LIMIT)]
    for run, status in cases:
        assert decide(run, key, tests, 1.0).status is status


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
