"""The Docker pool itself: container settings, per-request limits, reset between programs, reaping."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator

import docker
import pytest
import pytest_asyncio

from graders.sandbox.base import ExecLimits
from graders.sandbox.docker_pool import LABEL, DockerPool, reap_stale

FAST = ["python3", "-I", "-S", "-B", "-c"]  # python_tests' interpreter flags: forked from the zygote, no exec

pytestmark = pytest.mark.asyncio(loop_scope="module")
IMAGE = "rlvr-sandbox:bookworm-1"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool() -> AsyncIterator[DockerPool]:
    p = DockerPool(IMAGE, 1, ExecLimits(memory_mb=128, pids=32, disk_mb=16))
    await p.start()
    yield p
    await p.close()
    assert docker.from_env().containers.list(all=True, filters={"label": f"{LABEL}.instance={p.instance}"}) == []


async def py(pool: DockerPool, code: str, argv: tuple[str, ...] = ("python3", "-c"), stdin: bytes = b"",
             **limits: float) -> tuple[int | None, str]:
    lim = ExecLimits(**{"memory_mb": 128, "pids": 32, "disk_mb": 16, **limits})  # type: ignore[arg-type]
    r = await pool.run([*argv, code], stdin, lim)
    return r.exit_code, r.stdout.decode()


def container_ids(pool: DockerPool) -> set[str]:
    return {c.id for c in docker.from_env().containers.list(filters={"label": f"{LABEL}.instance={pool.instance}"})}


async def test_container_settings(pool: DockerPool) -> None:
    (c,) = docker.from_env().containers.list(filters={"label": f"{LABEL}.instance={pool.instance}"})
    hc, cfg = c.attrs["HostConfig"], c.attrs["Config"]
    assert hc["NetworkMode"] == "none" and hc["ReadonlyRootfs"] is True
    assert hc["CapDrop"] == ["ALL"] and "no-new-privileges" in hc["SecurityOpt"]
    assert sorted(hc["CapAdd"]) == ["KILL", "SETGID", "SETPCAP", "SETUID"]  # PID 1's; programs get none
    assert hc["LogConfig"]["Type"] == "none"  # hygiene: a program's output never lands on the host disk
    assert hc["PidsLimit"] == 32 and hc["NanoCpus"] == 1_000_000_000
    assert hc["Memory"] == hc["MemorySwap"] > 0
    assert hc["Privileged"] is False and not hc.get("Binds") and not c.attrs["Mounts"]
    assert "/work" in hc["Tmpfs"] and "noexec" in hc["Tmpfs"]["/work"]
    assert cfg["User"] == "0:0" and cfg["Labels"][LABEL] == "1"  # PID 1 only: every program is uid 10001
    assert not any(e.startswith(("DOCKER", "HOSTNAME=", "RLVR")) for e in cfg["Env"])


async def test_no_files_or_processes_carry_over(pool: DockerPool) -> None:
    code = ("import os, subprocess, time\n"
            "open('/work/secret', 'w').write('x'); open('/dev/shm/s', 'w').write('x')\n"
            "os.makedirs('/work/d/e'); os.chmod('/work/d', 0)\n"
            "subprocess.run(['ipcmk', '-M', '4096'], check=True, capture_output=True)\n"
            "subprocess.Popen(['sleep', '1000'], start_new_session=True)\n"
            "if os.fork() == 0:\n    os.setsid(); time.sleep(1000)\n"
            "print('planted')\n")
    assert await py(pool, code) == (0, "planted\n")
    check = ("import os\n"
             "pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid())\n"
             "ipc = open('/proc/sysvipc/shm').read().splitlines()[1:]\n"
             "print(os.listdir('/work'), os.listdir('/dev/shm'), pids == sorted([1, os.getppid()]), ipc)\n")
    assert await py(pool, check) == (0, "[] [] True []\n")  # only the runner (1) and the zygote (our parent)


async def test_per_request_memory_limit(pool: DockerPool) -> None:
    hog = "x = bytearray(200 * 1024 * 1024); x[::4096] = b'1' * len(x[::4096]); print('ok')"
    small = await pool.run(["python3", "-c", hog], b"", ExecLimits(memory_mb=64, pids=32, disk_mb=16))
    assert small.oom_killed and small.exit_code is None
    big = await pool.run(["python3", "-c", hog], b"", ExecLimits(memory_mb=512, pids=32, disk_mb=16))
    assert big.exit_code == 0 and big.stdout == b"ok\n" and not big.oom_killed


@pytest.mark.parametrize("argv", [["python3", "-c"], FAST], ids=["exec", "zygote"])
async def test_timeout_replaces_the_container(pool: DockerPool, argv: list[str]) -> None:
    before = container_ids(pool)
    r = await pool.run([*argv, "while True: pass"], b"", ExecLimits(timeout_s=1.0, pids=32, disk_mb=16))
    assert r.timed_out
    assert await py(pool, "print(1)") == (0, "1\n")  # waits for the replacement
    after = container_ids(pool)
    assert before and not before & after


@pytest.mark.parametrize("argv", [["python3", "-c"], FAST], ids=["exec", "zygote"])
async def test_output_cap(pool: DockerPool, argv: list[str]) -> None:
    for stream in ("stdout", "stderr"):
        code = f"import sys\nwhile True: sys.{stream}.write('x' * 65536)"
        r = await pool.run([*argv, code], b"", ExecLimits(output_bytes=10_000, pids=32, disk_mb=16))
        assert r.output_exceeded and len(r.stdout) <= 10_001 and len(r.stderr) <= 10_001


async def test_stdin_is_delivered(pool: DockerPool) -> None:
    payload = b"y" * 300_000
    r = await pool.run(["python3", "-c", "import sys; print(len(sys.stdin.buffer.read()))"], payload,
                       ExecLimits(pids=32, disk_mb=16))
    assert r.stdout == b"300000\n"


async def test_reap_stale_removes_dead_owners_only(pool: DockerPool) -> None:
    client = docker.from_env()
    dead = client.containers.create(IMAGE, ["sleep", "1"], labels={LABEL: "1", f"{LABEL}.owner":
                                                                   f"{__import__('socket').gethostname()}:999999:1"})
    assert await asyncio.to_thread(reap_stale, client) >= 1
    ids = subprocess.run(["docker", "ps", "-aq", "--no-trunc", "--filter", f"label={LABEL}=1"], capture_output=True,
                         text=True, check=True).stdout.split()
    assert dead.id not in ids
    assert await py(pool, "print(2)") == (0, "2\n")  # our own live container was kept


# ---- the pristine zygote ------------------------------------------------------------------------------------

PLANT = """
import builtins, os, sys, random
builtins.LEAKED = 1; os.LEAKED = 1; sys.LEAKED = 1; sys.path.append('/work'); LEAKED_GLOBAL = 1
sys.modules['planted_module'] = type(sys)('planted_module')
import json  # a module the zygote has not imported
json.LEAKED = 1
os.environ['LEAKED'] = '1'
open('/work/planted.py', 'w').write('x = 1')
print(os.getppid(), random.random())
"""

LOOK = """
import builtins, os, sys, random
import json
seen = [hasattr(builtins, 'LEAKED'), hasattr(os, 'LEAKED'), hasattr(sys, 'LEAKED'), '/work' in sys.path,
        'LEAKED_GLOBAL' in globals(), 'planted_module' in sys.modules, hasattr(json, 'LEAKED'),
        'LEAKED' in os.environ, os.path.exists('/work/planted.py')]
