"""Common test idioms through the REAL server and Docker sandbox: a correct program passes and a wrong one fails
for each, now that the tests run in the trusted judge and only plain data crosses from the program. Tests that
need a program object on the trusted side are INVALID_REQUEST (the task's problem), never FAILED."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from graders.client import GraderClient
from graders.types import GradeItem, GradeResult, GradeStatus, Limits
from rlvr.procs import ServiceProcess


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    with ServiceProcess("graders.server", ["--port", "0", "--backend", "docker", "--pool-size", "3"],
                        "graders") as proc:
        assert proc.address is not None
        yield proc.address


def grade(address: str, items: list[GradeItem]) -> list[GradeResult]:
    import asyncio

    async def run() -> list[GradeResult]:
        async with GraderClient(address) as client:
            await client.wait_ready(60)
            return await client.grade(items)

    return asyncio.run(run())


# name: (tests, correct program, wrong program); the entry point is always f
IDIOMS = {
    "generator_expressions": (
        "def check(candidate):\n    assert all(candidate(i) == i * i for i in range(5))\n"
        "    assert any(candidate(i) > 10 for i in range(5))\n"
        "    assert sorted(candidate(i) for i in (2, 0, 1)) == [0, 1, 4]\n"
        "    assert sum(candidate(i) for i in range(3)) == 5\n",
        "def f(x): return x * x\n", "def f(x): return x + x\n"),
    "counter": (
        "from collections import Counter\ndef check(candidate):\n"
        "    assert candidate('abca') == Counter({'a': 2, 'b': 1, 'c': 1})\n    assert candidate('ab')['z'] == 0\n",
        "from collections import Counter\ndef f(s): return Counter(s)\n",
        "from collections import Counter\ndef f(s): return Counter(s[1:])\n"),
    "fraction": (
        "from fractions import Fraction\ndef check(candidate):\n    assert candidate(3) == Fraction(1, 3)\n"
        "    assert candidate(3) + Fraction(2, 3) == 1\n",
        "from fractions import Fraction\ndef f(n): return Fraction(1, n)\n",
        "def f(n): return 1 / n\n"),
    "isclose_and_tolerance": (
        "import math\ndef check(candidate):\n    assert math.isclose(candidate(2), 1.41421356, rel_tol=1e-6)\n"
        "    assert abs(candidate(9) - 3.0) < 1e-9\n    assert round(candidate(2), 3) == 1.414\n",
        "def f(x): return x ** 0.5\n", "def f(x): return x / 2\n"),
    "containers": (
        "def check(candidate):\n    s, d, t = candidate([3, 1, 3])\n    assert s == {1, 3} and d == {3: 2, 1: 1}\n"
        "    assert t == (1, 3) and isinstance(t, tuple) and candidate([]) == (set(), {}, ())\n",
        "def f(xs): return set(xs), {x: xs.count(x) for x in xs}, tuple(sorted(set(xs)))\n",
        "def f(xs): return set(xs), {x: 1 for x in xs}, list(sorted(set(xs)))\n"),
    "in_place_mutation": (
        "def check(candidate):\n    xs = [3, 1, 2]\n    inner = [9, 8]\n    nested = [inner]\n"
        "    assert candidate(xs, nested) is None\n    assert xs == [1, 2, 3] and inner == [8, 9]\n",
        "def f(xs, nested):\n    xs.sort()\n    nested[0].sort()\n",
        "def f(xs, nested):\n    xs = sorted(xs)\n"),
    "dict_mutation": (
        "def check(candidate):\n    d = {'a': 1}\n    candidate(d)\n    assert d == {'a': 1, 'b': 2}\n",
        "def f(d): d['b'] = 2\n", "def f(d): return {**d, 'b': 2}\n"),
    "pytest_raises": (
        "import pytest\ndef check(candidate):\n    with pytest.raises(ValueError, match='negative'):\n"
        "        candidate(-1)\n    assert candidate(4) == 2\n",
        "def f(x):\n    if x < 0:\n        raise ValueError('negative input')\n    return int(x ** 0.5)\n",
        "def f(x): return int(abs(x) ** 0.5)\n"),
    "try_except_assert_false": (
        "def check(candidate):\n    try:\n        candidate([])\n        assert False, 'should have raised'\n"
        "    except IndexError:\n        pass\n    assert candidate([5]) == 5\n",
        "def f(xs): return xs[0]\n", "def f(xs): return xs[0] if xs else None\n"),
    "untaken_branch_asserts": (
        "def unused():\n    assert False, 'never called'\n"
        "def check(candidate):\n    if candidate(1) != 1:\n        assert False, 'wrong'\n"
        "    for _ in []:\n        assert False\n    assert candidate(2) == 2\n",
        "def f(x): return x\n", "def f(x): return 1\n"),
    "generator_result": (
        "def check(candidate):\n    assert list(candidate(3)) == [0, 1, 2]\n",
        "def f(n):\n    yield from range(n)\n", "def f(n):\n    yield from range(n + 1)\n"),
    "program_constant_and_helper": (
        "def check(candidate):\n    assert candidate(2) == SCALE * 2 == helper(2)\n",
        "SCALE = 10\ndef helper(x): return x * 10\ndef f(x): return helper(x)\n",
        "SCALE = 10\ndef helper(x): return 20\ndef f(x): return 0\n"),
    "bytes_and_none": (
        "def check(candidate):\n    assert candidate(b'ab') == b'ba'\n    assert candidate(b'') is None\n",
        "def f(b): return b[::-1] or None\n", "def f(b): return b\n"),
    "big_int": (
        "import math\ndef check(candidate):\n    assert candidate(2000) == math.factorial(2000)\n",
        "import math\ndef f(n): return math.factorial(n)\n", "import math\ndef f(n): return math.factorial(n) + 1\n"),
    "dict_keys_view": (
        "def check(candidate):\n    assert candidate({'a': 1, 'b': 2}) == {'a', 'b'}\n",
        "def f(d): return d.keys()\n", "def f(d): return d.values()\n"),
    "unit_list": (
        ["assert f(1) == 2", "assert [f(i) for i in range(3)] == [0, 2, 4]"],
        "def f(x): return 2 * x\n", "def f(x): return 2 * x if x else 1\n"),
}


def idiom_items() -> list[GradeItem]:
    items = []
    for name, (tests, good, bad) in IDIOMS.items():
        for kind, code in (("good", good), ("bad", bad)):
            items.append(GradeItem("python_tests", code, {"tests": tests, "entry_point": "f"}, id=f"{name}:{kind}",
                                   limits=Limits(timeout_s=8)))
    return items


def test_correct_programs_pass_and_wrong_ones_fail(address: str) -> None:
    results = grade(address, idiom_items())
    wrong = [(r.id, r.status.name, r.message[:200]) for r in results
             if r.status is not (GradeStatus.PASSED if r.id.endswith(":good") else GradeStatus.FAILED)]
    assert wrong == []
    assert all(r.reward < 1.0 for r in results if r.id.endswith(":bad"))


NEEDS_OBJECTS: dict[str, tuple[str, ...]] = {  # tests, program[, prompt]
    "instantiates_program_class": (
        "def check(candidate):\n    s = Stack()\n    s.push(1)\n    assert s.pop() == 1\n",
        "class Stack:\n    def __init__(self): self.items = []\n    def push(self, x): self.items.append(x)\n"
        "    def pop(self): return self.items.pop()\ndef f(): return Stack()\n"),
    "entry_point_is_a_class_in_the_prompt": (
        "def check(candidate):\n    assert candidate().pop() is None\n",
        "    def pop(self): return None\n", "class f:\n    \"\"\"A stack.\"\"\"\n"),
    "passes_a_callable": (
        "def check(candidate):\n    assert candidate(lambda x: x + 1, 1) == 2\n",
        "def f(g, x): return g(x)\n"),
}


def test_tests_that_need_program_objects_are_invalid_requests(address: str) -> None:
    items = [GradeItem("python_tests", spec[1], {"tests": spec[0], "entry_point": "f", "prefix": "".join(spec[2:])},
                       id=name) for name, spec in NEEDS_OBJECTS.items()]
    for r in grade(address, items):
        assert r.status is GradeStatus.INVALID_REQUEST and "plain data" in r.message, (r.id, r.status, r.message)
