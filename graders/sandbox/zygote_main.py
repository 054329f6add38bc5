"""The pristine zygote (runs INSIDE the sandbox; the runner starts it as `python3 -I -S -B -c <this file> <fd>`).

Per program, a fresh interpreter start-up dominated the pool's cost. The zygote pays it once per container:
it starts exactly like the harness's own `python3 -I -S -B -c` would, imports what the harness needs, and
then only ever forks. It NEVER executes untrusted code and never sees a program's data: the runner (PID 1)
hands it, over a private socketpair, only argv, the environment and the child's three pipe ends
(SCM_RIGHTS); stdin (which carries the harness's per-run HMAC key) is written by the runner straight into
the child's pipe, so no key ever exists in the zygote's memory. Each child is forked from that untouched
state and discarded after its one program, so no module state, global, file or thread of an earlier
program can reach a later one.

The child: new session, the pipes on fds 0/1/2 and every other fd closed (the socketpair included), cwd
/work, dumpable again (as exec would make it), oom_score_adj 1000, environment replaced by the request's.
Then, if argv is `python3 -I -S -B -c CODE [args]` (the zygote's own interpreter configuration) it runs
CODE in-process like `-c` would (fresh __main__, sys.argv, SystemExit/traceback/atexit/flush semantics);
anything else is exec'd as usual. Not identical to a fresh interpreter: the str/bytes hash secret is the
zygote's (random per container, since -I ignores PYTHONHASHSEED; it is no secret of the grading: the
HMAC key comes from the host), the modules imported here are already in sys.modules (pristine, never
touched by untrusted code), and `random`, if imported later, seeds itself in the child (the zygote never
imports it; os.urandom is the kernel's).

The zygote is visible to programs (same uid) but non-dumpable: no ptrace, /proc/<pid>/mem, /fd or
environ. It can be signalled, stopped or have its rlimits/priority changed by a program; the runner
detects each (socket EOF, stopped state, snapshot comparison) and the container is discarded. It kills
the other processes after each program (kill(-1) spares only itself and PID 1).

Messages on the socketpair are marshal-encoded dicts (one per SOCK_SEQPACKET record)."""

import _hashlib  # noqa: F401  (preloaded for the harness)
import _signal  # noqa: F401
import _socket
import builtins
import ctypes
import marshal
import os
import struct
import sys
import time

PR_SET_DUMPABLE = 4
LOCALE_VARS = ("LANG", "LC_ALL", "LC_CTYPE")
PYTHON_C = ["python3", "-I", "-S", "-B", "-c"]


def exit_status(exc):
    """What the interpreter exits with for an uncaught SystemExit (Python/pythonrun.c)."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        sys.stderr.write(str(code) + "\n")
    except BaseException:
        pass
    return 1


def run_code(argv):
    """`python3 -I -S -B -c CODE args` in this (forked) interpreter."""
    main_mod = type(sys)("__main__")
    main_mod.__dict__.update({"__builtins__": builtins, "__annotations__": {},
                              "__loader__": sys.modules["__main__"].__loader__})
    sys.modules["__main__"] = main_mod
    sys.argv = ["-c", *argv[6:]]
    sys.orig_argv = list(argv)
    status = 0
    try:
        exec(compile(argv[5], "<string>", "exec", dont_inherit=True), main_mod.__dict__)
    except SystemExit as e:
        status = exit_status(e)
    except BaseException as e:
        tb = e.__traceback__.tb_next if e.__traceback__ is not None else None  # drop this function's frame
        try:
            sys.excepthook(type(e), e.with_traceback(tb), tb)
        except BaseException:
            pass
        status = 1
    try:
        threading = sys.modules.get("threading")
        if threading is not None:
            threading._shutdown()
    except BaseException:
        pass
    try:
        import atexit

        atexit._run_exitfuncs()
    except BaseException:
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            if stream is sys.stdout and status == 0:
                status = 120
    os._exit(status)


def child(sock, fds, req, zygote_locale):
    """In the forked child: never returns."""
    try:
        os.setsid()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        sock.detach()  # the object must not close the fd number again later
        os.closerange(3, 1 << 16)
        os.chdir("/work")
        ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
        try:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write("1000")  # the OOM killer takes the program, not the runner or the zygote
        except OSError:
            pass
        argv, env = req["argv"], req["env"]
        os.environ.clear()
        os.environ.update(env)
        same_locale = all(env.get(k) == zygote_locale.get(k) for k in LOCALE_VARS)
        if argv[:5] == PYTHON_C and len(argv) >= 6 and same_locale:
            run_code(argv)
        os.execvpe(argv[0], argv, env)
    except BaseException as e:
        try:
            os.write(2, f"sandbox zygote: cannot start the program: {type(e).__name__}: {e}\n".encode())
        finally:
            os._exit(127)


def reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def others_dead(me):
    """True when every process but PID 1 and this one is gone or a zombie (the runner reaps those)."""
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in (1, me):
            continue
        try:
            with open("/proc/" + name + "/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X"):
            return False
    return True


def kill_others():
    """SIGKILL to everything this process may signal except itself and PID 1 (kill(-1) semantics)."""
    me = os.getpid()
    for attempt in range(220):  # about 1s: dying processes of a CPU-throttled container can be slow to go
        try:
            os.kill(-1, 9)
        except ProcessLookupError:
            pass
        reap()
        if others_dead(me):
            return True
        if attempt < 20:
            os.sched_yield()
        else:
            time.sleep(0.005)
    return False


def main():
    sock = _socket.socket(fileno=int(sys.argv[1]))
    ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # no ptrace, /proc/<pid>/mem|fd|environ from programs
    zygote_locale = {k: os.environ.get(k) for k in LOCALE_VARS}
    fd_space = _socket.CMSG_SPACE(3 * struct.calcsize("i"))
    sock.send(marshal.dumps({"ready": os.getpid()}))
    while True:
        msg, ancdata, flags, _ = sock.recvmsg(1 << 20, fd_space)
        if not msg:
            os._exit(0)  # the runner is gone
        fds: list[int] = []
        for level, kind, data in ancdata:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                fds += struct.unpack(f"{len(data) // 4}i", data[: len(data) - len(data) % 4])
        req = marshal.loads(msg)
        if req.get("op") == "reset":
            for fd in fds:
                os.close(fd)
            sock.send(marshal.dumps({"reset": kill_others()}))
            continue
        if req.get("op") != "spawn" or len(fds) != 3 or flags & _socket.MSG_CTRUNC:
            for fd in fds:
                os.close(fd)
            sock.send(marshal.dumps({"error": "bad request"}))
            continue
        if len(os.listdir("/proc/self/task")) != 1:  # fork is only safe single-threaded
            os._exit(3)
        pid = os.fork()
        if pid == 0:
            child(sock, fds, req, zygote_locale)
        for fd in fds:
            os.close(fd)
        sock.send(marshal.dumps({"pid": pid}))
        _, status = os.waitpid(pid, 0)
        sock.send(marshal.dumps({"status": os.waitstatus_to_exitcode(status)}))


main()
