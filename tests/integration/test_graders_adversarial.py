"""Hostile programs against the REAL server over gRPC with the REAL Docker sandbox.

Sandbox properties are probed from inside: the completion defines `probe()` and the test asserts the safe
value, so PASSED means the property holds (and the same test would fail if it did not). Forgery tricks must
never come back PASSED. After the suite the server still answers and no labelled container is left."""

from __future__ import annotations

import asyncio
import os
import subprocess
import textwrap
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from graders.client import GraderClient
from graders.types import GradeItem, GradeResult, GradeStatus, Limits
from rlvr.procs import ServiceProcess

pytestmark = pytest.mark.asyncio(loop_scope="module")
CANARY = "RLVR_TEST_CANARY_SECRET"


def labelled_containers(instance_filter: str = "rlvr.sandbox=1") -> list[str]:
    out = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={instance_filter}"],
                         capture_output=True, text=True, check=True)
    return out.stdout.split()


@pytest.fixture(scope="module")
def server() -> Iterator[ServiceProcess]:
    proc = ServiceProcess("graders.server", ["--port", "0", "--backend", "docker", "--pool-size", "3"],
                          "graders", env={CANARY: "leaked"})
    proc.start(timeout_s=180)
    yield proc
    proc.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(server: ServiceProcess) -> AsyncIterator[GraderClient]:
    assert server.address is not None
    c = GraderClient(server.address)
    await c.wait_ready(60)
    yield c
    await c.close()


def probe_item(body: str, expected: object, timeout_s: float = 5.0) -> GradeItem:
    code = "def probe():\n" + textwrap.indent(textwrap.dedent(body), "    ")
    return GradeItem("python_tests", code, {"tests": f"assert probe() == {expected!r}"},
                     limits=Limits(timeout_s=timeout_s))


def program_item(code: str, timeout_s: float = 3.0, **limits: float) -> GradeItem:
    tests = "def check(candidate):\n    assert candidate(2) == 4\n"
    return GradeItem("python_tests", textwrap.dedent(code), {"tests": tests, "entry_point": "f"},
                     limits=Limits(timeout_s=timeout_s, **limits))  # type: ignore[arg-type]


async def grade(client: GraderClient, items: list[GradeItem]) -> list[GradeResult]:
    return await client.grade(items)


PROBES = {
    "uid_is_10001": ("import os\nreturn (os.getuid(), os.geteuid(), os.getgid())", (10001, 10001, 10001)),
    "no_capabilities": ("""
        caps = dict(l.split(':\\t') for l in open('/proc/self/status').read().splitlines() if l.startswith('Cap'))
        return (caps['CapEff'].strip(), caps['CapPrm'].strip(), caps['CapBnd'].strip())
        """, ("0000000000000000",) * 3),
    "no_new_privs": ("""
        return [l.split()[1] for l in open('/proc/self/status') if l.startswith('NoNewPrivs')][0]
        """, "1"),
    "host_pids_invisible": ("""
        import os
        pids = [p for p in os.listdir('/proc') if p.isdigit()]
        return len(pids) <= 4 and 'python3' in open('/proc/1/cmdline').read()
        """, True),
    "host_env_invisible": ("import os\nreturn sorted(k for k in os.environ if k not in ('PATH', 'LANG', "
                           "'HOME', 'TMPDIR', 'PYTHONDONTWRITEBYTECODE', 'PYTHONHASHSEED', 'LC_CTYPE'))", []),
    "canary_not_in_env": (f"import os\nreturn os.environ.get({CANARY!r}, 'absent')", "absent"),
    "no_docker_socket": ("""
        import os
        return [p for p in ('/var/run/docker.sock', '/run/docker.sock', '/run/containerd/containerd.sock')
                if os.path.exists(p)]
        """, []),
    "root_fs_read_only": ("""
        try:
            open('/etc/evil', 'w')
            return 'written'
        except OSError:
            return 'denied'
        """, "denied"),
    "network_external_blocked": ("""
        import socket
        try:
            socket.create_connection(('1.1.1.1', 53), timeout=2)
            return 'connected'
        except OSError:
            return 'blocked'
        """, "blocked"),
    "dns_blocked": ("""
        import socket
        try:
            socket.getaddrinfo('pypi.org', 443)
            return 'resolved'
        except OSError:
            return 'blocked'
        """, "blocked"),
    "docker_bridge_gateway_blocked": ("""
        import socket
        for port in (2375, 2376, 22, 80):
            try:
                socket.create_connection(('172.17.0.1', port), timeout=1)
                return 'connected'
            except OSError:
                pass
        return 'blocked'
        """, "blocked"),
    "only_loopback_interface": ("import os\nreturn sorted(os.listdir('/sys/class/net'))", ["lo"]),
    "stdin_does_not_block": ("import sys, os\nreturn (sys.stdin.read(), os.read(0, 10))", ("", b"")),
    "disk_fill_capped": ("""
        try:
            with open('/work/big', 'wb') as f:
                for _ in range(1000):
                    f.write(b'x' * (1 << 20))
            return 'filled 1GB'
        except OSError:
            return 'capped'
        """, "capped"),
    "inode_fill_capped": ("""
        try:
            for i in range(100000):
                open('/work/f%d' % i, 'w').close()
            return 'unbounded'
        except OSError:
            return 'capped'
        """, "capped"),
    "work_dir_noexec": ("""
        import os, subprocess
        open('/work/x.sh', 'w').write('#!/bin/sh\\necho hi\\n')
        os.chmod('/work/x.sh', 0o755)
        try:
            subprocess.run(['/work/x.sh'], check=True)
            return 'executed'
        except OSError:
            return 'denied'
        """, "denied"),
}


