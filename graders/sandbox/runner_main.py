"""The warm container's PID 1 (runs INSIDE the sandbox as root with only CAP_SETUID, CAP_SETGID, CAP_KILL and
CAP_SETPCAP, the last to empty the bounding set of everything it starts;
sent as `python3 -c <runner_io.py + this file>`, with the zygote's source as its first argument).

It never runs program code. It starts the pristine zygote (graders/sandbox/zygote_main.py) as uid 10001, the
uid of every program, then reads one framed request at a time from the container's stdin (the host's attach
socket). Per program it makes the pipes, hands the program's ends to the zygote (SCM_RIGHTS), which forks the
program from its untouched state; with a Judge it also forks the judge (runner_io.py, uid 10000) and
wires the program's stdin/stdout to it. It writes stdin (or the judge's input), caps the program's output,
and gets the exit status from the zygote. Then it RESETS the container before answering: every other
process is killed (the zygote's kill(-1) as uid 10001, then the runner's own as root), /work, /dev/shm,
/dev/mqueue and System V IPC are wiped (with the program's effective uid: no DAC capability needed), and it
re-checks that no process but the zygote is left, nothing is left in those places, and the zygote's
rlimits, nice value, scheduling policy, CPU affinity and I/O priority are as they were (a program of its uid
may change them and later children would inherit them). The answer carries `dirty`; the host discards a
container that is not clean. A zygote that dies, stops or stops answering makes the runner take over (it
becomes the program's parent) and the container dirty.

The program cannot signal, prlimit, renice or trace PID 1 (another uid, no capabilities; PID 1 also ignores
signals it has no handler for, so the runner keeps SIGINT at its default). The runner and the zygote are
non-dumpable. The wall-clock limit is the host's: it kills the whole container.

Not removed, documented: the PID counter and the System V IPC id counters of a container continue from one
program to the next (a program can see how many processes or IPC objects earlier programs of the same
container made: a few bits of channel between consecutive programs; nothing of a verdict depends on them).

Frames are a 4-byte big-endian length followed by JSON."""

import base64
import contextlib
import ctypes
import json
import marshal
import os
import signal
import socket
import struct
import subprocess
import sys
import time

if __name__ != "__main__":  # imported on the host (type checks); in the sandbox runner_io.py's text precedes
    from graders.sandbox.runner_io import drop_to, fork_judge, pump, pump_judged

WIPE_DIRS = ("/work", "/dev/shm", "/dev/mqueue")
OOM_CONTROL = "/sys/fs/cgroup/memory/memory.oom_control"
PR_SET_DUMPABLE = 4
ZYGOTE_OK_STATES = ("S", "R", "D")  # anything else (stopped, traced, zombie, gone) means it was tampered with
PROGRAM_UID = 10001  # the zygote and every program
JUDGE_UID = 10000  # a Judge: trusted, and out of the program's reach (another uid, no caps either)


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
    """What a program of the zygote's uid could change about it and its future children (read through /proc:
    prlimit() on another uid's process needs CAP_SYS_RESOURCE, which the runner does not have)."""
    with open(f"/proc/{pid}/limits") as f:
        limits = f.read()
    ioprio = LIBC.syscall(IOPRIO_GET, 1, pid) if IOPRIO_GET else None
    return (limits, os.getpriority(os.PRIO_PROCESS, pid), os.sched_getscheduler(pid),
            sorted(os.sched_getaffinity(pid)), ioprio)


def proc_state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


@contextlib.contextmanager
def as_program_uid():
    """Act with the program's effective uid/gid (only while no program process is alive). The real and saved
    uid stay 0, so nothing of uid 10001 can signal the runner meanwhile, and euid 0 comes back with its caps."""
    os.setresgid(-1, PROGRAM_UID, -1)
    os.setresuid(-1, PROGRAM_UID, -1)
    try:
        yield
    finally:
        os.setresuid(-1, 0, -1)
        os.setresgid(-1, 0, -1)


class Zygote:
    """The runner's side of the socketpair to the zygote."""

    def __init__(self, source):
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {k: os.environ[k] for k in ZYGOTE_ENV_KEYS if k in os.environ}
        self.proc = subprocess.Popen(
            ["python3", "-I", "-S", "-B", "-c", source, str(theirs.fileno())], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(theirs.fileno(),), cwd="/",
            env=env, preexec_fn=lambda: drop_to(PROGRAM_UID),  # the runner is single-threaded: safe here
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
        with as_program_uid():  # the program's files and IPC objects are its uid's; the runner has no DAC caps
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
    with as_program_uid():
        left = any(os.listdir(d) for d in WIPE_DIRS if os.path.isdir(d))
    if left:
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


def run_judged(req, start, oom_before):
    """The program talks to a judge (runner_io.py), not to the host; the host gets the judge's result."""
    prog_in_r, prog_in_w = os.pipe()
    prog_out_r, prog_out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        pid = spawn(req, (prog_in_r, prog_out_w, err_w))
    finally:
        for fd in (prog_in_r, prog_out_w, err_w):
            os.close(fd)
    if pid is None:
        for fd in (prog_in_w, prog_out_r, err_r):
            os.close(fd)
        raise RuntimeError("the sandbox zygote is unusable")
    job_r, job_w = os.pipe()
    result_r, result_w = os.pipe()
    judge_pid = fork_judge(req["judge"]["source"], (job_r, result_w, prog_in_w, prog_out_r), JUDGE_UID)
    for fd in (job_r, result_w, prog_in_w, prog_out_r):
        os.close(fd)
    try:
        stderr, result, exceeded, status = pump_judged(ZYGOTE, job_w, base64.b64decode(req["judge"]["input"]),
                                                       err_r, result_r, req["output_bytes"])
    finally:
        os.close(err_r)
        os.close(result_r)
    with contextlib.suppress(OSError):
        os.kill(judge_pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(judge_pid, 0)
    if status is None:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)  # the judge is done: the program's server has nothing more to do
        status = wait_status(pid)
    dirty = reset()
    return {
        "exit": status if status >= 0 else None,
        "signal": -status if status < 0 else None,
        "stdout": "",
        "stderr": base64.b64encode(stderr[: req["output_bytes"] + 1]).decode(),
        "judge": None if result is None else base64.b64encode(result).decode(),
        "output_exceeded": exceeded,
        "oom": oom_kills() > oom_before,
        "duration_s": time.monotonic() - start,
        "dirty": dirty,
    }


def run_one(req):
    start = time.monotonic()
    if req.get("judge"):
        return run_judged(req, start, oom_kills())
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
        stdout, stderr, exceeded, status = pump(ZYGOTE, pid, in_w, [out_r, err_r], base64.b64decode(req["stdin"]),
                                                req["output_bytes"], exit_status)
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
if __name__ == "__main__":
    main()
    sys.exit(0)