print(os.getppid(), random.random(), any(seen), sorted(os.listdir('/proc/self/fd')))
"""


async def test_consecutive_programs_share_no_interpreter_state(pool: DockerPool) -> None:
    """Both run in processes forked from the same zygote (same parent, not PID 1), yet nothing the first one
    changed in its interpreter, files or environment is visible to the second, and random state differs."""
    code1, out1 = await py(pool, PLANT, argv=tuple(FAST))
    code2, out2 = await py(pool, LOOK, argv=tuple(FAST))
    assert code1 == 0 and code2 == 0, (out1, out2)
    ppid1, rand1 = out1.split()
    ppid2, rand2, leaked, fds = out2.split(maxsplit=3)
    assert ppid1 == ppid2 != "1"  # the zygote forked both
    assert rand1 != rand2
    assert leaked == "False"
    assert fds.strip() == "['0', '1', '2', '3']"  # the std pipes and listdir's own fd: no zygote socket


async def test_zygote_child_behaves_like_python_c(pool: DockerPool) -> None:
    assert await py(pool, "import sys\nprint(sys.argv, sys.flags.isolated, sys.flags.no_site)\nsys.exit(3)",
                    argv=tuple(FAST)) == (3, "['-c'] 1 1\n")
    r = await pool.run([*FAST, "import atexit\natexit.register(print, 'bye')\nprint('hi', end='')\n1/0"], b"",
                       ExecLimits(pids=32, disk_mb=16))
    assert r.exit_code == 1 and r.stdout == b"hibye\n"
    assert r.stderr.decode().startswith('Traceback (most recent call last):\n  File "<string>", line 4, in <module>')
    assert r.stderr.decode().endswith("ZeroDivisionError: division by zero\n")
    assert await py(pool, "import sys\nprint(len(sys.stdin.buffer.read()))", argv=tuple(FAST),
                    stdin=b"z" * 300_000) == (0, "300000\n")
    assert await py(pool, "raise SystemExit('message')", argv=tuple(FAST)) == (1, "")


ZYGOTE_PROBE = """
import ctypes, errno, os
z = os.getppid()
out = []
for path in ('/proc/%d/mem' % z, '/proc/%d/environ' % z):
    try:
        open(path, 'rb').read(1)
        out.append('read ' + path)
    except OSError as e:
        out.append(errno.errorcode[e.errno])
