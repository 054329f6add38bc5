"""The warm container's PID 1 (runs INSIDE the sandbox as uid 10001; this file is sent as `python3 -c`).

It reads one framed request at a time from the container's stdin (the host's attach socket), runs the
program as a child with pipes, caps its output, and then RESETS the container before answering: SIGKILL to
every other process (kill(-1) from PID 1 reaches all of them; PID 1 itself cannot be signalled from inside
its namespace), zombies reaped, /work, /dev/shm, /dev/mqueue and System V IPC wiped, and the result
re-checked. The answer carries `clean`; the host discards a container that is not clean, so no file or
process of one graded program can reach the next. The runner marks itself non-dumpable first, so programs
of the same uid can neither ptrace it nor open /proc/1/mem or /proc/1/fd. The wall-clock limit is the
host's: it kills the whole container.

Frames are a 4-byte big-endian length followed by JSON."""

import base64
import ctypes
import json
import os
import selectors
import signal
import struct
import subprocess
import sys
import time

WIPE_DIRS = ("/work", "/dev/shm", "/dev/mqueue")
OOM_CONTROL = "/sys/fs/cgroup/memory/memory.oom_control"
PR_SET_DUMPABLE = 4


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


LIBC = ctypes.CDLL(None)


def child_setup():
    os.setsid()
    # Dumpable again (no other process exists yet: the last reset killed them) so the program owns its
    # /proc entries; exec would do the same.
    LIBC.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")  # the OOM killer takes the program, not the runner
    except OSError:
        pass


def pump(proc, stdin_data, cap):
    """Feed stdin, collect stdout/stderr up to cap bytes in total; stop early past the cap."""
    sel = selectors.DefaultSelector()
    out = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    for f in (proc.stdout, proc.stderr):
        os.set_blocking(f.fileno(), False)
        sel.register(f.fileno(), selectors.EVENT_READ)
    view, pos = memoryview(stdin_data), 0
    if stdin_data:
        os.set_blocking(proc.stdin.fileno(), False)
        sel.register(proc.stdin.fileno(), selectors.EVENT_WRITE)
    else:
        proc.stdin.close()
    total, exceeded, exited_at = 0, False, None
    while len(sel.get_map()) > 0:
        for key, _ in sel.select(0.05):
            fd = key.fd
            if fd in out:
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(fd)
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
                    proc.stdin.close()
        if exceeded:
            break
        if exited_at is None and proc.poll() is not None:
            exited_at = time.monotonic()
        # a daemonized grandchild may hold the pipes open: the program is over when its process is
        if exited_at is not None and time.monotonic() - exited_at > 0.1:
            break
    sel.close()
    return bytes(out[proc.stdout.fileno()]), bytes(out[proc.stderr.fileno()]), exceeded


def other_pids():
    me = os.getpid()
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != me]


def reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def kill_all():
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


def reset():
    """Back to the state of a fresh container; returns the reason it is not, or ''."""
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
    if other_pids():
        return "processes reappeared"
    if any(os.listdir(d) for d in WIPE_DIRS if os.path.isdir(d)):
        return "files survived the wipe"
    if sysv_ipc_used():
        return "System V IPC objects survived"
    return ""


def run_one(req):
    start = time.monotonic()
    oom_before = oom_kills()
    proc = subprocess.Popen(
        req["argv"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=req["env"], cwd="/work", preexec_fn=child_setup, close_fds=True,
    )
    stdout, stderr, exceeded = pump(proc, base64.b64decode(req["stdin"]), req["output_bytes"])
    if exceeded:
        proc.kill()
    code = proc.wait()  # before reset(): its waitpid(-1) would steal the exit status
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
    LIBC.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    dirty = reset()
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


main()
sys.exit(0)
