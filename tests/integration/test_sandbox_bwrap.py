"""The bubblewrap fallback backend: pass/fail through the server, and a few hostile programs."""

from __future__ import annotations

import asyncio
import subprocess
import textwrap
import time
from collections.abc import Iterator

import pytest

from graders.client import GraderClient
from graders.types import GradeItem, GradeStatus, Limits
from rlvr.procs import ServiceProcess

TESTS = "def check(candidate):\n    assert candidate(3) == 9\n"


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    with ServiceProcess("graders.server", ["--port", "0", "--backend", "bwrap", "--pool-size", "2"],
                        "graders") as proc:
        assert proc.address is not None
        yield proc.address


def item(code: str, timeout_s: float = 3.0) -> GradeItem:
    return GradeItem("python_tests", textwrap.dedent(code), {"tests": TESTS, "entry_point": "sq"},
                     limits=Limits(timeout_s=timeout_s))


def grade(address: str, items: list[GradeItem]) -> list:
    async def run() -> list:
        async with GraderClient(address) as client:
            catalog = await client.list_graders()
            assert catalog.sandbox_backend == "bwrap"
            return await client.grade(items)

    return asyncio.run(run())


def test_bwrap_pass_fail_and_forgery(address: str) -> None:
    ok, wrong, fake, rebound = grade(address, [
        item("def sq(x): return x * x\n"),
        item("def sq(x): return x + x\n"),
        item("class A:\n    def __eq__(s, o): return True\ndef sq(x): return A()\n"),
        item("import builtins\nbuiltins.AssertionError = type('E', (BaseException,), {})\n"
             "__builtins__.range = lambda *a: ()\ndef sq(x): return 42\n"),
    ])
    assert ok.status is GradeStatus.PASSED and ok.reward == 1.0
    assert wrong.status is GradeStatus.FAILED and fake.status is GradeStatus.FAILED
    assert rebound.status is GradeStatus.FAILED  # the judge runs in its own bwrap, as another host uid


def test_bwrap_hostile_programs(address: str) -> None:
    probe = """
        import os, socket
        def sq(x):
            try:
                socket.create_connection(('1.1.1.1', 53), timeout=1)
                return 'net'
            except OSError:
                pass
            if os.getuid() != 10001 or os.path.exists('/var/run/docker.sock') or 'HOSTNAME' in os.environ:
                return 'leak'
            import ctypes
            if ctypes.CDLL(None).syscall(425, 8, ctypes.create_string_buffer(120), 0, 0, 0) != -1:
                return 'io_uring'
            return x * x
        """
    results = grade(address, [
        item("import os\nwhile True:\n    try: os.fork()\n    except OSError: pass\n"),
        item("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(10**6)\n"),
        item("x = bytearray(2 * 1024**3)\n"),
        item("while True: print('x' * 10000)\n"),
        item(probe),
    ])
    assert results[0].status in (GradeStatus.TIMEOUT, GradeStatus.RUNTIME_ERROR)
    assert results[1].status is GradeStatus.TIMEOUT
    assert results[2].status is GradeStatus.MEMORY_LIMIT, results[2].message
    assert results[3].status is GradeStatus.OUTPUT_LIMIT
    assert results[4].status is GradeStatus.PASSED, results[4].message
    for _ in range(50):  # killed trees are reaped by init within moments; nothing may keep running
        stats = subprocess.run(["ps", "-u", "20001,20002", "-o", "stat="], capture_output=True, text=True).stdout
        if not [s for s in stats.split() if not s.startswith("Z")]:
            break
        time.sleep(0.2)
    assert [s for s in stats.split() if not s.startswith("Z")] == []