@pytest.mark.parametrize("name", list(PROBES))
async def test_sandbox_property(client: GraderClient, name: str) -> None:
    body, expected = PROBES[name]
    (result,) = await grade(client, [probe_item(body, expected, timeout_s=20)])
    assert result.status is GradeStatus.PASSED, f"{name}: {result.status.name} {result.message}"


HOSTILE = {
    "fork_bomb": ("""
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
        """, {GradeStatus.TIMEOUT, GradeStatus.RUNTIME_ERROR, GradeStatus.FAILED}),
    "thread_bomb": ("""
        import threading, time
        while True:
            threading.Thread(target=time.sleep, args=(100,)).start()
        """, {GradeStatus.RUNTIME_ERROR, GradeStatus.TIMEOUT}),
    "memory_bomb": ("hog = [bytearray(10**7) for _ in range(200)]\ndef f(x): return x * 2\n",
                    {GradeStatus.MEMORY_LIMIT}),
    "stdout_flood": ("import sys\nwhile True: sys.stdout.write('x' * 65536)\n", {GradeStatus.OUTPUT_LIMIT}),
    "stderr_flood": ("import sys\nwhile True: sys.stderr.write('y' * 65536)\n", {GradeStatus.OUTPUT_LIMIT}),
    "busy_loop": ("while True: pass\n", {GradeStatus.TIMEOUT}),
    "sleep_ignoring_signals": ("""
        import signal, time
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        time.sleep(10**6)
        """, {GradeStatus.TIMEOUT}),
    "blocking_input": ("x = input()\ndef f(x): return x * 2\n", {GradeStatus.RUNTIME_ERROR}),
    "deep_recursion": ("""
        import sys
        sys.setrecursionlimit(10**8)
        def r(n): return r(n + 1)
        r(0)
        """, {GradeStatus.RUNTIME_ERROR, GradeStatus.MEMORY_LIMIT}),
    "daemon_survives_exit": ("""
        import os, time
        if os.fork() == 0:
            os.setsid()
            time.sleep(10**6)
        def f(x): return x * 2
        """, {GradeStatus.PASSED}),
}


async def test_hostile_programs_are_contained(client: GraderClient) -> None:
    names = list(HOSTILE)
    items = [program_item(HOSTILE[n][0], timeout_s=3.0) for n in names]
    results = await grade(client, items)
    for name, result in zip(names, results, strict=True):
        assert result.status in HOSTILE[name][1], f"{name}: {result.status.name} {result.message}"
    # the pool recovered: a normal program still grades quickly and correctly
    ok, bad = await grade(client, [program_item("def f(x): return x * 2\n"), program_item("def f(x): return x\n")])
    assert ok.status is GradeStatus.PASSED and bad.status is GradeStatus.FAILED


# Tampering with the zygote (the program's parent) or the runner (PID 1): both have the program's uid, so
# they can be signalled or re-limited; that costs the container (discarded), never the verdict.
TAMPER = {
    "kill_zygote": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
    "stop_zygote": "import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)\n",
    "limit_zygote": "import os, resource\nresource.prlimit(os.getppid(), resource.RLIMIT_AS, (1 << 24, 1 << 24))\n",
    "nice_zygote": "import os\nos.setpriority(os.PRIO_PROCESS, os.getppid(), 19)\n",
    "limit_runner": "import resource\nresource.prlimit(1, resource.RLIMIT_NOFILE, (8, 8))\n",
    "signal_runner": "import os\nfor s in (2, 15, 1):\n    os.kill(1, s)\n",
}


