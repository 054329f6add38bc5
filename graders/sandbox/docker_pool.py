"""Docker sandbox: a pool of warm, locked-down containers, each running graders/sandbox/runner_main.py as
PID 1 and executing one program at a time. Each program's process is forked by the container's pristine
zygote (graders/sandbox/zygote_main.py: an interpreter that never runs untrusted code), so a
`python3 -I -S -B -c` program such as python_tests' program side costs a fork, not an interpreter start-up.
A run with a Judge (graders/sandbox/base.py) also forks the judge, as uid 10000, from PID 1.

Every container has no network (network_mode none), a read-only root, a size- and inode-capped noexec
tmpfs at /work owned by uid 10001, no log output (log driver none), PID 1 as root with only CAP_SETUID,
CAP_SETGID, CAP_KILL and CAP_SETPCAP, every program as uid 10001 with no capabilities (bounding set empty
too), no-new-privileges, a seccomp
filter refusing io_uring (on top of Docker's profile), a pids limit, memory with swap equal to it, a CPU
quota, no host environment and no mounts of the host (so no docker socket). /proc/self/mountinfo still
shows the overlay's host paths (layer ids; Docker cannot mask a per-process /proc file cheaply):
documented, not hidden. After each program the runner kills every other process and wipes every writable
place; a container that does not come back clean (a leftover process or file, a zygote that was killed,
stopped or re-limited), hits the wall-clock deadline (the host kills the whole container), loses its
runner or changes limits it cannot change live is discarded and replaced in the background. A runner lost
in the middle of a program is SandboxLost (the grader decides what it means for the program). Containers
carry the labels `rlvr.sandbox=1` and `rlvr.sandbox.instance=<id>`, and are reaped at start-up (those of
dead servers) and at exit."""

from __future__ import annotations

import asyncio
import atexit
import base64
import concurrent.futures
import contextlib
import json
import logging
import os
import socket
import struct
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graders.sandbox.base import SANDBOX_ENV, ExecLimits, Judge, RunResult, SandboxError, SandboxLost

log = logging.getLogger(__name__)

LABEL = "rlvr.sandbox"
RUNNER_SRC = "\n\n".join((Path(__file__).parent / n).read_text() for n in ("runner_io.py", "runner_main.py"))
ZYGOTE_SRC = (Path(__file__).parent / "zygote_main.py").read_text()
# The runner's and the zygote's interpreters share the container's memory cgroup (the zygote's pages are
# shared copy-on-write with each program's process, which no longer pays for its own interpreter start-up).
RUNNER_OVERHEAD_MB = 40
RESET_SLACK_S = 0.5  # time the runner needs after the program for its reset


