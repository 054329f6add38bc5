"""The trusted judge of python_tests: runs the tests (and the prompt's helpers) INSIDE the sandbox, as its own uid
(10000, never the program's), and never executes program code. It is sent as `python3 -c <wire.py + this
file>`; the docker runner forks it from PID 1 (root) and drops it to uid 10000, bwrap starts it in its own
bwrap as another host uid. argv: the fds of the program's request and reply pipes. fd 0: the job (JSON from
the host); fd 1: the result (JSON, read by the runner, decided on the host by verdict.py).

Every name the tests use that the program defines (the entry point first) is bound to a proxy: calling it
sends the arguments as plain data to the program's process (program_main.py) and rebuilds the reply with
wire.decode; comparisons, truth tests and everything else the tests do happen here on trusted values.
Arguments the program mutated come back and are written into the tests' own objects. Program exceptions
come back as builtin exception types (anything else as ProgramException), so `try/except` and
`pytest.raises` in the tests work. Tests that pass a value that is not plain data to the program (a callable)
stop with status `invalid` and say why; tests that use program objects were refused on the host (prepare.py).
Nothing the program does can make a unit `invalid` (attack class "verdict dodging": an INVALID_REQUEST is
no verdict, the trainer would drop the sample instead of scoring it 0): a program class called by the
tests is just a call whose result (an instance) is not plain data, i.e. a failure."""

import ast
import builtins
import json
import os
import select
import sys
import time
import traceback

if __name__ != "__main__":  # imported on the host (unit tests, type checks); in the sandbox wire.py's text precedes
    from graders.python_tests.pytest_shim import make_pytest_shim
    from graders.python_tests.wire import NotPlainData, WireError, _decode, encode

_EXCEPTIONS = {n: c for n, c in vars(builtins).items() if isinstance(c, type) and issubclass(c, Exception)}


class Stop(BaseException):  # not Exception: a test's `except Exception` must not swallow it
    """Ends the current unit with `status`; `final` ends every later unit too."""

    status = "failed"
    final = False


class ProgramDied(Stop):
    status, final = "died", True


class ProgramTimeout(Stop):
    status, final = "timeout", True


class ProgramFault(Stop):
    """A reply that is not a well-formed plain-data answer (the program broke the protocol or sent objects)."""


class NeedsObjects(Stop):
    status = "invalid"


class ProgramException(Exception):
    """A program exception whose type is not a builtin one."""


class Channel:
    """Line-delimited JSON to and from the program's process, under the run's deadline."""

    def __init__(self, to_fd, from_fd, deadline, max_reply):
        self.to_fd, self.from_fd, self.deadline, self.max_reply = to_fd, from_fd, deadline, max_reply
        self.buf = b""
        os.set_blocking(to_fd, False)
        self.calls = 0

    def _wait(self, fd, write):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise ProgramTimeout("the time limit was reached while the program was running")
        ready = select.select([], [fd], [], left) if write else select.select([fd], [], [], left)
        if not ready[1 if write else 0]:
            raise ProgramTimeout("the time limit was reached while the program was running")

    def send(self, obj):
        data = (json.dumps(obj) + "\n").encode()
        while data:
            self._wait(self.to_fd, True)
            try:
                data = data[os.write(self.to_fd, data):]
            except BlockingIOError:
                continue
            except OSError:
                raise ProgramDied("the program closed its request channel") from None

    def recv(self):
        while b"\n" not in self.buf:
            if len(self.buf) > self.max_reply:
                raise ProgramFault("a reply exceeded the size limit")
            self._wait(self.from_fd, False)
            chunk = os.read(self.from_fd, 1 << 16)
            if not chunk:
                raise ProgramDied("the program's process exited")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        try:
            msg = json.loads(line)
        except (ValueError, RecursionError):
            raise ProgramFault("the program sent a malformed reply") from None
        if type(msg) is not dict:
            raise ProgramFault("the program sent a malformed reply")
        return msg


def rebuild_exception(msg):
    names, text = msg.get("raise"), msg.get("msg")
    text = text if type(text) is str else ""
    names = [n for n in names if type(n) is str] if type(names) is list else []
    shown = (names[0][:100] if names else "Exception") + (": " + text if text else "")
    for name in names:
        if name in _EXCEPTIONS:
            try:
                exc = _EXCEPTIONS[name](text)
            except Exception:
                continue
            exc.program_message = shown  # type: ignore[attr-defined]
            return exc
    exc = ProgramException(shown)
    exc.program_message = shown  # type: ignore[attr-defined]
    return exc


def _plain(value):
    try:
        return _decode(value, 0, [200_000])
    except WireError as e:
        raise ProgramFault(str(e)) from None
    except RecursionError:
        raise ProgramFault("too deeply nested") from None


def sync(old, new):
    """Write the program's view of a mutated argument into the tests' object; False when `old` is immutable."""
    if type(old) is not type(new):
        return False
    if type(old) is list:
        if len(old) != len(new):
            old[:] = new
        for i in range(len(old)):
            if old[i] is not new[i] and not sync(old[i], new[i]):
                old[i] = new[i]
        return True
    if type(old) in (dict, set):
        old.clear()
        old.update(new)
        return True
    if type(old) is bytearray:
        old[:] = new
        return True
    return False