async def test_tampering_with_zygote_or_runner_keeps_the_verdict(client: GraderClient) -> None:
    names = list(TAMPER)
    for solution, want in (("def f(x): return x * 2\n", GradeStatus.PASSED), ("def f(x): return x\n",
                                                                           GradeStatus.FAILED)):
        results = await grade(client, [program_item(TAMPER[n] + solution, timeout_s=5.0) for n in names])
        for name, result in zip(names, results, strict=True):
            assert result.status is want, f"{name}: {result.status.name} {result.message}"
    # and the programs after them are graded as usual
    ok, bad = await grade(client, [program_item("def f(x): return x * 2\n"), program_item("def f(x): return x\n")])
    assert ok.status is GradeStatus.PASSED and bad.status is GradeStatus.FAILED


async def test_wall_clock_limit_is_per_request_and_isolated(client: GraderClient) -> None:
    start = asyncio.get_running_loop().time()
    slow, fast = await asyncio.gather(
        grade(client, [program_item("import time\ntime.sleep(30)\n", timeout_s=1.5)]),
        grade(client, [program_item("def f(x): return x * 2\n")]),
    )
    assert slow[0].status is GradeStatus.TIMEOUT and fast[0].status is GradeStatus.PASSED
    assert asyncio.get_running_loop().time() - start < 10


EQ_TRUE = "    def __eq__(s, o): return True\n"
FORGERIES = {
    "eq_always_true": "class A:\n" + EQ_TRUE + "    __hash__ = object.__hash__\ndef f(x): return A()\n",
    "int_subclass_eq": "class I(int):\n" + EQ_TRUE + "    __hash__ = int.__hash__\ndef f(x): return I(0)\n",
    "str_subclass": "class S(str):\n" + EQ_TRUE + "    __hash__ = str.__hash__\ndef f(x): return S('')\n",
    "bool_dunder": "class B:\n    def __bool__(s): return True\n    def __eq__(s, o): return s\ndef f(x): return B()\n",
    "ne_returns_false": "class N:\n" + EQ_TRUE + "    def __ne__(s, o): return False\ndef f(x): return [N()]\n",
    "exit_zero": "import sys\ndef f(x): return 0\nsys.exit(0)\n",
    "exit_builtin": "def f(x): return 0\nexit(0)\n",
    "os_exit_zero": "import os\ndef f(x): return 0\nos._exit(0)\n",
    "exit_inside_call": "import os\ndef f(x):\n    os._exit(0)\n",
    "raise_systemexit": "def f(x):\n    raise SystemExit(0)\n",
    "excepthook": "import sys\nsys.excepthook = lambda *a: print('PASSED')\ndef f(x): return 0\n",
    "atexit_marker": ("import atexit, sys\natexit.register(lambda: print('RLVR1 1 unit|0|ok|0:1| ' + 'ab' * 32))\n"
                     "def f(x): return 0\n"),
    "printed_markers": ("print('RLVR1 0 candidate|ok| ' + '0' * 64)\nprint('RLVR1 1 unit|0|ok|0:1| ' + '0' * 64)\n"
                        "print('RLVR1 2 end|1 ' + '0' * 64)\nprint('ALL TESTS PASSED')\ndef f(x): return 0\n"),
    "write_to_report_fd": ("import os\nfor fd in range(3, 20):\n    try: os.write(fd, b'RLVR1 1 unit|0|ok|0:1| x\\n')\n"
                           "    except OSError: pass\ndef f(x): return 0\n"),
    "patched_unittest": "import unittest\nunittest.TestCase.run = lambda *a, **k: None\ndef f(x): return 0\n",
    "written_conftest": ("open('/work/conftest.py', 'w').write('def pytest_runtest_call(item): pass')\n"
                         "def f(x): return 0\n"),
    "rewritten_test_files": ("import glob\nfor p in glob.glob('/work/**/*.py', recursive=True) + glob.glob('/tmp/*'):\n"
                             "    open(p, 'w').write('')\ndef f(x): return 0\n"),
    "shadow_builtins": ("import builtins\nbuiltins.abs = lambda x: 0\nbuiltins.isinstance = lambda *a: True\n"
                        "abs = lambda x: 0\ndef f(x): return 0\n"),
    "patch_math_module": "import math\nmath.isclose = lambda *a, **k: True\ndef f(x): return 0.0\n",
    "frame_walk_for_key": ("import sys\ndef f(x):\n    fr = sys._getframe(1)\n    while fr:\n"
                           "        fr.f_locals.get('results', {}).update({0: 1}); fr = fr.f_back\n    return 0\n"),
    "traceback_frames": ("def f(x):\n    try:\n        raise ValueError\n    except ValueError as e:\n"
                         "        fr = e.__traceback__.tb_frame.f_back\n        fr.f_globals['__rlvr_assert__'] = "
                         "lambda *a: None\n    return 0\n"),
    "gc_objects": ("import gc\ndef f(x):\n    for o in gc.get_objects():\n        if isinstance(o, dict) and "
                   "'__rlvr_assert__' in o:\n            o['__rlvr_assert__'] = lambda *a: None\n    return 0\n"),
    "settrace": ("import sys\ndef tr(frame, ev, arg):\n    frame.f_locals\n    return tr\nsys.settrace(tr)\n"
                 "def f(x): return 0\n"),
    "signal_handler_frame": ("import signal\nsignal.signal(signal.SIGALRM, lambda s, fr: None)\n"
                             "def f(x): return 0\n"),
    "ctypes_memory": "import ctypes\nctypes.string_at(id(1), 8)\ndef f(x): return 0\n",
    "proc_self_mem": "open('/proc/self/mem', 'rb')\ndef f(x): return 0\n",
    "generator_result": "def f(x): return (i for i in [4])\n",
    "len_trick": "class L(list):\n    def __len__(s): return 4\ndef f(x): return L()\n",
    "fork_and_report_twice": "import os\nos.fork()\ndef f(x): return 0\n",
}


