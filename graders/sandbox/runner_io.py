"""The runner's pumps: a plain run (stdin in, stdout/stderr out) and a judged run (runs INSIDE the sandbox as
part of PID 1; its text precedes runner_main.py's in the runner's `python3 -c`).

A Judge (graders/sandbox/base.py) is forked from PID 1 (root, never runs program code) and dropped to uid
10000 with no capabilities: the program (uid 10001, forked by the zygote) can neither signal, trace,
prlimit nor read the memory of it or of PID 1, which closes attack class "runner sabotage" for everything
that decides a verdict. The judge gets fd 0 = its input, fd 1 = its result pipe (to the runner), fd 3 = the
program's stdin, fd 4 = the program's stdout; fd 2 is /dev/null."""

import ast  # noqa: F401  (preloaded for the python_tests judge: it is forked from here)
import builtins
import collections  # noqa: F401
import ctypes
import decimal  # noqa: F401
import fractions  # noqa: F401
import math  # noqa: F401
import os
import re  # noqa: F401
import selectors
import signal
import sys
import time
import traceback  # noqa: F401

JUDGE_FDS = (0, 1, 3, 4)
JUDGE_RESULT_CAP = 16 << 20


JUDGE_CODE: dict = {}  # source -> code object: compiled once per container, not once per program


def drop_to(uid):
    """Become `uid` with no capability left anywhere: the bounding set is emptied first (CAP_SETPCAP), so not
    even a file-capability binary could give one back; then the ids, which clears the permitted set."""
    libc = ctypes.CDLL(None)
    for cap in range(64):
        libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP (EINVAL past the last capability: ignored)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def fork_judge(source, fds, uid):
    """Fork the judge with `fds` = (input, result, to_program, from_program); returns its pid."""
    code = JUDGE_CODE.get(source)
    if code is None:
        code = compile(source, "<judge>", "exec")
        if len(JUDGE_CODE) < 4:
            JUDGE_CODE[source] = code
    pid = os.fork()
    if pid:
        return pid
    status = 1
    try:
        drop_to(uid)  # the judge is an ordinary process of its own uid
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0
        high = [os.dup(fd) for fd in fds]
        for target, fd in zip(JUDGE_FDS, high, strict=True):
            os.dup2(fd, target)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 2)
        os.closerange(5, 1 << 16)
        os.chdir("/")
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as in any python3: a gone program is EPIPE, not death
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        sys.argv = ["-c", "3", "4"]
        exec(code, {"__name__": "__main__", "__builtins__": builtins})
        status = 0
    except BaseException:
        status = 1
    finally:
        os._exit(status)


def pump_judged(zygote, job_w, job, err_r, result_r, cap):
    """Feed the judge its input, collect the program's stderr (capped) and the judge's result until the judge
    closes its result pipe. Returns (stderr, result or None, exceeded, program status or None)."""
    sel = selectors.DefaultSelector()
    for fd in (err_r, result_r):
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    os.set_blocking(job_w, False)
    sel.register(job_w, selectors.EVENT_WRITE)
    ctl = zygote.sock.fileno()
    sel.register(ctl, selectors.EVENT_READ)
    err, result, view, pos = bytearray(), bytearray(), memoryview(job), 0
    exceeded, status, judge_done = False, None, False
    while not judge_done and not exceeded:
        events = sel.select(0.05)
        for key, _ in events:
            fd = key.fd
            if fd == ctl:
                sel.unregister(ctl)
                msg = zygote.recv(0)
                if msg and "status" in msg:
                    status = msg["status"]
                else:
                    zygote.lose()
            elif fd == job_w:
                try:
                    pos += os.write(fd, view[pos:pos + 65536])
                except BlockingIOError:
                    continue
                except BrokenPipeError:
                    pos = len(view)
                if pos >= len(view):
                    sel.unregister(fd)
                    os.close(fd)
                    job_w = -1
            else:
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(fd)
                    judge_done = judge_done or fd == result_r
                    continue
                if fd == result_r:
                    result += chunk
                    exceeded = len(result) > JUDGE_RESULT_CAP
                else:
                    err += chunk
                    exceeded = len(err) > cap
        if zygote.alive and not events and not zygote.healthy():
            zygote.lose()  # stopped (or killed) by the program; the judge goes on regardless
    sel.close()
    if job_w >= 0:
        os.close(job_w)
    return bytes(err), (bytes(result) if judge_done else None), exceeded, status


def pump(z, pid, stdin_fd, out_fds, stdin_data, cap, exit_status):
    """Feed stdin, collect stdout/stderr up to cap bytes in total; stop early past the cap.

    Returns (stdout, stderr, exceeded, status); status is the exit code (negative: signal), or None when the
    program is still running (past the cap)."""
    sel = selectors.DefaultSelector()
    out = {fd: bytearray() for fd in out_fds}
    for fd in out_fds:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    pipes = set(out_fds)
    view, pos = memoryview(stdin_data), 0
    if stdin_data:
        os.set_blocking(stdin_fd, False)
        sel.register(stdin_fd, selectors.EVENT_WRITE)
        pipes.add(stdin_fd)
    else:
        os.close(stdin_fd)
    ctl = z.sock.fileno()
    sel.register(ctl, selectors.EVENT_READ)
    total, exceeded, exited_at, status = 0, False, None, None
    while True:
        events = sel.select(0.05)
        for key, _ in events:
            fd = key.fd
            if fd == ctl:
                sel.unregister(ctl)
                try:
                    msg = z.recv(0)
                except OSError:
                    msg = None
                if msg and "status" in msg:
                    status = msg["status"]
                else:
                    z.lose()
            elif fd in out:
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(fd)
                    pipes.discard(fd)
                    continue
                out[fd] += chunk
                total += len(chunk)
                if total > cap:
                    exceeded = True
            else:
                try:
                    pos += os.write(fd, view[pos:pos + 65536])
                except (BrokenPipeError, BlockingIOError) as e:
                    if isinstance(e, BrokenPipeError):
                        pos = len(view)
                if pos >= len(view):
                    sel.unregister(fd)
                    pipes.discard(fd)
                    os.close(fd)
        if exceeded:
            break
        if status is None and z.alive and not events and not z.healthy():
            z.lose()  # stopped (or killed) by the program
        if status is None and not z.alive:
            status = exit_status(pid, block=False)
        if status is not None:
            exited_at = exited_at or time.monotonic()
            # a daemonized grandchild may hold the pipes open: the program is over when its process is
            if not (pipes - {stdin_fd}) or time.monotonic() - exited_at > 0.1:
                break
    sel.close()
    if stdin_fd in pipes:
        os.close(stdin_fd)
    return bytes(out[out_fds[0]]), bytes(out[out_fds[1]]), exceeded, status
