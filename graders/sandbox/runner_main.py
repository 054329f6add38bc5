"""The warm container's PID 1 (runs INSIDE the sandbox as uid 10001; this file is sent as `python3 -c`, with the
zygote's source, graders/sandbox/zygote_main.py, as its first argument).

It starts the pristine zygote (a `python3 -I -S -B` that has imported what the harness needs and never runs
untrusted code), then reads one framed request at a time from the container's stdin (the host's attach
socket). Per program it makes three pipes, hands the child's ends to the zygote (SCM_RIGHTS over a private
socketpair), which forks the program's process from its untouched state; the runner itself writes stdin
(the harness's payload and HMAC key: the zygote never sees it), caps stdout+stderr, and gets the exit
status from the zygote. Then it RESETS the container before answering: the zygote sends SIGKILL to every
other process (kill(-1) spares only itself and PID 1), the runner reaps the orphans, wipes /work, /dev/shm,
/dev/mqueue and System V IPC, and re-checks: no process but the zygote, nothing left in those places, and
the runner's and the zygote's rlimits, nice value, scheduling policy, CPU affinity and I/O priority as they
were at start (a program of the same uid may lower them with prlimit/setpriority/sched_*/ioprio_set, and
children would inherit them). The answer carries `dirty`; the host discards a container that is not clean,
so no file or process of one graded program can reach the next. A zygote that dies, stops or stops
answering (a program may signal it: same uid) makes the runner take over (it becomes the program's parent,
kills everything itself) and the container dirty; if the zygote had already reaped the program, its exit
status is lost and reported as SIGKILL (the python_tests verdict comes from the authenticated report anyway).

The runner and the zygote are non-dumpable, so programs of the same uid can neither ptrace them nor open
/proc/<pid>/mem or /proc/<pid>/fd. PID 1 ignores every signal sent from inside its PID namespace unless it
has a handler, so the runner resets Python's SIGINT handler to the default (otherwise a program's
kill(1, SIGINT) would crash it). The wall-clock limit is the host's: it kills the whole container.

Frames are a 4-byte big-endian length followed by JSON."""

import base64
import contextlib
import ctypes
import json
import marshal
import os
import resource
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time

WIPE_DIRS = ("/work", "/dev/shm", "/dev/mqueue")
OOM_CONTROL = "/sys/fs/cgroup/memory/memory.oom_control"
PR_SET_DUMPABLE = 4
ZYGOTE_OK_STATES = ("S", "R", "D")  # anything else (stopped, traced, zombie, gone) means it was tampered with


def read_exact(fd, n):
    buf = b""
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def send(obj):
    data = json.dumps(obj).encode()
    os.write(1, struct.pack(">I", len(data)) + data)


def oom_kills():
    try:
        with open(OOM_CONTROL) as f:
            for line in f:
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def other_pids():
    me = os.getpid()
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != me]


def wipe(path):
    for name in os.listdir(path):
        full = os.path.join(path, name)
        if os.path.isdir(full) and not os.path.islink(full):
            os.chmod(full, 0o700)
            wipe(full)
            os.rmdir(full)
        else:
            os.unlink(full)


def sysv_ipc_used():
    for name in ("shm", "sem", "msg"):
        try:
            with open("/proc/sysvipc/" + name) as f:
                if len(f.read().splitlines()) > 1:
                    return True
        except OSError:
            pass
    return False


LIBC = ctypes.CDLL(None)
IOPRIO_GET = {"x86_64": 252, "aarch64": 31}.get(os.uname().machine)
ZYGOTE_ENV_KEYS = ("PATH", "LANG", "LC_ALL", "LC_CTYPE")


def process_settings(pid):
    """What a program of the same uid could change about another process and its future children."""
    limits = tuple(resource.prlimit(pid, getattr(resource, name)) for name in sorted(dir(resource))
                   if name.startswith("RLIMIT_"))
    ioprio = LIBC.syscall(IOPRIO_GET, 1, pid) if IOPRIO_GET else None
    return (limits, os.getpriority(os.PRIO_PROCESS, pid), os.sched_getscheduler(pid),
            sorted(os.sched_getaffinity(pid)), ioprio)


