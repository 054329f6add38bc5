"""Start an rlvr service as a child process on loopback and wait until it announces its address.

Servers print `RLVR_READY <name> <host:port>` once listening (rlvr.serving.announce); the parent reads
that line, so port 0 (a free port) works without races."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path


class ServiceStartError(RuntimeError):
    """A child service exited or did not announce itself in time."""


class ServiceProcess:
    """A child service process; use as a context manager or call stop()."""

    def __init__(
        self,
        module: str,
        args: list[str],
        name: str,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.name = name
        self.cmd = [sys.executable, "-u", "-m", module, *args]
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_path
        self.proc: subprocess.Popen[str] | None = None
        self.address: str | None = None
        self._tail: deque[str] = deque(maxlen=60)
        self._ready = threading.Event()

    def start(self, timeout_s: float = 300.0) -> str:
        self.proc = subprocess.Popen(
            self.cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=self.env,
            start_new_session=True,  # its own process group, so stop() reaches the engine's workers too
        )
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + timeout_s
        while not self._ready.wait(0.2):
            if self.proc.poll() is not None:
                raise ServiceStartError(
                    f"{self.name} exited with {self.proc.returncode} before it was ready:\n" + self.tail()
                )
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceStartError(f"{self.name} not ready after {timeout_s:.0f}s:\n" + self.tail())
        assert self.address is not None
        return self.address

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        logf = self.log_path.open("a") if self.log_path else None
        try:
            for line in self.proc.stdout:
                self._tail.append(line)
                if logf:
                    logf.write(line)
                    logf.flush()
                if line.startswith("RLVR_READY ") and not self._ready.is_set():
                    parts = line.split()
                    if len(parts) >= 3:
                        self.address = parts[2]
                        self._ready.set()
        finally:
            if logf:
                logf.close()

    def tail(self) -> str:
        return "".join(self._tail)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 30.0, sig: int = signal.SIGTERM) -> int | None:
        """SIGTERM (graceful), then SIGKILL of the whole process group after timeout_s."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # leftover workers of the group
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.poll() is None:
            self.proc.wait(10)
        return self.proc.returncode

    def kill(self) -> None:
        """kill -9 the service (for fault tests)."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)

    def __enter__(self) -> ServiceProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
