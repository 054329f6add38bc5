"""python_tests' host side: test preparation (units, the trusted prelude cut from the prompt) and the verdict
decided from the judge's result; what a missing or malformed result means (SandboxLost, never a pass)."""

from __future__ import annotations

import json

import pytest

from graders.python_tests.prepare import TestsError, prelude_of, prepare
from graders.python_tests.verdict import decide
from graders.sandbox.base import RunResult, SandboxLost
from graders.types import GradeStatus


def test_prepare_appends_check_and_keeps_line_numbers() -> None:
    tests = prepare("import math\ndef check(candidate):\n    assert candidate(1) == 2\n", "inc")
    assert tests.sources[0].startswith("import math\ndef check(candidate):\n    assert candidate(1) == 2")
    assert tests.sources[0].rstrip().endswith("check(inc)")
    multi = prepare(["assert f(1) == 1", "with pytest.raises(ValueError):\n    f(-1)"])
    assert multi.names == ["test[0]", "test[1]"] and multi.sources[0] == "assert f(1) == 1"


@pytest.mark.parametrize(("tests", "entry", "match"), [
    ("def check(c):\n    return True\n", None, "no assert"),
    ("assert (", None, "not valid Python"),
    ([], None, "empty list"),
    ("assert f(1)", "not an identifier", "identifier"),
])
def test_prepare_rejects_unusable_tests(tests: str | list[str], entry: str | None, match: str) -> None:
    with pytest.raises(TestsError, match=match):
        prepare(tests, entry)


PROMPT = '''import math
from typing import List

K = 3

def helper(s: str) -> str:
    return s[::-1]

def solve(s: str) -> str:
    """Reverse it."""

print("top-level statements are not helpers")
'''


def test_prelude_is_the_prompts_helpers_without_the_entry_point() -> None:
    prelude = prelude_of(PROMPT, "solve")
    assert "def helper" in prelude and "import math" in prelude and "K = 3" in prelude
    assert "def solve" not in prelude and "print" not in prelude
    assert prelude_of("def solve(x):\n    return (", "solve") == ""  # not valid on its own: no trusted helpers
    assert prepare("assert solve('ab') == 'ba'", "solve", PROMPT).prelude == prelude


def run_with(result: object, **kw: object) -> RunResult:
    out = None if result is None else (result if isinstance(result, bytes) else json.dumps(result).encode())
    return RunResult(0, b"", b"", 0.1, judge_output=out, **kw)  # type: ignore[arg-type]


def unit(status: str, msg: str = "") -> dict[str, str]:
    return {"status": status, "msg": msg}


OK = {"status": "ok", "msg": ""}


def test_verdicts_from_the_judges_result() -> None:
    two = prepare(["assert f(1) == 1", "assert f(2) == 2"])
    decided = decide(run_with({"load": OK, "units": [unit("passed"), unit("passed")]}), two, 5)
    assert decided.status is GradeStatus.PASSED and decided.reward == 1.0
    half = decide(run_with({"load": OK, "units": [unit("passed"), unit("failed", "assertion at line 1 failed")]}),
                  two, 5)
    assert half.status is GradeStatus.FAILED and half.reward == 0.5
    cases = {
        "error": GradeStatus.RUNTIME_ERROR, "died": GradeStatus.RUNTIME_ERROR, "timeout": GradeStatus.TIMEOUT,
        "missing": GradeStatus.FAILED, "invalid": GradeStatus.INVALID_REQUEST, "failed": GradeStatus.FAILED,
    }
    for status, want in cases.items():
        assert decide(run_with({"load": {"status": status, "msg": "m"}, "units": []}), two, 5).status is want
    stopped = {"load": OK, "units": [unit("passed"), unit("died", "exited")]}
    assert decide(run_with(stopped), two, 5).status is GradeStatus.RUNTIME_ERROR
    invalid = {"load": OK, "units": [unit("invalid", "plain data"), unit("passed")]}
    assert decide(run_with(invalid), two, 5).status is GradeStatus.INVALID_REQUEST
    memory = {"load": {"status": "error", "msg": "MemoryError: "}, "units": []}
    assert decide(run_with(memory), two, 5).status is GradeStatus.MEMORY_LIMIT


def test_limits_come_first_and_a_missing_result_is_a_lost_sandbox() -> None:
    one = prepare("assert f(1) == 1")
    passed = {"load": OK, "units": [unit("passed")]}
    assert decide(run_with(passed, timed_out=True), one, 1).status is GradeStatus.TIMEOUT
    assert decide(run_with(passed, oom_killed=True), one, 1).status is GradeStatus.MEMORY_LIMIT
    assert decide(run_with(passed, output_exceeded=True), one, 1).status is GradeStatus.OUTPUT_LIMIT
    for broken in (None, b"", b"{not json", {"load": OK}, {"load": OK, "units": []}, [1]):
        with pytest.raises(SandboxLost):
            decide(run_with(broken), one, 1)


@pytest.mark.parametrize(("tests", "prefix", "invalid"), [
    ("def check(candidate):\n    s = Stack()\n    s.push(1)\n    assert s.pop() == 1\n", "", True),
    ("def check(candidate):\n    r = candidate(1)\n    assert r.push(2) is None\n", "", True),
    ("def check(candidate):\n    assert candidate().pop() is None\n", "class f:\n    '''A stack.'''\n", True),
    ("def check(candidate):\n    assert candidate('a b').split() == ['a', 'b']\n", "", False),
    ("def check(candidate):\n    assert candidate('ab').most_common(1) == [('a', 1)]\n", "", False),
    ("import math\ndef check(candidate):\n    assert math.isclose(candidate(1), 1.0)\n", "", False),
    ("class H:\n    def go(self): return 1\ndef check(candidate):\n    assert H().go() == candidate(1)\n", "", False),
    ("def check(candidate):\n    assert helper(3).go == candidate(3)\n", "def helper(x):\n    return x\n", False),
])
def test_tests_that_use_program_objects_are_refused_from_the_tests_alone(tests: str, prefix: str,
                                                                           invalid: bool) -> None:
    """Attack class "verdict dodging": only the task (tests, prompt) can make a request invalid, never a program."""
    if invalid:
        with pytest.raises(TestsError, match="plain data"):
            prepare(tests, "f", prefix)
    else:
        prepare(tests, "f", prefix)