def proc_state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


class Zygote:
    """The runner's side of the socketpair to the zygote."""

    def __init__(self, source):
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {k: os.environ[k] for k in ZYGOTE_ENV_KEYS if k in os.environ}
        self.proc = subprocess.Popen(
            ["python3", "-I", "-S", "-B", "-c", source, str(theirs.fileno())], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(theirs.fileno(),), cwd="/work", env=env,
        )
        theirs.close()
        self.pid = self.proc.pid
        self.alive = True
        hello = self.recv(30)
        if not hello or hello.get("ready") != self.pid:
            raise RuntimeError("the sandbox zygote did not start")
        self.settings = process_settings(self.pid)

    def send(self, obj, fds=()):
        self.sock.settimeout(5)
        if fds:
            socket.send_fds(self.sock, [marshal.dumps(obj)], list(fds))
        else:
            self.sock.send(marshal.dumps(obj))

    def recv(self, timeout=None):
        """The next message; None when the zygote is gone. Raises TimeoutError past the timeout."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 16)
        except TimeoutError:
            raise
        except OSError:
            return None
        try:
            return marshal.loads(data) if data else None
        except (EOFError, ValueError, TypeError):
            return None

    def healthy(self):
        return self.alive and proc_state(self.pid) in ZYGOTE_OK_STATES

    def lose(self):
        """The zygote died, stopped or misbehaved: kill it and wait for it, so that its children become PID 1's
        (the runner takes over its duties). The container is reported dirty."""
        if not self.alive:
            return
        self.alive = False
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


ZYGOTE = None


def child_pids():
    return [ZYGOTE.pid] if ZYGOTE is not None and ZYGOTE.alive else []


def reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if ZYGOTE is not None and pid == ZYGOTE.pid:
            ZYGOTE.alive = False


def kill_all():
    """The runner's own kill(-1): everything but PID 1, the zygote included."""
    if ZYGOTE is not None:
        ZYGOTE.lose()
    for _ in range(200):
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        reap()
        if not other_pids():
            return True
        time.sleep(0.005)
    return False


def settle(expected):
    """Reap the zombies the zygote's kill left to PID 1 until only `expected` remain."""
    for _ in range(200):
        reap()
        if sorted(other_pids()) == expected:
            return True
        time.sleep(0.005)
    return False


def kill_others():
    """Every process but the runner and the zygote gone; False if the zygote had to be given up."""
    z = ZYGOTE
    if z is None or not z.healthy():
        if z is not None:
            z.lose()
        return False
    try:
        z.send({"op": "reset"})
        reply = z.recv(5)
    except OSError:  # TimeoutError included
        reply = None
    if not reply or reply.get("reset") is not True:
        z.lose()
        return False
    return settle([z.pid])


