"""Bubblewrap sandbox: the fallback when no Docker engine is reachable (weaker; the server warns loudly).

Each program gets a fresh bwrap: all namespaces unshared (network included), the host's /usr bound
read-only, a private /proc and /dev, a size-capped tmpfs at /work, no environment but SANDBOX_ENV, all
capabilities dropped, and the whole tree dies with its parent. Resource limits are rlimits set by prlimit
(address space, processes, file size, open files, CPU seconds, no core files); each concurrent slot runs
as its own unprivileged host uid, so RLIMIT_NPROC (counted per uid) isolates slots from each other. Memory
is limited per process (RLIMIT_AS), not per sandbox: that is the main weakness against the docker backend.
The wall-clock limit kills bwrap's process group, and the PID namespace takes every descendant with it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import shutil
import signal
import time
from dataclasses import replace

from graders.sandbox.base import SANDBOX_ENV, ExecLimits, Judge, RunResult, SandboxError
from graders.sandbox.zygote_main import io_uring_filter

log = logging.getLogger(__name__)

FIRST_UID = 20001  # slot i runs as host uid FIRST_UID + i
JUDGE_UID_OFFSET = 1000  # a slot's judge runs as host uid FIRST_UID + i + 1000 (uid 10000 inside its own bwrap)
JUDGE_RESULT_CAP = 16 << 20


class BwrapSandbox:
    """Sandbox backend "bwrap"."""

    name = "bwrap"

    def __init__(self, slots: int, python: str = "/usr/bin/python3") -> None:
        self.bwrap = shutil.which("bwrap")
        self.prlimit = shutil.which("prlimit")
        self.setpriv = shutil.which("setpriv")
        self.python = python
        self._slots: asyncio.Queue[int] = asyncio.Queue()
        for i in range(slots):
            self._slots.put_nowait(FIRST_UID + i)
        self._procs: set[asyncio.subprocess.Process] = set()

    async def start(self) -> None:
        if not self.bwrap or not self.prlimit or not self.setpriv:
            raise SandboxError("bwrap backend needs the bwrap, prlimit and setpriv programs")
        probe = await self.run(["python3", "-c", "print('ok')"], b"", ExecLimits(timeout_s=20))
        if probe.stdout.strip() != b"ok":
            raise SandboxError(f"bwrap probe failed: exit {probe.exit_code}: {probe.stderr[-500:]!r}")

    def command(self, argv: list[str], limits: ExecLimits, uid: int, seccomp_fd: int, inner_uid: int = 10001
                ) -> list[str]:
        assert self.bwrap and self.prlimit and self.setpriv
        argv = [self.python if a == "python3" and i == 0 else a for i, a in enumerate(argv)]
        env: list[str] = []
        for k, v in SANDBOX_ENV.items():
            env += ["--setenv", k, v]
        # setpriv, not Popen(user=...): setuid in a vfork child of a threaded server crashes (SIGSEGV)
        return [
            self.setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--",
            self.prlimit,
            f"--as={limits.memory_mb * 1024 * 1024}",
            f"--nproc={limits.pids}",
            f"--fsize={limits.disk_mb * 1024 * 1024}",
            "--nofile=256",
            "--core=0",
            f"--cpu={math.ceil(limits.timeout_s) + 1}",
            "--",
            self.bwrap,
            "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--ro-bind", "/usr", "/usr",
            "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
            "--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin",
            "--proc", "/proc", "--dev", "/dev",
            "--size", str(limits.disk_mb * 1024 * 1024), "--tmpfs", "/work",
            "--size", str(1024 * 1024), "--tmpfs", "/tmp",
            "--chdir", "/work", "--uid", str(inner_uid), "--gid", str(inner_uid),
            "--seccomp", str(seccomp_fd),  # attack class "io_uring": refused (graders/sandbox/zygote_main.py)
            "--clearenv", *env,
            "--", *argv,
        ]

    async def run(self, argv: list[str], stdin: bytes, limits: ExecLimits, judge: Judge | None = None) -> RunResult:
        uid = await self._slots.get()
        try:
            if judge is not None:
                return await self._run_judged(uid, argv, limits, judge)
            return await self._run(uid, argv, stdin, limits)
        finally:
            self._slots.put_nowait(uid)

    async def _run_judged(self, uid: int, argv: list[str], limits: ExecLimits, judge: Judge) -> RunResult:
        """The program and its judge in two bwraps of two host uids, joined by two pipes."""
        prog_in_r, prog_in_w = os.pipe()
        prog_out_r, prog_out_w = os.pipe()
        stop = asyncio.Event()
        program = asyncio.ensure_future(self._run(uid, argv, b"", limits, stdio=(prog_in_r, prog_out_w), stop=stop))
        try:
            judge_argv = ["python3", "-I", "-S", "-B", "-c", judge.source, str(prog_in_w), str(prog_out_r)]
            judged = await self._run(uid + JUDGE_UID_OFFSET, judge_argv, judge.stdin,
                                     replace(limits, output_bytes=JUDGE_RESULT_CAP, timeout_s=limits.timeout_s + 0.5),
                                     pass_fds=(prog_in_w, prog_out_r), inner_uid=10000)
        finally:
            stop.set()
            run = await program
        ok = judged.exit_code == 0 and not judged.output_exceeded
        return replace(run, timed_out=run.timed_out or judged.timed_out, judge_output=judged.stdout if ok else None)

    async def _spawn(self, uid: int, argv: list[str], limits: ExecLimits, stdio: tuple[int, int] | None,
                     pass_fds: tuple[int, ...], inner_uid: int) -> asyncio.subprocess.Process:
        filt_r, filt_w = os.pipe()
        os.write(filt_w, io_uring_filter())
        os.close(filt_w)
        pipe = asyncio.subprocess.PIPE
        try:
            return await asyncio.create_subprocess_exec(
                *self.command(argv, limits, uid, filt_r, inner_uid), stdin=stdio[0] if stdio else pipe,
                stdout=stdio[1] if stdio else pipe, stderr=pipe, env={}, cwd="/", start_new_session=True,
                pass_fds=(filt_r, *pass_fds),
            )
        except OSError as e:
            raise SandboxError(f"cannot start bwrap: {e}") from e
        finally:
            for fd in (filt_r, *pass_fds, *(stdio or ())):
                os.close(fd)  # the children hold them now: EOF follows their ends

    async def _run(self, uid: int, argv: list[str], stdin: bytes, limits: ExecLimits,
                   stdio: tuple[int, int] | None = None, stop: asyncio.Event | None = None,
                   pass_fds: tuple[int, ...] = (), inner_uid: int = 10001) -> RunResult:
        start = time.monotonic()
        proc = await self._spawn(uid, argv, limits, stdio, pass_fds, inner_uid)
        self._procs.add(proc)
        out, err = bytearray(), bytearray()
        exceeded = asyncio.Event()

        async def pump(stream: asyncio.StreamReader | None, buf: bytearray) -> None:
            if stream is None:
                return
            # Keep reading to EOF even past the cap: a paused pipe would keep proc.wait() from returning.
            while chunk := await stream.read(65536):
                if exceeded.is_set():
                    continue
                buf += chunk
                if len(out) + len(err) > limits.output_bytes:
                    exceeded.set()

        async def feed() -> None:
            if proc.stdin is None:
                return
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                proc.stdin.write(stdin)
                await proc.stdin.drain()
                proc.stdin.close()

        tasks = [asyncio.ensure_future(x) for x in (feed(), pump(proc.stdout, out), pump(proc.stderr, err))]
        waiter = asyncio.ensure_future(proc.wait())
        limit_hit = asyncio.ensure_future(exceeded.wait())
        stopped = asyncio.ensure_future(stop.wait() if stop else asyncio.Event().wait())
        try:
            done, _ = await asyncio.wait({waiter, limit_hit, stopped}, timeout=limits.timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
            timed_out = not done
            if waiter not in done:
                self._kill(proc)
                await proc.wait()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 1.0)
        finally:
            for t in (*tasks, limit_hit, stopped):
                t.cancel()
            self._kill(proc)
            self._procs.discard(proc)
        code = proc.returncode
        return RunResult(
            exit_code=code if code is not None and code >= 0 else None,
            stdout=bytes(out[: limits.output_bytes + 1]), stderr=bytes(err[: limits.output_bytes + 1]),
            duration_s=time.monotonic() - start,
            signal=-code if code is not None and code < 0 else None,
            timed_out=timed_out and not exceeded.is_set(),
            output_exceeded=exceeded.is_set(),
        )

    @staticmethod
    def _kill(proc: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    async def close(self) -> None:
        for proc in list(self._procs):
            self._kill(proc)


def available() -> bool:
    return all(shutil.which(p) is not None for p in ("bwrap", "prlimit", "setpriv"))
