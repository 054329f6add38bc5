"""The in-sandbox test harness of the python_tests grader (runs INSIDE the sandbox; this file's text is sent
as `python3 -I -S -B -c`, and the graded program and tests come on stdin, never as files). The docker backend
runs it without a new interpreter start-up: in a process forked from the container's pristine zygote
(graders/sandbox/zygote_main.py), which has the same interpreter configuration, imported this file's modules,
and never ran untrusted code nor saw any key; each such process runs one program and is discarded.

Threat model. The graded program is hostile: a policy under RL will find any way to be reported as passing.
The verdict is decided OUTSIDE the sandbox (graders/verdict.py) from an authenticated report; this harness
only produces the report, and everything it does not report counts as failure. What it defends against:

* early exits (`exit(0)`, `os._exit(0)`, `raise SystemExit`, signals), atexit and sys.excepthook tricks:
  the host requires one report per expected test plus an authenticated end marker, so any exit before the
  harness finishes is FAILED, whatever the exit code;
* printed fake markers: report frames carry an HMAC-SHA256 under a key the host generates per run and sends
  on stdin; the program's own stdout is redirected to stderr, so the report channel carries nothing it
  prints, and anything unauthenticated on it fails the run;
* objects that fake equality or truth (`__eq__`, `__bool__`, `__len__`, `__format__`, `__getitem__`, ...):
  the host rewrites every `assert` (graders/asserts.py) so that each operand of a comparison, arithmetic,
  truth test, attribute or item access, f-string, or argument of a builtin must be plain data (exact
  builtin types, recursively) before a builtin operation decides; a forged object fails the check;
* patched modules and builtins: the tests run with a private copy of the builtins taken before the program
  ran, the modules the tests import are imported and snapshotted first and verified unchanged afterwards,
  and the harness uses only references it captured before the program ran (C functions, not module state);
* patched unittest / pytest, conftest.py, rewritten test files: no test framework and no files are used;
* reading the key: the key lives only in this process's memory (with the zygote, the runner writes the
  payload straight into this process's stdin pipe: the zygote, a sibling every program can see, never holds
  it, and no earlier program's process survives to read it). The process is made non-dumpable (no
  /proc/PID/mem or ptrace from its children), and an audit hook (which the program cannot remove) denies
  frame and object-graph introspection (sys._getframe, tracebacks' and generators' frames, settrace and
  setprofile, gc.get_objects/get_referrers, ctypes, /proc/*/mem) and Python-level signal handlers (which
  would receive a frame).

Hash randomization: `-I` ignores PYTHONHASHSEED, so each fresh interpreter had its own random str/bytes hash
secret; forked from the zygote, all programs of one container share the zygote's (random per container).
A program can infer it, but nothing in the verdict depends on it (the report's HMAC key is the host's
`secrets.token_bytes`, delivered per run), and programs cannot pass anything on to later ones.

Residual risk (documented, not defended): a program that defeats CPython itself (memory corruption without
ctypes), or tests that pass their own callables to the program (their __globals__ lead to the test
namespace). The sandbox still contains such a program; the worst outcome is a wrong PASS for that item.

Report frames (one per line on the original stdout): `RLVR1 <seq> <payload> <hmac(key, "<seq>|<payload>")>`
with payload fields separated by `|` and messages hex-encoded, produced only with C-level builtins."""


