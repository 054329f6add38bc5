"""The pristine zygote (runs INSIDE the sandbox; the runner starts it as `python3 -I -S -B -c <this file> <fd>`).

Per program, a fresh interpreter start-up dominated the pool's cost. The zygote pays it once per container:
it starts exactly like a program's own `python3 -I -S -B -c` would, imports what python_tests' program
side needs, and
then only ever forks. It NEVER executes untrusted code and never sees a program's data: the runner (PID 1)
hands it, over a private socketpair, only argv, the environment and the child's three pipe ends
(SCM_RIGHTS); the program's input is written by the runner or the judge straight into the child's pipe.
Each child is forked from that untouched
state and discarded after its one program, so no module state, global, file or thread of an earlier
program can reach a later one.

The child: new session, the pipes on fds 0/1/2 and every other fd closed (the socketpair included), cwd
/work, dumpable again (as exec would make it), oom_score_adj 1000, environment replaced by the request's.
Then, if argv is `python3 -I -S -B -c CODE [args]` (the zygote's own interpreter configuration) it runs
CODE in-process like `-c` would (fresh __main__, sys.argv, SystemExit/traceback/atexit/flush semantics);
anything else is exec'd as usual. Not identical to a fresh interpreter: the str/bytes hash secret is the
zygote's (random per container, since -I ignores PYTHONHASHSEED; it is no secret of the grading: the
verdict is decided by the judge, another uid), the modules imported here are already in sys.modules (pristine, never
touched by untrusted code), and `random`, if imported later, seeds itself in the child (the zygote never
imports it; os.urandom is the kernel's). Every program inherits the zygote's seccomp filter refusing io_uring.

The zygote is visible to programs (same uid) but non-dumpable: no ptrace, /proc/<pid>/mem, /fd or
environ. It can be signalled, stopped or have its rlimits/priority changed by a program; the runner
detects each (socket EOF, stopped state, snapshot comparison) and the container is discarded. It kills
the other processes after each program (kill(-1) spares only itself and PID 1).

Messages on the socketpair are marshal-encoded dicts (one per SOCK_SEQPACKET record)."""

import _signal  # noqa: F401
import _socket
import builtins
import collections  # noqa: F401  (preloaded for the python_tests program side: graders/python_tests/wire.py)
import ctypes
import decimal  # noqa: F401
import fractions  # noqa: F401
import json  # noqa: F401
import marshal
import math  # noqa: F401
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


CODE_CACHE: dict = {}  # source -> code object, compiled here before the fork (the host's sources, never a program's)


def compiled(source):
    """The code object of a `-c` source, compiled once per container (compiling is not executing)."""
    code = CODE_CACHE.get(source)
    if code is None:
        try:
            code = compile(source, "<string>", "exec", dont_inherit=True)
        except (SyntaxError, ValueError):
            return None  # the child compiles again and reports it like python3 -c would
        if len(CODE_CACHE) < 16:
            CODE_CACHE[source] = code
    return code


def run_code(argv, code=None):
    """`python3 -I -S -B -c CODE args` in this (forked) interpreter."""
    main_mod = type(sys)("__main__")
    main_mod.__dict__.update({"__builtins__": builtins, "__annotations__": {},
                              "__loader__": sys.modules["__main__"].__loader__})
    sys.modules["__main__"] = main_mod
    sys.argv = ["-c", *argv[6:]]
    sys.orig_argv = list(argv)
    status = 0
    try:
        exec(code or compile(argv[5], "<string>", "exec", dont_inherit=True), main_mod.__dict__)
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


def child(sock, fds, req, zygote_locale, code):
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
            run_code(argv, code)
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


def io_uring_filter():
    """A seccomp BPF program (struct sock_filter[]) that makes io_uring_setup/enter/register (425-427 on every
    architecture with the unified syscall table; x32's bit masked off) fail with EPERM and allows the rest.
    It stacks on Docker's own profile (which in Docker 20.10 allows io_uring) and closes attack class
    "kernel attack surface: io_uring" (its many past privilege escalations)."""
    def insn(code, jt, jf, k):
        return struct.pack("HBBI", code, jt, jf, k)

    return b"".join([
        insn(0x20, 0, 0, 0),  # A = seccomp_data.nr
        insn(0x54, 0, 0, 0xBFFFFFFF),  # A &= ~__X32_SYSCALL_BIT
        insn(0x35, 0, 2, 425),  # A >= 425 ? next : allow
        insn(0x25, 1, 0, 427),  # A > 427 ? allow : deny
        insn(0x06, 0, 0, 0x00050000 | 1),  # SECCOMP_RET_ERRNO | EPERM
        insn(0x06, 0, 0, 0x7FFF0000),  # SECCOMP_RET_ALLOW
    ])


def install_io_uring_filter():
    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]

    code = io_uring_filter()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS (the container has it already)
    prog = Prog(len(code) // 8, code)
    if libc.prctl(22, 2, ctypes.byref(prog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        raise OSError(ctypes.get_errno(), "cannot install the io_uring seccomp filter")


def main():
    sock = _socket.socket(fileno=int(sys.argv[1]))
    ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # no ptrace, /proc/<pid>/mem|fd|environ from programs
    install_io_uring_filter()  # inherited by every program forked from here
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
        argv = req["argv"]
        code = compiled(argv[5]) if argv[:5] == PYTHON_C and len(argv) >= 6 else None
        pid = os.fork()
        if pid == 0:
            child(sock, fds, req, zygote_locale, code)
        for fd in fds:
            os.close(fd)
        sock.send(marshal.dumps({"pid": pid}))
        _, status = os.waitpid(pid, 0)
        sock.send(marshal.dumps({"status": os.waitstatus_to_exitcode(status)}))


if __name__ == "__main__":
    main()