try:
    open('/proc/%d/oom_score_adj' % z, 'w').write('1000')
    out.append('wrote oom_score_adj')
except OSError as e:
    out.append(errno.errorcode[e.errno])
try:
    os.listdir('/proc/%d/fd' % z)
    out.append('listed fds')
except OSError as e:
    out.append(errno.errorcode[e.errno])
libc = ctypes.CDLL(None, use_errno=True)
out.append(libc.ptrace(16, z, 0, 0) == 0 or errno.errorcode[ctypes.get_errno()])  # PTRACE_ATTACH
print(out)
"""


async def test_zygote_is_not_readable_or_ptraceable(pool: DockerPool) -> None:
    assert await py(pool, ZYGOTE_PROBE, argv=tuple(FAST)) == (0, "['EACCES', 'EACCES', 'EACCES', 'EACCES', 'EPERM']\n")


TAMPER = {
    "kill_zygote": "import os, signal; os.kill(os.getppid(), signal.SIGKILL)",
    "term_zygote": "import os, signal; os.kill(os.getppid(), signal.SIGTERM); import time; time.sleep(0.2)",
    "stop_zygote": "import os, signal; os.kill(os.getppid(), signal.SIGSTOP)",
    "stop_zygote_from_daemon": ("import os, signal, time\nz = os.getppid()\nif os.fork() == 0:\n"
                                "    os.setsid(); time.sleep(0.05); os.kill(z, signal.SIGSTOP); time.sleep(100)"),
    "zygote_rlimit": "import os, resource; resource.prlimit(os.getppid(), resource.RLIMIT_AS, (1 << 26, 1 << 26))",
    "zygote_nofile": "import os, resource; resource.prlimit(os.getppid(), resource.RLIMIT_NOFILE, (8, 8))",
    "zygote_nice": "import os; os.setpriority(os.PRIO_PROCESS, os.getppid(), 19)",
    "zygote_sched": "import os; os.sched_setscheduler(os.getppid(), os.SCHED_BATCH, os.sched_param(0))",
}


@pytest.mark.parametrize("name", list(TAMPER))
async def test_tampering_is_detected_and_the_container_discarded(pool: DockerPool, name: str) -> None:
    """A program may signal or re-limit the zygote or the runner (same uid): its own result still comes back
    (a verdict, not an infrastructure error), and the container is replaced before the next program."""
    before = container_ids(pool)
    code, out = await py(pool, TAMPER[name] + "\nprint('done')", argv=tuple(FAST))
    # a zygote stopped or killed just after it reaped the program cannot pass its exit status on (reported as a
    # kill); the output always comes back
    assert out == "done\n" and (code == 0 or (code is None and "zygote" in name))
    assert await py(pool, "import os, resource\nprint(os.nice(0), resource.getrlimit(resource.RLIMIT_AS)[0])",
                    argv=tuple(FAST)) == (0, "0 -1\n")
    assert before and not before & container_ids(pool)


RUNNER_SABOTAGE = """
import errno, os, resource, signal
out = []
for attempt in (lambda: resource.prlimit(1, resource.RLIMIT_NPROC, (5, 5)),
                lambda: os.setpriority(os.PRIO_PROCESS, 1, 10),
                lambda: [os.kill(1, s) for s in (2, 15, 1, 10, 19, 9)],
                lambda: open('/proc/1/mem', 'rb').read(1)):
    try:
        attempt()
        out.append('done')
    except OSError as e:
        out.append(errno.errorcode[e.errno])
print(out, os.getuid(), [l.split()[1] for l in open('/proc/self/status') if l.startswith(('CapEff', 'CapBnd'))])
"""


async def test_runner_is_out_of_the_programs_reach(pool: DockerPool) -> None:
    """Attack class "runner sabotage": PID 1 is another uid (root with no capability the program shares), so
    prlimit, renice, signals and its memory are all refused; the container is kept (nothing was changed)."""
    before = container_ids(pool)
    code, out = await py(pool, RUNNER_SABOTAGE, argv=tuple(FAST))
    assert (code, out) == (0, "['EPERM', 'EPERM', 'EPERM', 'EACCES'] 10001 ['0000000000000000', '0000000000000000']\n")
    assert await py(pool, "print(1)", argv=tuple(FAST)) == (0, "1\n")
    assert container_ids(pool) == before
