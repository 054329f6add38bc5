"""The `python_tests` grader, all of it in this folder (the container pool it runs on is graders/sandbox/).

Files: grader.py (the registered grader: prepare, run, decide, re-grade a lost sandbox once), prepare.py (host:
parse the tests, cut the trusted prelude out of the prompt), judge_main.py (+ pytest_shim.py; in the sandbox,
uid 10000: runs the tests), program_main.py (in the sandbox, uid 10001: runs the program, answers calls),
wire.py (the plain-data encoding, the only thing that crosses), verdict.py (host: the outcome). A new
sandboxed grader (another language, stdin/stdout problems) is a sibling folder with its own grader.py
(found and registered by graders/builtin/__init__.py), judge and program side, on the same
`Sandbox.run(..., judge=Judge(...))` (graders/sandbox/base.py).

Threat model. The program is hostile: a policy under RL searches for any output that earns reward. The
tests and the prompt are trusted (they come with the task). Design: the tests run in a TRUSTED judge process
that never executes program code; every use of a program-defined name by the tests (the entry point,
`candidate`, any other function) is a call into the program's own process that returns only plain data;
every comparison, truth test and exception check of the tests happens in the judge on values the judge
rebuilt itself. Nothing that decides a verdict shares a uid, a process it could signal or re-limit, or
memory with the program: the judge is uid 10000, PID 1 is root with only SETUID/SETGID/KILL/SETPCAP, every
program is uid 10001 with no capabilities (bounding set included) under no-new-privileges.

Attack classes and the mechanism that closes each (tests: tests/integration/test_graders_forgery.py,
test_graders_adversarial.py, test_python_tests_sandbox_lost.py, tests/unit/test_python_tests_*.py):

* builtins rebinding (`__builtins__.range = ...`, `enumerate`, `all`, `len`, `vars`, `AssertionError`):
  the tests' builtins are the judge's, in another process; the program can only rebind its own.
* frames and introspection (frames via closures on patched `_signal.signal`, `f_back`/`f_locals`,
  tracebacks, `gc.get_objects`, settrace): no verdict state exists in the program's process to find; the
  judge's result goes to PID 1 over a pipe the program does not hold. No deny-list is needed.
* memory reading (ctypes on the heap, /proc/PID/mem, process_vm_readv, ptrace): there is no key anymore,
  the tests are never in the program's process, and the judge is another uid and non-dumpable.
* objects that lie (`__eq__`/`__bool__`/`__len__`, builtin subclasses, `__class__` swaps, generators):
  wire.py: only plain data crosses, rebuilt by the judge with its own constructors; custom objects fail.
* self-restoring module patches, module `__class__` swaps, patched `math`/`fractions`/unittest: they patch
  the program's modules; the tests use the judge's.
* redefined prompt helpers (HumanEval/32, /38, /50): prepare.py's prelude (the prompt's imports and helpers)
  runs on the judge's side for the tests and is executed again in the program after its code, so neither
  side sees the completion's redefinitions.
* early exits, printed markers, atexit/excepthook, forged replies or results on any fd: the verdict comes
  only from the judge; a program that exits or answers garbage fails (RUNTIME_ERROR or FAILED).
* runner sabotage (prlimit/renice/signals on PID 1, killing or stopping the zygote or the judge, closing
  fds): PID 1 and the judge are out of reach (EPERM); the zygote is the program's uid, and tampering with
  it costs the container (discarded), not the verdict. If a container dies mid-program anyway, the program
  is graded again on a fresh one; a second death is RUNTIME_ERROR (never INFRA_ERROR, which the trainer
  would retry and drop).
* verdict dodging (an INVALID_REQUEST or INFRA_ERROR is no verdict: the trainer drops the sample instead of
  scoring it 0): only the task can make a request invalid. Tests that use program objects are refused on the
  host from the tests and the prompt alone (prepare.object_use); a program class called by the tests is an
  ordinary call whose instance is no plain data (FAILED); forged or oversized replies, odd exceptions and
  lost containers all end in a verdict (FAILED, RUNTIME_ERROR, TIMEOUT).
* resource exhaustion (fork/memory/output bombs, busy loops, sleeping): the container's pids, memory and
  CPU limits, the output cap and the wall clock (graders/sandbox/docker_pool.py).
* io_uring (kernel attack surface): refused by a seccomp filter (graders/sandbox/zygote_main.py).

Tests that need a program object on the trusted side (they call a method no plain type has on what a program
name returns, the prompt makes the entry point a class, or they pass a callable to the program) are
INVALID_REQUEST with a message saying why, never FAILED.

Residual risks (documented, not defended): a kernel or Docker escape; timing or resource side channels
between concurrent containers; the PID and System V IPC id counters of one container continue across its
programs (a few bits from one program to the next, nothing a verdict depends on); /proc/self/mountinfo
shows the overlay's host paths; tests that are themselves weak (a program that returns what a weak test
expects passes it). The bwrap fallback (graders/sandbox/bwrap.py) runs the judge in its own bwrap as
another host uid; its memory limit is per process (RLIMIT_AS), not per sandbox."""
