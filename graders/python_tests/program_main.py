"""The program's side of python_tests: runs INSIDE the sandbox as the program's uid, in the program's own process
(sent as `python3 -I -S -B -c <wire.py + this file>`), and serves the judge's calls.

It is UNTRUSTED as soon as the program's code has run: the program may patch or replace any of it, answer
for it, or write anything on the reply channel. Nothing here is relied on for the verdict; it only makes an
honest program's answers easy to send. The judge (judge_main.py, another uid) type-checks every reply.

Protocol (one JSON object per line). From the judge on fd 0: `{"op": "load", "code", "rebind"}` once, then
`{"op": "call", "name", "args", "kwargs"}` or `{"op": "get", "name"}`. Replies on fd 1: `{"loaded": {name: kind}}`
or `{"raise": [exception type names, most derived first], "msg"}`, then per request `{"ok": value, "args": [args,
kwargs] after the call}` (values in wire.py's encoding), `{"raise": ...}` or `{"bad": why}`. Before the program
runs, the channel moves off fds 0/1: the program's prints go to stderr and its stdin reads as empty."""

import builtins
import json
import os
import sys

if __name__ != "__main__":  # imported on the host (unit tests, type checks); in the sandbox wire.py's text precedes
    from graders.python_tests.wire import NotPlainData, WireError, _encode, decode

MUTABLE = (list, dict, set, bytearray)


def _reply(fd, text):
    data = (text + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


def _raised(exc):
    names = [c.__name__ for c in type(exc).__mro__ if c is not object]
    try:
        msg = str(exc)[:500]
    except BaseException:
        msg = ""
    return json.dumps({"raise": names, "msg": msg})


def _kind(value):
    if isinstance(value, type):
        return "class"
    if isinstance(value, type(sys)):
        return "module"
    return "function" if callable(value) else "data"


def _answer(namespace, req):
    """The reply (JSON text) to one call/get request."""
    fn = namespace.get(req.get("name"))
    if req.get("op") == "get":
        return '{"ok":' + json.dumps(_encode(fn, 0, [200_000], False)) + "}"
    args, kwargs = decode(req["args"]), decode(req["kwargs"])
    try:
        result = fn(*args, **kwargs)
    except BaseException as e:
        return _raised(e)
    try:
        ok = json.dumps(_encode(result, 0, [200_000], False))
        changed = "null"
        if any(isinstance(a, MUTABLE) for a in (*args, *kwargs.values())):
            changed = json.dumps(_encode([args, kwargs], 0, [200_000], False))
    except (NotPlainData, RecursionError) as e:
        return json.dumps({"bad": str(e)[:200]})
    except BaseException as e:  # a returned generator that raises while it is materialized
        return _raised(e)
    return '{"ok":' + ok + ',"args":' + changed + "}"


def serve():
    requests = open(os.dup(0), "rb")  # noqa: SIM115  (lives as long as the process)
    out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    load = json.loads(requests.readline())
    module = type(sys)("__candidate__")
    module.__dict__["__builtins__"] = builtins
    sys.modules["__candidate__"] = module
    namespace = module.__dict__
    try:
        exec(compile(load["code"], "<candidate>", "exec"), namespace)
        if load.get("rebind"):  # the prompt's own helpers win over a completion's redefinitions
            exec(compile(load["rebind"], "<prompt>", "exec"), namespace)
    except BaseException as e:
        _reply(out, _raised(e))
        os._exit(0)
    kinds = {k: _kind(v) for k, v in list(namespace.items()) if not k.startswith("__")}
    _reply(out, json.dumps({"loaded": kinds}))
    for line in requests:
        try:
            req = json.loads(line)
            text = _answer(namespace, req)
        except (WireError, KeyError, TypeError, ValueError) as e:
            text = json.dumps({"bad": "bad request: " + str(e)[:200]})
        _reply(out, text)
    os._exit(0)


if __name__ == "__main__":
    serve()
