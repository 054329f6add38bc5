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

pytestmark = pytest.mark.asyncio(loop_scope="module")
IMAGE = "rlvr-sandbox:bookworm-1"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool() -> AsyncIterator[DockerPool]:
    p = DockerPool(IMAGE, 1, ExecLimits(memory_mb=128, pids=32, disk_mb=16))
    await p.start()
    yield p
    await p.close()
    assert docker.from_env().containers.list(all=True, filters={"label": f"{LABEL}.instance={p.instance}"}) == []


async def py(pool: DockerPool, code: str, **limits: float) -> tuple[int | None, str]:
    lim = ExecLimits(**{"memory_mb": 128, "pids": 32, "disk_mb": 16, **limits})  # type: ignore[arg-type]
    r = await pool.run(["python3", "-c", code], b"", lim)
    return r.exit_code, r.stdout.decode()


async def test_container_settings(pool: DockerPool) -> None:
    (c,) = docker.from_env().containers.list(filters={"label": f"{LABEL}.instance={pool.instance}"})
    hc, cfg = c.attrs["HostConfig"], c.attrs["Config"]
    assert hc["NetworkMode"] == "none" and hc["ReadonlyRootfs"] is True
    assert hc["CapDrop"] == ["ALL"] and "no-new-privileges" in hc["SecurityOpt"]
    assert hc["PidsLimit"] == 32 and hc["NanoCpus"] == 1_000_000_000
    assert hc["Memory"] == hc["MemorySwap"] > 0
    assert hc["Privileged"] is False and not hc.get("Binds") and not c.attrs["Mounts"]
    assert "/work" in hc["Tmpfs"] and "noexec" in hc["Tmpfs"]["/work"]
    assert cfg["User"] == "10001:10001" and cfg["Labels"][LABEL] == "1"
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
             "print(os.listdir('/work'), os.listdir('/dev/shm'), pids, ipc)\n")
    assert await py(pool, check) == (0, "[] [] [1] []\n")


async def test_per_request_memory_limit(pool: DockerPool) -> None:
    hog = "x = bytearray(200 * 1024 * 1024); x[::4096] = b'1' * len(x[::4096]); print('ok')"
    small = await pool.run(["python3", "-c", hog], b"", ExecLimits(memory_mb=64, pids=32, disk_mb=16))
    assert small.oom_killed and small.exit_code is None
    big = await pool.run(["python3", "-c", hog], b"", ExecLimits(memory_mb=512, pids=32, disk_mb=16))
    assert big.exit_code == 0 and big.stdout == b"ok\n" and not big.oom_killed


async def test_timeout_replaces_the_container(pool: DockerPool) -> None:
    client = docker.from_env()
    before = {c.id for c in client.containers.list(filters={"label": f"{LABEL}.instance={pool.instance}"})}
    r = await pool.run(["python3", "-c", "while True: pass"], b"", ExecLimits(timeout_s=1.0, pids=32, disk_mb=16))
    assert r.timed_out
    assert await py(pool, "print(1)") == (0, "1\n")  # waits for the replacement
    after = {c.id for c in client.containers.list(filters={"label": f"{LABEL}.instance={pool.instance}"})}
    assert before and not before & after


async def test_output_cap(pool: DockerPool) -> None:
    r = await pool.run(["python3", "-c", "print('x' * 10**6)"], b"", ExecLimits(output_bytes=10_000, pids=32,
                                                                                disk_mb=16))
    assert r.output_exceeded and len(r.stdout) <= 10_001


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