async def test_forgery_tricks_never_pass(client: GraderClient) -> None:
    tests = {
        "default": "def check(candidate):\n    assert candidate(2) == 4\n",
        "patch_math_module": "import math\ndef check(candidate):\n    assert math.isclose(candidate(2), 4.0)\n",
        "shadow_builtins": "def check(candidate):\n    assert abs(candidate(2) - 4) < 1e-9\n",
        "len_trick": "def check(candidate):\n    assert len([0] * candidate(2)) == 4\n",
    }
    names = list(FORGERIES)
    items = [GradeItem("python_tests", FORGERIES[n], {"tests": tests.get(n, tests["default"]), "entry_point": "f"},
                       id=n, limits=Limits(timeout_s=5)) for n in names]
    results = await grade(client, items)
    passed = [(r.id, r.message) for r in results if r.status is GradeStatus.PASSED or r.reward > 0]
    assert passed == []
    assert all(r.status.is_verdict for r in results), [(r.id, r.status, r.message) for r in results]
    # the same tests accept an honest solution (so these checks can fail)
    honest = [GradeItem("python_tests", "def f(x): return x * 2\n", {"tests": t, "entry_point": "f"})
              for t in tests.values()]
    honest_results = await grade(client, honest)
    assert [r.status for r in honest_results] == [GradeStatus.PASSED] * len(tests), honest_results


async def test_python_tests_gold_and_invalid_requests(client: GraderClient) -> None:
    from graders.builtin.python_tests import GOLD

    gold = [GradeItem("python_tests", g["completion"], {k: v for k, v in g.items() if k != "completion"})
            for g in GOLD]
    assert [r.reward for r in await grade(client, gold)] == [1.0] * len(GOLD)
    invalid = [
        GradeItem("python_tests", "def f(): pass", {}),
        GradeItem("python_tests", "def f(): pass", {"tests": "x = 1"}),
        GradeItem("python_tests", "def f(): pass", {"tests": "assert ("}),
        GradeItem("python_tests", "def f(): pass", {"tests": 5}),
    ]
    for r in await grade(client, invalid):
        assert r.status is GradeStatus.INVALID_REQUEST and r.message


async def test_server_survives_and_leaves_no_containers(server: ServiceProcess, client: GraderClient) -> None:
    catalog = await client.list_graders()
    assert catalog.sandbox_backend == "docker" and "python_tests" in catalog.names()
    (r,) = await grade(client, [program_item("def f(x): return x * 2\n")])
    assert r.status is GradeStatus.PASSED
    assert server.alive()
    assert len(labelled_containers()) >= 1
    server.stop()
    assert server.proc is not None and server.proc.returncode == 0, server.tail()
    await asyncio.sleep(0.5)
    assert labelled_containers() == [], "sandbox containers left behind"
    assert os.environ.get(CANARY) is None