def main():
    import _hashlib
    import _signal
    import builtins
    import ctypes
    import marshal
    import os
    import sys

    # Captured before any untrusted code runs; nested functions use only these.
    type_, len_, id_, str_, bool_, exec_, compile_ = type, len, id, str, bool, exec, compile
    isinstance_, getattr_, slice_, callable_, base_exc = isinstance, getattr, slice, callable, BaseException
    hmac_new, write, dup, dup2, open_fd, exit_ = _hashlib.hmac_new, os.write, os.dup, os.dup2, os.open, os._exit
    modules = sys.modules
    none_t, ellipsis_t = type_(None), type_(...)
    leaf = {none_t, bool, int, float, complex, str, bytes, ellipsis_t, range}
    containers = {list, tuple, set, frozenset, dict, bytearray}
    safe_callables = {type_(len), type_(main), type, type_(os), type_([].append), type_(str.join)}

    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: no /proc/<pid>/mem or ptrace from others
    payload = marshal.loads(sys.stdin.buffer.read())
    key = bytes.fromhex(payload["key"])
    report = dup(1)
    devnull = open_fd(os.devnull, os.O_RDONLY)
    dup2(devnull, 0)
    dup2(2, 1)  # the program's prints go to stderr; only frames use the report fd
    seq = [0]

    def emit(*fields):
        body = "|".join([str_(f) for f in fields])
        tag = hmac_new(key, (str_(seq[0]) + "|" + body).encode(), "sha256").hexdigest()
        write(report, ("RLVR1 " + str_(seq[0]) + " " + body + " " + tag + "\n").encode())
        seq[0] += 1

    def hexmsg(text):
        try:
            return str_(text)[:500].encode("utf-8", "replace").hex()
        except base_exc:
            return b"".hex()

    def describe(exc):
        try:
            return type_(exc).__name__ + ": " + str_(exc)
        except base_exc:
            return type_(exc).__name__

    # ---- audit hook: no frames, no object graph, no ctypes, no foreign memory ----------------------------
    blocked_events = {"sys._getframe", "sys._current_frames", "sys.settrace", "sys.setprofile",
                      "sys.addaudithook", "gc.get_objects", "gc.get_referrers", "gc.get_referents",
                      "sys._getframemodulename", "cpython.PyInterpreterState_Clear"}
    blocked_attrs = {"tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_back", "f_locals", "f_globals"}
    blocked_imports = {"_signal", "_ctypes", "gc", "_testcapi", "_xxsubinterpreters"}
    armed = [False]

    def hook(event, args):
        if not armed[0]:
            return
        if event in blocked_events:
            raise ValueError("denied by the grading harness: " + event)
        if event.startswith("ctypes."):
            raise PermissionError("denied by the grading harness: " + event)
        if event == "object.__getattr__" and len_(args) > 1 and args[1] in blocked_attrs:
            raise AttributeError("denied by the grading harness: " + str_(args[1]))
        if event == "import" and args and args[0] in blocked_imports:
            raise ImportError("denied by the grading harness: import " + str_(args[0]))
        if event == "open" and args and isinstance_(args[0], str | bytes):
            path = args[0].decode("utf-8", "replace") if isinstance_(args[0], bytes) else args[0]
            if path.startswith("/proc/") and ("mem" in path or "/fd" in path or "environ" in path):
                raise PermissionError("denied by the grading harness: " + path)

    def no_handlers(signalnum, handler):
        if callable_(handler):
            raise PermissionError("Python signal handlers are denied by the grading harness")
        return real_signal(signalnum, handler)

    real_signal = _signal.signal
    _signal.signal = no_handlers

    # ---- checks used by the rewritten asserts -------------------------------------------------------------
    class Forged(BaseException):  # not Exception: the program cannot swallow it
        pass

    class CheckFailed(BaseException):
        pass

    def is_plain(value):
        stack, seen = [value], set()
        while stack:
            v = stack.pop()
            t = type_(v)
            if t in leaf:
                continue
            if t not in containers:
                return False
            if id_(v) in seen:
                continue
            seen.add(id_(v))
            if t is dict:
                stack.extend(dict.keys(v))
                stack.extend(dict.values(v))
            elif t is not bytearray:
                stack.extend(v)
        return True

    def plain(value):
        if not is_plain(value):
            raise Forged("not plain data: " + type_(value).__name__)
        return value

    def arg_ok(value):
        return type_(value) in safe_callables or is_plain(value)

    def truth(value):
        return bool_(plain(value))

    def compare(op, a, b):
        if op == "==":
            return a == b
        if op == "!=":
            return a != b
        if op == "<":
            return a < b
        if op == "<=":
            return a <= b
        if op == ">":
            return a > b
        if op == ">=":
            return a >= b
        if op == "in":
            return a in b
        return a not in b

    def cmp(ops, *operands):
        for i in range(len_(ops)):
            a, b, op = operands[i], operands[i + 1], ops[i]
            if op == "is":
                ok = a is b
            elif op == "is not":
                ok = a is not b
            else:
                plain(a)
                plain(b)
                ok = compare(op, a, b)
            if type_(ok) is not bool:
                raise Forged("comparison did not give a bool")
            if not ok:
                return False
        return True

    def call(fn, *args, **kwargs):
        owner = getattr_(fn, "__self__", None) if type_(fn) in (type_([].append), type_(main.__get__(1))) else None
        if owner is not None and not (type_(owner) is type_(os) or is_plain(owner)):
            raise Forged("method of a non-plain object: " + type_(owner).__name__)
        if type_(fn) in (type_(len), type_([].append)) or fn in builtin_types:
            for a in args:
                if not arg_ok(a):
                    raise Forged("argument of " + str_(getattr_(fn, "__name__", "?")) + " is not plain data")
            for a in kwargs.values():
                if not arg_ok(a):
                    raise Forged("keyword argument is not plain data")
        return fn(*args, **kwargs)

    def attr(obj, name):
        if not (type_(obj) in safe_callables or is_plain(obj)):
            raise Forged("attribute ." + name + " of a non-plain object: " + type_(obj).__name__)
        return getattr_(obj, name)

    def item(obj, index):
        plain(obj)
        return obj[index]

    builtin_types = {v for v in vars(builtins).values() if type_(v) is type}
    results: dict[int, int] = {}

    def record(check_id, value):
        if truth(value):
            results[check_id] = results.get(check_id, 0) + 1
            return
        raise CheckFailed(check_id)

    # ---- run ------------------------------------------------------------------------------------------------
    for name in payload["test_imports"]:
        try:
            __import__(name)
        except base_exc:
            pass
    # Only what the tests import is watched: importing other modules legitimately touches import machinery.
    watched = {n: (modules[n], dict(vars(modules[n]))) for n in payload["test_imports"]
               if modules.get(n) is not None and n not in ("sys", "builtins", "importlib")}
    clean_builtins = dict(vars(builtins))

    def tampered():
        for n, (m, snapshot) in watched.items():
            if modules.get(n) is not m:
                return "module " + n + " was replaced"
            current = vars(m)
            for k, v in snapshot.items():
                if current.get(k, snapshot) is not v:
                    return "module " + n + " was modified (" + k + ")"
        return ""

    sys.addaudithook(hook)
    armed[0] = True
    program = {"__name__": "__candidate__", "__builtins__": builtins}
    try:
        exec_(compile_(payload["code"], "<candidate>", "exec"), program)
    except base_exc as e:
        emit("candidate", "error", hexmsg(describe(e)))
        emit("end", "0")
        exit_(0)
    entry = payload["entry_point"]
    if entry and entry not in program:
        emit("candidate", "missing", hexmsg("entry point " + entry + " is not defined"))
        emit("end", "0")
        exit_(0)
    emit("candidate", "ok", "")
    shadow = set(clean_builtins)
    helpers = {"__rlvr_assert__": record, "__rlvr_cmp__": cmp, "__rlvr_truth__": truth, "__rlvr_plain__": plain,
               "__rlvr_call__": call, "__rlvr_attr__": attr, "__rlvr_item__": item, "__rlvr_slice__": slice_}
    for unit_index, source in enumerate(payload["units"]):
        namespace = {k: v for k, v in program.items()
                     if not k.startswith("__") and (k not in shadow or k == entry)}
        namespace.update(helpers)
        namespace["__builtins__"] = dict(clean_builtins)
        namespace["__name__"] = "__tests__"
        results.clear()
        status, message = "ok", ""
        try:
            exec_(compile_(source, "<tests>", "exec"), namespace)
        except CheckFailed as e:
            status, message = "failed", "assertion " + str_(e.args[0]) + " failed"
        except Forged as e:
            status, message = "forged", str_(e.args[0])
        except base_exc as e:
            status, message = "error", describe(e)
        problem = tampered()
        if problem:
            status, message = "tampered", problem
        counts = ",".join([str_(k) + ":" + str_(v) for k, v in sorted(results.items())])
        emit("unit", str_(unit_index), status, counts, hexmsg(message))
    emit("end", str_(len_(payload["units"])))
    exit_(0)


main()