def reset():
    """Back to the state of a fresh container; returns the reason it is not, or ''."""
    dirty = ""
    if not kill_others():
        if ZYGOTE is not None:
            dirty = "the sandbox zygote was lost or tampered with"
        if not kill_all():
            return "processes survived SIGKILL"
    try:
        for d in WIPE_DIRS:
            if os.path.isdir(d):
                wipe(d)
        if sysv_ipc_used():
            subprocess.run(["ipcrm", "--all"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=5, check=False)
            reap()
    except Exception as e:
        return f"wipe failed: {type(e).__name__}: {e}"
    if not settle(child_pids()):
        return "processes reappeared"
    if any(os.listdir(d) for d in WIPE_DIRS if os.path.isdir(d)):
        return "files survived the wipe"
    if sysv_ipc_used():
        return "System V IPC objects survived"
    if process_settings(os.getpid()) != RUNNER_SETTINGS:
        return "the runner's limits or priority were changed"
    if ZYGOTE is not None and ZYGOTE.alive:
        try:
            changed = process_settings(ZYGOTE.pid) != ZYGOTE.settings
        except OSError:
            changed = True
        if changed:
            ZYGOTE.lose()
            return "the sandbox zygote's limits or priority were changed"
    return dirty


def spawn(req, fds):
    """Fork the program from the zygote; returns its pid, or None when the zygote is unusable."""
    z = ZYGOTE
    if z is None or not z.healthy():
        return None
    try:
        z.send({"op": "spawn", "argv": req["argv"], "env": req["env"]}, fds)
        reply = z.recv(10)
    except OSError:
        reply = None
    if not reply or "pid" not in reply:
        z.lose()
        return None
    return reply["pid"]


def exit_status(pid, block):
    """After the zygote was lost, the program's process is PID 1's child: its status, or None if still running."""
    try:
        done, raw = os.waitpid(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        return -signal.SIGKILL  # reaped by the zygote before it was lost: unknown, report a kill
    return os.waitstatus_to_exitcode(raw) if done else None


def pump(pid, stdin_fd, out_fds, stdin_data, cap):
    """Feed stdin, collect stdout/stderr up to cap bytes in total; stop early past the cap.

    Returns (stdout, stderr, exceeded, status); status is the exit code (negative: signal), or None when the
    program is still running (past the cap)."""
    z = ZYGOTE
    assert z is not None
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


def wait_status(pid):
    """The program's exit status, once its process has exited."""
    z = ZYGOTE
    assert z is not None
    while z.alive:
        try:
            msg = z.recv(0.05)
        except TimeoutError:
            if not z.healthy():
                z.lose()
            continue
        if msg and "status" in msg:
            return msg["status"]
        z.lose()
    return exit_status(pid, block=True)


def run_one(req):
    start = time.monotonic()
    oom_before = oom_kills()
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        pid = spawn(req, (in_r, out_w, err_w))
    finally:
        for fd in (in_r, out_w, err_w):
            os.close(fd)
    if pid is None:
        for fd in (in_w, out_r, err_r):
            os.close(fd)
        raise RuntimeError("the sandbox zygote is unusable")
    try:
        stdout, stderr, exceeded, status = pump(pid, in_w, [out_r, err_r], base64.b64decode(req["stdin"]),
                                                req["output_bytes"])
    finally:
        os.close(out_r)
        os.close(err_r)
    if status is None:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)  # past the output cap
        status = wait_status(pid)  # before reset(): its reaping would lose the exit status
    code = status
    dirty = reset()
    return {
        "exit": code if code >= 0 else None,
        "signal": -code if code < 0 else None,
        "stdout": base64.b64encode(stdout[: req["output_bytes"] + 1]).decode(),
        "stderr": base64.b64encode(stderr[: req["output_bytes"] + 1]).decode(),
        "output_exceeded": exceeded,
        "oom": oom_kills() > oom_before,
        "duration_s": time.monotonic() - start,
        "dirty": dirty,
    }


def main():
    global ZYGOTE, RUNNER_SETTINGS
    LIBC.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # PID 1 + default disposition: programs cannot signal it
    RUNNER_SETTINGS = process_settings(os.getpid())
    dirty = reset()
    if not dirty:
        try:
            ZYGOTE = Zygote(sys.argv[1])
        except Exception as e:
            dirty = f"cannot start the sandbox zygote: {type(e).__name__}: {e}"
    send({"ready": True, "dirty": dirty})
    while True:
        try:
            (n,) = struct.unpack(">I", read_exact(0, 4))
            req = json.loads(read_exact(0, n))
        except EOFError:
            return
        try:
            send(run_one(req))
        except Exception as e:
            reset()
            send({"error": f"{type(e).__name__}: {e}"})


RUNNER_SETTINGS = None
main()
sys.exit(0)
