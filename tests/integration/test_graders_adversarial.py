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
    # attack class "io_uring" (kernel attack surface): refused by the zygote's seccomp filter
    "io_uring_refused": ("""
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        params = ctypes.create_string_buffer(120)
        return [(libc.syscall(nr, 8, params, 0, 0, 0), ctypes.get_errno()) for nr in (425, 426, 427)]
        """, [(-1, 1)] * 3),
    # attack class "runner sabotage": the judge (uid 10000) cannot be signalled, read, re-limited or inspected
    "judge_out_of_reach": ("""
        import errno, os, resource
        judges = [int(p) for p in os.listdir('/proc')
                  if p.isdigit() and 'Uid:\\t10000' in open('/proc/%s/status' % p).read()]
        out = [len(judges)]
        for attempt in (lambda p: os.kill(p, 0), lambda p: open('/proc/%d/mem' % p, 'rb'),
                        lambda p: resource.prlimit(p, resource.RLIMIT_CPU, (0, 0)),
                        lambda p: os.listdir('/proc/%d/fd' % p)):
            try:
                attempt(judges[0])
                out.append('done')
            except OSError as e:
                out.append(errno.errorcode[e.errno])
        return out
        """, [1, "EPERM", "EACCES", "EPERM", "EACCES"]),
    "no_tests_or_judge_input_visible": ("""
        import os
        seen = []
        for p in [p for p in os.listdir('/proc') if p.isdigit()]:
            try:
                seen.append(open('/proc/%s/cmdline' % p, 'rb').read())
            except OSError:
                pass
        return any(b'assert probe()' in c for c in seen)
        """, False),
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


# Attack class "runner sabotage": the program goes after what runs it. The runner (PID 1, root) and the judge
# (uid 10000) are out of its reach (EPERM); the zygote (its parent, its own uid) can be signalled or
# re-limited, which costs the container (discarded), never the verdict. Each sabotage is wrapped so that the
# program's own answer decides: a correct one passes, a wrong one fails.
JUDGE_PIDS = ("[int(p) for p in os.listdir('/proc') if p.isdigit() and "
              "'Uid:\\t10000' in open('/proc/%s/status' % p).read()]")
SABOTAGE = {
    "kill_zygote": "os.kill(os.getppid(), signal.SIGKILL)",
    "stop_zygote": "os.kill(os.getppid(), signal.SIGSTOP)",
    "limit_zygote": "resource.prlimit(os.getppid(), resource.RLIMIT_AS, (1 << 24, 1 << 24))",
    "nice_zygote": "os.setpriority(os.PRIO_PROCESS, os.getppid(), 19)",
    "prlimit_runner_nofile": "resource.prlimit(1, resource.RLIMIT_NOFILE, (8, 8))",
    "prlimit_runner_nproc": "resource.prlimit(1, resource.RLIMIT_NPROC, (1, 1))",
    "nice_runner": "os.setpriority(os.PRIO_PROCESS, 1, 19)",
    "signal_runner": "[os.kill(1, s) for s in (2, 15, 1, 19, 9)]",
    "kill_everything_else": "os.kill(-1, signal.SIGKILL)",
    "kill_judge": f"[os.kill(p, signal.SIGKILL) for p in {JUDGE_PIDS}]",
    "stop_judge_from_daemon": (f"pids = {JUDGE_PIDS}\n    if os.fork() == 0:\n        try:\n"
                               "            [os.kill(p, 19) for p in pids]\n        finally:\n            os._exit(0)"),
    "prlimit_judge": f"[resource.prlimit(p, resource.RLIMIT_CPU, (0, 0)) for p in {JUDGE_PIDS}]",
    "ptrace_judge": f"[ctypes.CDLL(None).ptrace(16, p, 0, 0) for p in {JUDGE_PIDS}]",
    "read_judge_memory": f"[open('/proc/%d/mem' % p, 'rb').read(1) for p in {JUDGE_PIDS}]",
}


def sabotage(action: str) -> str:
    return ("import ctypes, os, resource, signal\ntry:\n    " + action + "\nexcept Exception:\n    pass\n")


async def test_runner_sabotage_never_changes_the_verdict(client: GraderClient) -> None:
    names = list(SABOTAGE)
    for solution, want in (("def f(x): return x * 2\n", GradeStatus.PASSED), ("def f(x): return 42\n",
                                                                           GradeStatus.FAILED)):
        results = await grade(client, [program_item(sabotage(SABOTAGE[n]) + solution, timeout_s=5.0) for n in names])
        for name, result in zip(names, results, strict=True):
            assert result.status is want, f"{name}: {result.status.name} {result.message}"
    # and the programs after them are graded as usual
    ok, bad = await grade(client, [program_item("def f(x): return x * 2\n"), program_item("def f(x): return x\n")])
    assert ok.status is GradeStatus.PASSED and bad.status is GradeStatus.FAILED


SELF_DESTRUCT = {  # sabotage that leaves the program unable to answer: never passed, always a verdict
    "close_all_fds": "import os\nos.closerange(0, 4096)\ndef f(x): return x * 2\n",
    "close_fds_in_call": "import os\ndef f(x):\n    os.closerange(0, 4096)\n    return x * 2\n",
    "kill_own_group": "import os, signal\ndef f(x):\n    os.killpg(0, signal.SIGKILL)\n",
}


async def test_self_destructive_sabotage_is_a_verdict_not_a_pass(client: GraderClient) -> None:
    names = list(SELF_DESTRUCT)
    results = await grade(client, [program_item(SELF_DESTRUCT[n], timeout_s=5.0) for n in names])
    for name, result in zip(names, results, strict=True):
        assert result.status is not GradeStatus.PASSED, (name, result.message)
        assert result.status.is_verdict, (name, result.status, result.message)


async def test_wall_clock_limit_is_per_request_and_isolated(client: GraderClient) -> None:
    start = asyncio.get_running_loop().time()
    slow, fast = await asyncio.gather(
        grade(client, [program_item("import time\ntime.sleep(30)\n", timeout_s=1.5)]),
        grade(client, [program_item("def f(x): return x * 2\n")]),
    )
    assert slow[0].status is GradeStatus.TIMEOUT and fast[0].status is GradeStatus.PASSED
    assert asyncio.get_running_loop().time() - start < 10


async def test_python_tests_gold_and_invalid_requests(client: GraderClient) -> None:
    from graders.python_tests.grader import GOLD

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