class ProgramFunction:
    """A name the program defines, called from the tests: a remote call with plain data both ways."""

    def __init__(self, chan, name):
        self._chan, self.__name__ = chan, name

    def __repr__(self):
        return "<program function " + self.__name__ + ">"

    def __call__(self, *args, **kwargs):
        try:
            request = {"op": "call", "name": self.__name__, "args": encode(list(args)), "kwargs": encode(kwargs)}
        except NotPlainData as e:
            raise NeedsObjects("the tests pass a value to the program's " + self.__name__ + " that is not plain "
                               "data (" + str(e) + "); only plain data crosses the sandbox boundary") from None
        self._chan.calls += 1
        self._chan.send(request)
        reply = self._chan.recv()
        if "raise" in reply:
            raise rebuild_exception(reply)
        if "ok" not in reply:
            raise ProgramFault(self.__name__ + ": " + str(reply.get("bad", "malformed reply"))[:300])
        value = _plain(reply["ok"])
        changed = reply.get("args")
        if changed is not None:
            new = _plain(changed)
            if type(new) is list and len(new) == 2 and type(new[0]) is list and len(new[0]) == len(args):
                for old, now in zip(args, new[0], strict=True):
                    sync(old, now)
                if type(new[1]) is dict:
                    for k, old in kwargs.items():
                        if k in new[1]:
                            sync(old, new[1][k])
        return value


def program_names(chan, kinds, source, namespace):
    """Proxies for the names the unit may use that the program defines and nothing trusted does."""
    used = {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name)}
    for name in sorted(used):
        if name in namespace or name in vars(builtins) or name not in kinds:
            continue
        kind = kinds[name]
        if kind in ("function", "class"):  # a class is called like a function: an instance is no plain data
            namespace[name] = ProgramFunction(chan, name)
        elif kind == "data":
            chan.send({"op": "get", "name": name})
            reply = chan.recv()
            if "ok" in reply:
                namespace[name] = _plain(reply["ok"])


def _assert_line(exc, filename):
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
    return lines[-1] if lines else "?"


def run_unit(chan, kinds, prelude, entry, source, index):
    """One test unit in a fresh copy of the trusted namespace: {"status", "msg"}."""
    namespace = dict(prelude)
    if entry:
        namespace[entry] = ProgramFunction(chan, entry)
        namespace.setdefault("candidate", namespace[entry])  # HumanEval's name for it; the tests may rebind it
    filename = "<test[" + str(index) + "]>"
    try:
        program_names(chan, kinds, source, namespace)
        exec(compile(source, filename, "exec"), namespace)
    except AssertionError as e:
        detail = getattr(e, "program_message", "") or str(e)[:300]
        where = "assertion at line " + str(_assert_line(e, filename)) + " failed"
        return {"status": "failed", "msg": where + (": " + detail if detail else "")}
    except Stop as e:
        return {"status": e.status, "msg": str(e)[:500], "final": e.final}
    except Exception as e:
        shown = getattr(e, "program_message", "") or type(e).__name__ + ": " + str(e)[:300]
        return {"status": "failed", "msg": "raised " + shown}
    except BaseException as e:  # SystemExit/KeyboardInterrupt from the tests themselves
        return {"status": "failed", "msg": "the tests raised " + type(e).__name__}
    return {"status": "passed", "msg": ""}


def load_program(chan, job):
    """Send the program; returns (result of the load, the program's names and their kinds)."""
    chan.send({"op": "load", "code": job["code"], "rebind": job["prelude"]})
    try:
        reply = chan.recv()
    except Stop as e:
        return {"status": e.status, "msg": str(e)}, {}
    if "raise" in reply:
        return {"status": "error", "msg": rebuild_exception(reply).program_message}, {}
    kinds = reply.get("loaded")
    if type(kinds) is not dict or not all(type(k) is str and type(v) is str for k, v in kinds.items()):
        return {"status": "failed", "msg": "the program sent a malformed reply"}, {}
    entry = job["entry_point"]
    if entry and kinds.get(entry) not in ("function", "class"):
        return {"status": "missing", "msg": "entry point " + entry + " is not defined"}, {}
    return {"status": "ok", "msg": ""}, kinds


def judge(job, chan):
    loaded, kinds = load_program(chan, job)
    units = []
    if loaded["status"] == "ok":
        sys.modules.setdefault("pytest", make_pytest_shim())
        prelude = {"__name__": "__tests__", "__builtins__": builtins}
        exec(compile(job["prelude"], "<prompt>", "exec"), prelude)
        for i, source in enumerate(job["units"]):
            result = run_unit(chan, kinds, prelude, job["entry_point"], source, i)
            units.append(result)
            if result.pop("final", False):
                units += [dict(result) for _ in job["units"][i + 1:]]
                break
    return {"load": loaded, "units": units, "calls": chan.calls}


def main():
    to_program, from_program = int(sys.argv[1]), int(sys.argv[2])
    result_fd = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 1)  # the tests' prints must not corrupt the result
    data = b""
    while chunk := os.read(0, 1 << 20):
        data += chunk
    job = json.loads(data)
    chan = Channel(to_program, from_program, time.monotonic() + job["timeout_s"], job["max_reply"])
    result = judge(job, chan)
    out = json.dumps(result).encode()
    while out:
        out = out[os.write(result_fd, out):]
    os._exit(0)


if __name__ == "__main__":
    main()
