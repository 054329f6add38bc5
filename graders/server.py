"""The grader gRPC service (grader.proto): `python -m graders.server` or `rlvr serve graders`.

Async servicer with batch Grade, streaming GradeStream and ListGraders, plus the standard health service
and reflection (rlvr.serving). On SIGTERM it reports NOT_SERVING, lets in-flight grades finish within
server.grace_s (then they are cancelled, which clients see as an infrastructure error), and removes its
sandbox containers before it exits."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc

from graders.config import GradersConfig
from graders.engine import GradingEngine, Overloaded, TooLarge
from graders.types import GradeResult, item_from_pb, result_to_pb
from rlvr.serving import ManagedServer, ServerOptions, announce
from rlvr.v1 import grader_pb2 as pb
from rlvr.v1 import grader_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Grader"].full_name


class GraderServicer(pb_grpc.GraderServicer):
    def __init__(self, engine: GradingEngine) -> None:
        self.engine = engine

    async def _admit(self, request: pb.GradeRequest, context: grpc.aio.ServicerContext) -> None:
        try:
            self.engine.admit(len(request.items))
        except Overloaded as e:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(e))
        except TooLarge as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))

    async def _results(self, request: pb.GradeRequest) -> AsyncIterator[GradeResult]:
        items = [item_from_pb(m) for m in request.items]
        try:
            async for result in self.engine.grade_many(items):
                yield result
        finally:
            self.engine.release(len(items))

    async def Grade(self, request: pb.GradeRequest, context: grpc.aio.ServicerContext) -> pb.GradeResponse:
        await self._admit(request, context)
        results: list[GradeResult | None] = [None] * len(request.items)
        async for r in self._results(request):
            results[r.index] = r
        return pb.GradeResponse(results=[result_to_pb(r) for r in results if r is not None])

    async def GradeStream(
        self, request: pb.GradeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.GradeResult]:
        await self._admit(request, context)
        async for r in self._results(request):
            yield result_to_pb(r)

    async def ListGraders(
        self, request: pb.ListGradersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListGradersResponse:
        infos = [
            pb.GraderInfo(name=s.name, description=s.description, required_fields=s.required,
                          optional_fields=s.optional, sandboxed=s.sandboxed)
            for s in self.engine.registry.specs()
        ]
        return pb.ListGradersResponse(graders=infos, sandbox_backend=self.engine.backend_name)


def server_options(cfg: GradersConfig) -> ServerOptions:
    s = cfg.server
    return ServerOptions(host=s.host, port=s.port, token=s.token, tls_cert=s.tls_cert, tls_key=s.tls_key,
                         grace_s=s.grace_s, allow_insecure_public=s.allow_insecure_public)


async def serve(cfg: GradersConfig) -> None:
    """Start the engine (warm sandbox pool, workers), listen, announce, and run until SIGTERM/SIGINT."""
    options = server_options(cfg)
    options.check()  # refuse a bad bind before starting containers
    engine = GradingEngine(cfg)
    try:
        await engine.start()
        servicer = GraderServicer(engine)
        server = ManagedServer(options, lambda s: pb_grpc.add_GraderServicer_to_server(servicer, s), [SERVICE_NAME])
        server.install_signal_handlers()
        address = await server.start()
        await server.set_serving(True)
        log.info("graders listening on %s (sandbox: %s)", address, engine.backend_name)
        announce("graders", address)
        await server.wait_for_stop_signal()
        log.info("stopping: draining in-flight grades (up to %.0fs)", options.grace_s)
        await server.stop()
    finally:
        await engine.close()


def run(cfg: GradersConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(cfg))


if __name__ == "__main__":
    from graders.cli import serve_main

    serve_main()