def _proc_start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def owner_tag() -> str:
    """hostname:pid:start-time of this process; the reaper treats containers of dead owners as leftovers."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_proc_start_time(pid)}"


def _owner_alive(tag: str) -> bool:
    host, _, rest = tag.partition(":")
    pid_s, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid_s.isdigit():
        return True  # another machine's server sharing this engine: not ours to judge
    return _proc_start_time(int(pid_s)) == start


@dataclass(eq=False)
class _Box:
    """One warm container and its attach socket."""

    cid: str
    sock: socket.socket
    memory_mb: int
    cpus: float
    raw: bytearray = field(default_factory=bytearray)
    payload: bytearray = field(default_factory=bytearray)


class _Deadline(Exception):
    pass


class DockerPool:
    """Sandbox backend "docker"."""

    name = "docker"

    def __init__(self, image: str, pool_size: int, defaults: ExecLimits, docker_url: str | None = None) -> None:
        import docker

        self.client = docker.DockerClient(base_url=docker_url) if docker_url else docker.from_env()
        self.image = image
        self.pool_size = pool_size
        self.defaults = defaults
        self.instance = uuid.uuid4().hex[:12]
        self.labels = {LABEL: "1", f"{LABEL}.instance": self.instance, f"{LABEL}.owner": owner_tag()}
        self._ready: asyncio.Queue[_Box] = asyncio.Queue()
        self._threads = concurrent.futures.ThreadPoolExecutor(pool_size * 2 + 4, thread_name_prefix="sandbox")
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._broken: str | None = None
        atexit.register(self._remove_all_sync)

    # ---- lifecycle -------------------------------------------------------------------------------

    async def _call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._threads, fn, *args)

    async def start(self) -> None:
        await self._call(self.client.ping)
        await self._call(self.client.images.get, self.image)
        reaped = await self._call(reap_stale, self.client)
        if reaped:
            log.warning("removed %d sandbox container(s) left by dead servers", reaped)
        boxes = await asyncio.gather(*(self._call(self._create_box) for _ in range(self.pool_size)))
        for box in boxes:
            self._ready.put_nowait(box)

    def _host_config(self, memory_mb: int, cpus: float) -> dict[str, Any]:
        import docker.types

        d = self.defaults
        mem = f"{memory_mb + RUNNER_OVERHEAD_MB}m"
        return self.client.api.create_host_config(
            network_mode="none",
            read_only=True,
            tmpfs={"/work": f"size={d.disk_mb}m,nr_inodes=4096,uid=10001,gid=10001,mode=0700,noexec,nosuid,nodev"},
            # PID 1 is root with only these (it forks the zygote as 10001 and a judge as 10000, and kills them);
            # every program is uid 10001 with none, under no-new-privileges
            cap_drop=["ALL"],
            cap_add=["SETUID", "SETGID", "KILL", "SETPCAP"],
            security_opt=["no-new-privileges"],
            log_config=docker.types.LogConfig(type="none"),  # hygiene: nothing a program prints lands on disk
            pids_limit=d.pids,
            mem_limit=mem,
            memswap_limit=mem,
            nano_cpus=int(cpus * 1e9),
            shm_size=f"{max(1, d.disk_mb // 4)}m",
            ulimits=[docker.types.Ulimit(name="nofile", soft=256, hard=256),
                     docker.types.Ulimit(name="core", soft=0, hard=0)],
            ipc_mode="private",
        )

    def _create_box(self, memory_mb: int | None = None, cpus: float | None = None) -> _Box:
        memory_mb = memory_mb or self.defaults.memory_mb
        cpus = cpus or self.defaults.cpus
        created = self.client.api.create_container(
            self.image,
            command=["python3", "-I", "-S", "-B", "-c", RUNNER_SRC, ZYGOTE_SRC],
            user="0:0",
            working_dir="/",  # /work is 0700 of uid 10001; the runner (root, no DAC caps) cannot enter it
            environment=SANDBOX_ENV,
            labels=self.labels,
            stdin_open=True,
            tty=False,
            network_disabled=True,
            host_config=self._host_config(memory_mb, cpus),
        )
        cid = created["Id"]
        try:
            attached = self.client.api.attach_socket(cid, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            sock: socket.socket = getattr(attached, "_sock", attached)
            self.client.api.start(cid)
            box = _Box(cid, sock, memory_mb, cpus)
            hello = self._read_msg(box, time.monotonic() + 30)
            if hello.get("dirty"):
                raise SandboxError(f"fresh container is not clean: {hello['dirty']}")
            return box
        except Exception:
            self._remove(cid)
            raise

    def _remove(self, cid: str) -> None:
        with contextlib.suppress(Exception):
            self.client.api.remove_container(cid, force=True)

    def _discard(self, box: _Box) -> None:
        """Kill and remove a container (in the background) and start its replacement."""
        with contextlib.suppress(OSError):
            box.sock.close()
        loop = asyncio.get_running_loop()
        loop.run_in_executor(self._threads, self._remove, box.cid)
        if not self._closed:
            task = loop.create_task(self._refill())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _refill(self) -> None:
        for attempt in range(8):
            if self._closed:
                return
            try:
                box = await self._call(self._create_box)
            except Exception as e:
                self._broken = f"cannot start sandbox containers: {e}"
                log.error("sandbox container start failed (attempt %d): %s", attempt + 1, e)
                await asyncio.sleep(min(10.0, 0.5 * 2**attempt))
                continue
            self._broken = None
            if self._closed:
                self._remove(box.cid)
            else:
                self._ready.put_nowait(box)
            return

    async def close(self) -> None:
        self._closed = True
        # A refill that is creating a container finishes first (it removes what it made once closed): cancelling
        # it would leave the container its thread is still creating behind, after the removal below.
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=30)
        for task in list(self._tasks):
            task.cancel()
        await self._call(self._remove_all_sync)
        self._threads.shutdown(wait=False, cancel_futures=True)

    def _remove_all_sync(self) -> None:
        with contextlib.suppress(Exception):
            for c in self.client.api.containers(all=True, filters={"label": f"{LABEL}.instance={self.instance}"}):
                self._remove(c["Id"])

    # ---- one program -----------------------------------------------------------------------------

    @staticmethod
    def _demux(box: _Box) -> None:
        """Move complete docker stream frames (8-byte header: stream, 0, 0, 0, size) into the payload."""
        while len(box.raw) >= 8:
            stream, size = box.raw[0], struct.unpack(">I", box.raw[4:8])[0]
            if len(box.raw) < 8 + size:
                return
            chunk = bytes(box.raw[8:8 + size])
            del box.raw[:8 + size]
            if stream == 1:
                box.payload += chunk
            else:
                log.debug("sandbox runner stderr: %s", chunk[:500])

    def _read_msg(self, box: _Box, deadline: float) -> dict[str, Any]:
        """One runner frame (4-byte length + JSON) from the attach stream's stdout."""
        while True:
            self._demux(box)
            if len(box.payload) >= 4:
                (n,) = struct.unpack(">I", box.payload[:4])
                if len(box.payload) >= 4 + n:
                    msg = json.loads(bytes(box.payload[4:4 + n]))
                    del box.payload[:4 + n]
                    return msg  # type: ignore[no-any-return]
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Deadline
            box.sock.settimeout(left)
            try:
                data = box.sock.recv(1 << 20)
            except TimeoutError:
                raise _Deadline from None
            if not data:
                raise EOFError("sandbox container closed its stream")
            box.raw += data

    def _exchange(self, box: _Box, request: dict[str, Any], deadline: float) -> dict[str, Any]:
        data = json.dumps(request).encode()
        box.sock.settimeout(max(0.05, deadline - time.monotonic()))
        box.sock.sendall(struct.pack(">I", len(data)) + data)
        return self._read_msg(box, deadline)

    async def _take(self) -> _Box:
        while True:
            if self._broken and self._ready.empty() and not self._tasks:
                raise SandboxError(self._broken)
            try:
                return await asyncio.wait_for(self._ready.get(), 5.0 if self._broken else 120.0)
            except TimeoutError:
                if self._broken:
                    raise SandboxError(self._broken) from None
                raise SandboxError("no sandbox container became ready in 120s") from None

    async def _fit(self, box: _Box, limits: ExecLimits) -> _Box:
        """Apply this request's memory/CPU limits to the container (a cheap live cgroup update)."""
        if (box.memory_mb, box.cpus) == (limits.memory_mb, limits.cpus):
            return box
        mem = f"{limits.memory_mb + RUNNER_OVERHEAD_MB}m"
        await self._call(self._update, box.cid, mem, int(limits.cpus * 1e9))
        box.memory_mb, box.cpus = limits.memory_mb, limits.cpus
        return box

    def _update(self, cid: str, mem: str, nano_cpus: int) -> None:
        # docker-py's update_container() has no nano_cpus, and the container was created with NanoCpus
        import docker.utils

        api = self.client.api
        size = docker.utils.parse_bytes(mem)
        data = {"Memory": size, "MemorySwap": size, "NanoCpus": nano_cpus}
        api._raise_for_status(api._post_json(api._url("/containers/{0}/update", cid), data=data))

    async def run(self, argv: list[str], stdin: bytes, limits: ExecLimits, judge: Judge | None = None) -> RunResult:
        if self._closed:
            raise SandboxError("sandbox is closed")
        box = await self._take()
        start = time.monotonic()
        request: dict[str, Any] = {"argv": argv, "stdin": base64.b64encode(stdin).decode(), "env": SANDBOX_ENV,
                                   "output_bytes": limits.output_bytes}
        if judge is not None:
            request["judge"] = {"source": judge.source, "input": base64.b64encode(judge.stdin).decode()}
        try:
            box = await self._fit(box, limits)
            start = time.monotonic()
            reply = await self._call(self._exchange, box, request, start + limits.timeout_s + RESET_SLACK_S)
        except _Deadline:
            self._discard(box)  # the wall-clock limit kills the whole container
            return RunResult(None, b"", b"", time.monotonic() - start, timed_out=True)
        except (OSError, EOFError, ValueError) as e:
            oom = await self._call(self._container_oom, box.cid)
            self._discard(box)
            if oom:
                return RunResult(None, b"", b"", time.monotonic() - start, signal=9, oom_killed=True)
            raise SandboxLost(f"sandbox container lost: {e}") from e
        except BaseException:
            self._discard(box)  # cancelled mid-run: the container's state is unknown
            raise
        if "error" in reply or reply.get("dirty"):
            log.warning("discarding sandbox container: %s", reply.get("error") or reply.get("dirty"))
            self._discard(box)
            if "error" in reply:
                raise SandboxLost(f"sandbox runner failed: {reply['error']}")
        else:
            self._ready.put_nowait(box)
        return RunResult(
            exit_code=reply["exit"],
            stdout=base64.b64decode(reply["stdout"]),
            stderr=base64.b64decode(reply["stderr"]),
            duration_s=reply["duration_s"],
            signal=reply["signal"],
            oom_killed=bool(reply["oom"]),
            output_exceeded=bool(reply["output_exceeded"]),
            judge_output=base64.b64decode(reply["judge"]) if reply.get("judge") is not None else None,
        )

    def _container_oom(self, cid: str) -> bool:
        try:
            return bool(self.client.api.inspect_container(cid)["State"].get("OOMKilled"))
        except Exception:
            return False


def reap_stale(client: Any) -> int:
    """Remove sandbox containers whose owning server process is gone (crash, kill -9)."""
    removed = 0
    for c in client.api.containers(all=True, filters={"label": f"{LABEL}=1"}):
        owner = (c.get("Labels") or {}).get(f"{LABEL}.owner", "")
        if owner and _owner_alive(owner):
            continue
        with contextlib.suppress(Exception):
            client.api.remove_container(c["Id"], force=True)
            removed += 1
    return removed


def engine_reachable(docker_url: str | None = None) -> bool:
    try:
        import docker

        client = docker.DockerClient(base_url=docker_url) if docker_url else docker.from_env()
        client.ping()
        client.close()
        return True
    except Exception:
        return False
