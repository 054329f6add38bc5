"""The real grader server over gRPC: token auth, RESOURCE_EXHAUSTED, SIGTERM drain, health, reflection,
and `rlvr grade` with an embedded Docker-backed server."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from graders.client import GraderClient
from graders.types import GradeItem, GradeStatus, Limits
from rlvr.procs import ServiceProcess
from rlvr.v1 import grader_pb2 as pb
from rlvr.v1 import grader_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[2]
SLEEPER = GradeItem("python_tests", "import time\ntime.sleep(2.5)\ndef f(x): return x\n",
                    {"tests": "assert f(1) == 1"}, limits=Limits(timeout_s=20))


def containers(label: str = "rlvr.sandbox=1") -> list[str]:
    return subprocess.run(["docker", "ps", "-aq", "--filter", f"label={label}"], capture_output=True, text=True,
                          check=True).stdout.split()


def test_token_auth_health_and_reflection() -> None:
    with ServiceProcess("graders.server", ["--port", "0", "--backend", "none", "--token", "s3cret"],
                        "graders") as proc:
        address = proc.address
        assert address is not None and address.startswith("127.0.0.1:")

        async def run() -> None:
            async with GraderClient(address, token="wrong", retries=0) as bad:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await bad.grade([GradeItem("exact_match", "a", {"answer": "a"})])
                assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
                await bad.wait_ready(10)  # health stays public for probes
            async with GraderClient(address, retries=0) as anonymous:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await anonymous.list_graders()
                assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
            async with GraderClient(address, token="s3cret") as good:
                (r,) = await good.grade([GradeItem("exact_match", "a", {"answer": "a"})])
                assert r.status is GradeStatus.PASSED
                catalog = await good.list_graders()
                assert catalog.sandbox_backend == "none"
                (r,) = await good.grade([GradeItem("python_tests", "def f(): pass", {"tests": "assert f() is None"})])
                assert r.status is GradeStatus.INFRA_ERROR and not r.status.is_verdict
            async with grpc.aio.insecure_channel(address) as ch:
                reply = await health_pb2_grpc.HealthStub(ch).Check(
                    health_pb2.HealthCheckRequest(service="rlvr.v1.Grader"))
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
                from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

                stub = reflection_pb2_grpc.ServerReflectionStub(ch)

                async def requests():  # type: ignore[no-untyped-def]
                    yield reflection_pb2.ServerReflectionRequest(list_services="")

                async for resp in stub.ServerReflectionInfo(requests()):
                    names = {s.name for s in resp.list_services_response.service}
                    assert "rlvr.v1.Grader" in names
                    break

        asyncio.run(run())


def test_public_bind_without_token_is_refused() -> None:
    out = subprocess.run([sys.executable, "-m", "graders.server", "--host", "0.0.0.0", "--backend", "none"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "refusing to bind" in out.stderr


def test_overload_gets_resource_exhausted() -> None:
    with ServiceProcess("graders.server", ["--port", "0", "--backend", "docker", "--pool-size", "1",
                                           "--max-inflight", "2"], "graders") as proc:
        address = proc.address
        assert address is not None

        async def run() -> None:
            async with grpc.aio.insecure_channel(address) as ch:
                stub = pb_grpc.GraderStub(ch)
                from graders.types import item_to_pb

                busy = asyncio.ensure_future(stub.Grade(pb.GradeRequest(items=[item_to_pb(SLEEPER)] * 2)))
                await asyncio.sleep(0.5)
                start = time.monotonic()
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.Grade(pb.GradeRequest(items=[item_to_pb(SLEEPER)]), timeout=30)
                assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
                assert time.monotonic() - start < 2.0  # refused at once, not queued
                reply = await busy
                assert [r.status for r in reply.results] == [pb.GRADE_STATUS_PASSED] * 2
            async with GraderClient(address, retry_overload=True) as client:  # retries until admitted
                results = await asyncio.gather(client.grade([SLEEPER] * 2), client.grade([SLEEPER]))
                assert [r.status for batch in results for r in batch] == [GradeStatus.PASSED] * 3

        asyncio.run(run())


def test_sigterm_drains_in_flight_and_removes_containers() -> None:
    proc = ServiceProcess("graders.server", ["--port", "0", "--backend", "docker", "--pool-size", "2"], "graders")
    address = proc.start(timeout_s=120)
    assert proc.proc is not None
    instance_containers = containers()
    assert len(instance_containers) >= 2

    async def run() -> list:
        async with GraderClient(address, retries=0) as client:
            task = asyncio.ensure_future(client.grade([SLEEPER, SLEEPER]))
            await asyncio.sleep(1.0)
            proc.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            return await task

    results = asyncio.run(run())
    assert [r.status for r in results] == [GradeStatus.PASSED, GradeStatus.PASSED]  # in-flight grades finished
    assert proc.proc.wait(30) == 0, proc.tail()
    assert not set(instance_containers) & set(containers()), "containers left after SIGTERM"


def test_cli_grade_with_embedded_docker_server(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    res = subprocess.run([sys.executable, "-m", "rlvr.cli", "grade", "--input",
                          str(ROOT / "examples" / "grade_requests.jsonl"), "--output", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["id"], r["status"]) for r in rows] == [
        ("m1", "passed"), ("m2", "failed"), ("p1", "passed"), ("p2", "failed"), ("j1", "passed"),
        ("f1", "passed"), ("e1", "passed")]
    assert rows[3]["reward"] == 0.5 and rows[4]["source"] == "carried through"
