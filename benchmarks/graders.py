"""Grader throughput, side by side on the same 200 programs (run: .venv/bin/python benchmarks/graders.py).

* pool:   python_tests through the gRPC service with the warm Docker container pool
* bare:   the same judge + program as plain local subprocesses (no isolation at all)
* cold:   the same judge + program in a fresh `docker run --rm` per program (sampled, extrapolated)
* math:   math-verify grades through the service
Targets on a 2-core machine: pool >= 10x cold, pool >= 0.5x bare, math >= 200 grades/s."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# This file is named like the package it measures: put the repository first, not benchmarks/.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from graders.client import GraderClient  # noqa: E402
from graders.python_tests.grader import JUDGE_SRC, PROGRAM_SRC, job_for  # noqa: E402
from graders.python_tests.prepare import prepare  # noqa: E402
from graders.python_tests.verdict import decide  # noqa: E402
from graders.sandbox.base import SANDBOX_ENV, RunResult  # noqa: E402
from graders.types import GradeItem, GradeStatus  # noqa: E402
from rlvr.procs import ServiceProcess  # noqa: E402

IMAGE = "rlvr-sandbox:bookworm-1"
TESTS = "def check(candidate):\n    assert candidate(3) == {want}\n    assert candidate(0) == {zero}\n"


def programs(n: int) -> list[GradeItem]:
    items = []
    for i in range(n):
        code = (f"def f(x):\n    total = 0\n    for k in range(x):\n        total += k * {i % 7}\n"
                f"    return total + {i}\n")
        want, zero = 3 * (i % 7) + i, i
        items.append(GradeItem("python_tests", code, {"tests": TESTS.format(want=want, zero=zero),
                                                      "entry_point": "f"}, id=str(i)))
    return items


# Judge and program as two processes joined by pipes, in one process tree (no uid separation: the bare and
# cold baselines measure start-up costs, not isolation).
LAUNCH = """
import os, subprocess, sys
job = sys.stdin.buffer.read()
a_r, a_w = os.pipe(); b_r, b_w = os.pipe()
subprocess.Popen([sys.executable, "-I", "-S", "-B", "-c", sys.argv[1]], stdin=a_r, stdout=b_w)
os.close(a_r); os.close(b_w)
j_r, j_w = os.pipe(); os.write(j_w, job); os.close(j_w); os.dup2(j_r, 0)
source, sys.argv = sys.argv[2], ["-c", str(a_w), str(b_r)]
exec(compile(source, "<judge>", "exec"), {"__name__": "__main__"})
"""


def run_local(argv: list[str], item: GradeItem) -> bool:
    tests = prepare(item.fields["tests"], item.fields["entry_point"])
    job = job_for(item.completion, tests, item.fields["entry_point"], 60, 1_000_000)
    start = time.monotonic()
    proc = subprocess.run([*argv, PROGRAM_SRC, JUDGE_SRC], input=job, capture_output=True, timeout=60)
    run = RunResult(proc.returncode, b"", proc.stderr, time.monotonic() - start, judge_output=proc.stdout)
    return decide(run, tests, 60).status is GradeStatus.PASSED


def bare_argv() -> list[str]:
    return ["/usr/bin/python3", "-I", "-S", "-B", "-c", LAUNCH]


def cold_argv() -> list[str]:
    env = [x for k, v in SANDBOX_ENV.items() for x in ("-e", f"{k}={v}")]
    return ["docker", "run", "--rm", "-i", "--network", "none", "--read-only", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "--pids-limit", "64", "--memory", "280m", "--memory-swap", "280m",
            "--cpus", "1", "--user", "10001:10001", "--tmpfs", "/work:size=64m,uid=10001,gid=10001,noexec",
            "--log-driver", "none", "--label", "rlvr.sandbox=1", *env, IMAGE, "python3", "-I", "-S", "-B", "-c",
            LAUNCH]


def timed_local(argv: list[str], items: list[GradeItem], workers: int) -> tuple[float, int]:
    start = time.monotonic()
    with ThreadPoolExecutor(workers) as ex:
        ok = sum(ex.map(lambda it: run_local(argv, it), items))
    return len(items) / (time.monotonic() - start), ok


async def timed_service(address: str, items: list[GradeItem]) -> tuple[float, int]:
    async with GraderClient(address) as client:
        await client.wait_ready(120)
        await client.grade(items[:8])  # warm-up
        start = time.monotonic()
        results = await client.grade(items)
        rate = len(items) / (time.monotonic() - start)
    return rate, sum(r.status is GradeStatus.PASSED for r in results)


def math_items(n: int) -> list[GradeItem]:
    forms = ["\\boxed{{{v}}}", "The answer is {v}.", "so $x = \\frac{{{v2}}}{{2}}$ and \\boxed{{{v}}}"]
    return [GradeItem("math", forms[i % 3].format(v=i, v2=2 * i), {"answer": str(i)}) for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--programs", type=int, default=200)
    parser.add_argument("--cold-sample", type=int, default=24, help="cold docker runs actually timed")
    parser.add_argument("--pool-size", type=int, default=4)
    parser.add_argument("--math", type=int, default=2000)
    args = parser.parse_args()
    items = programs(args.programs)
    server = ServiceProcess("graders.server", ["--port", "0", "--backend", "docker",
                                               "--pool-size", str(args.pool_size), "--set", "workers.processes=2",
                                               "--max-inflight", "4096"],
                            "graders")
    address = server.start(timeout_s=180)
    try:
        pool_rate, pool_ok = asyncio.run(timed_service(address, items))
        math_rate, math_ok = asyncio.run(timed_service(address, math_items(args.math)))
    finally:
        server.stop()
    bare_rate, bare_ok = timed_local(bare_argv(), items, args.pool_size)
    sample = items[: args.cold_sample]
    cold_rate, cold_ok = timed_local(cold_argv(), sample, args.pool_size)
    print(f"programs: {len(items)} python_tests items (2 asserts each), concurrency {args.pool_size}")
    print(f"  pool  (service, warm docker pool): {pool_rate:7.1f} grades/s  ({pool_ok}/{len(items)} passed)")
    print(f"  bare  (local subprocess, no isolation): {bare_rate:7.1f} grades/s  ({bare_ok}/{len(items)} passed)")
    print(f"  cold  (docker run --rm per program): {cold_rate:7.1f} grades/s  ({cold_ok}/{len(sample)} passed; "
          f"timed on {len(sample)} of the {len(items)} programs, per-program rate extrapolated)")
    print(f"  math  (service, math-verify): {math_rate:7.1f} grades/s  ({math_ok}/{args.math} passed)")
    print(f"ratios: pool/cold = {pool_rate / cold_rate:.1f}x (target >= 10x), "
          f"pool/bare = {pool_rate / bare_rate:.2f}x (target >= 0.5x), math = {math_rate:.0f}/s (target >= 200/s)")


if __name__ == "__main__":
    main()
